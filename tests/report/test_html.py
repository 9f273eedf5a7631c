import json

from deepscope.cli import main


def _run_dir(root, name, *, result=True, error=False):
    d = root / name
    (d / "figures").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"recipe": "demo", "seed": 0}))
    # a 1x1 PNG
    (d / "figures" / "curve.png").write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"))
    if result:
        (d / "result.json").write_text(json.dumps({"summary": "a <table>", "acc": 0.91234, "seconds": 1.5}))
    if error:
        (d / "error.txt").write_text("Traceback: boom")


def test_report_lists_runs_statuses_and_embeds_figures(tmp_path, capsys):
    _run_dir(tmp_path, "a/1")
    _run_dir(tmp_path, "b/2", result=False, error=True)
    _run_dir(tmp_path, "c/3", result=False)
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "3 run(s)" in page
    assert "data:image/png;base64," in page
    assert "a &lt;table&gt;" in page  # summaries are escaped
    assert "0.9123" in page and ">failed<" in page and ">incomplete<" in page and "boom" in page


def test_report_bad_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err
