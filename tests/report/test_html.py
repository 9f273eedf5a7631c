import json
import math

from deepscope.cli import main
from deepscope.report.html import collect_runs, fmt

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def _run_dir(root, name, *, result=None, error=False, recipe="demo"):
    d = root / name
    (d / "figures").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"recipe": recipe, "seed": 0}))
    (d / "figures" / "curve.png").write_bytes(PNG)
    if result is not None:
        (d / "result.json").write_text(json.dumps(result))
    if error:
        (d / "error.txt").write_text("Traceback (most recent call last):\n  File x\nValueError: boom here\n")
    return d


def test_report_verdicts_sections_subruns_and_figures(tmp_path, capsys):
    _run_dir(tmp_path, "mine", result={
        "summary": "a <table>", "acc": 0.91234, "kl": "inf", "seconds": 1.5, "system": "MINE",
        "command": "deepscope run mine-gaussians --quick",
        "verdict": {"system": "MINE", "claim": "tracks the truth", "measured": "18/20 within 10%",
                    "verdict": "reproduced"}})
    _run_dir(tmp_path, "mine/seed1", result={"modes": 24.0, "kl": None})
    _run_dir(tmp_path, "a3t", error=True)
    (tmp_path / "a3t" / "config.json").write_text(json.dumps({"recipe": "a3t", "system": "A3T"}))
    _run_dir(tmp_path, "other", result=None)
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "3 run(s) (1 sub-runs)" in page
    assert page.count("data:image/png;base64,") == 3  # top-level runs; sub-runs are a table
    assert "a &lt;table&gt;" in page  # summaries are escaped
    assert "0.9123" in page and "ValueError: boom here" in page
    assert "<td class='v-reproduced'>reproduced</td>" in page
    assert "<td class='v-failed'>failed</td>" in page
    assert page.count("<td class='v-not-run'>not run</td>") == 4  # the four systems without runs
    assert "1 sub-run(s)" in page and "seed1" in page and "kl=nan" in page
    assert "deepscope run mine-gaussians --quick" in page and "inf ± nan" not in page


def test_subruns_have_parents_and_numbers_format(tmp_path):
    _run_dir(tmp_path, "p", result={})
    _run_dir(tmp_path, "p/c", result={})
    runs = {r["dir"].name: r for r in collect_runs(tmp_path)}
    assert runs["p"]["parent"] is None and runs["c"]["parent"] == (tmp_path / "p").resolve()
    assert fmt(math.inf) == "inf" and fmt(-math.inf) == "-inf" and fmt(math.nan) == "nan"
    assert fmt(None) == "nan" and fmt(0.123456) == "0.1235"


def test_report_bad_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_shows_sweep_summaries(tmp_path):
    (tmp_path / "summary.csv").write_text("lr,metric,mean,std,count\n")
    (tmp_path / "summary.json").write_text(json.dumps(
        [{"lr": "0.1", "metric": "acc", "mean": 0.85, "std": 0.0707, "count": 2}]))
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Sweep" in page and "0.85 ± 0.0707 (2)" in page


def test_a_system_that_ran_without_a_verdict_is_not_shown_as_not_run(tmp_path):
    _run_dir(tmp_path, "spec", result={"system": "Spectral bias", "summary": "rho = 0.97\nmore",
                                        "paper": "low frequencies first"})
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<td class='v-no-verdict'>no verdict</td>" in page and "rho = 0.97" in page
    assert page.count("<td class='v-not-run'>not run</td>") == 5


def test_the_page_judges_stored_numbers_with_the_recipes_current_rule(tmp_path):
    from deepscope.recipes.crosssplit import verdict

    # A CrossSplit result whose stored verdict is stale ("reproduced", written by hand here):
    # the numbers miss the targets, so today's rule must say otherwise on the page.
    cell = {"last": {"mean": 50.0, "n": 3}}
    table = {"crosssplit": {s: cell for s in ("sym40", "sym60", "sym80")},
             "ce": {s: {"last": {"mean": 60.0, "n": 3}} for s in ("sym40", "sym60", "sym80")}}
    result = {"recipe": "crosssplit", "system": "CrossSplit", "settings": {"dataset": "mnist1d"},
              "table": table, "verdict": {"system": "CrossSplit", "claim": "c", "measured": "m",
                                          "verdict": "reproduced"}}
    _run_dir(tmp_path, "cs", result=result, recipe="crosssplit")
    expected = verdict(result)["verdict"]
    assert expected == "not reproduced"
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<td class='v-not-reproduced'>not reproduced</td>" in page
    assert "<td class='v-reproduced'>reproduced</td>" not in page
    # An unknown recipe keeps its stored verdict.
    _run_dir(tmp_path, "old", result={"recipe": "gone-recipe", "system": "A3T",
                                      "verdict": {"claim": "c", "measured": "m", "verdict": "partly"}})
    assert main(["report", str(tmp_path)]) == 0
    assert "<td class='v-partly'>partly</td>" in (tmp_path / "report.html").read_text()


def test_verdict_table_as_markdown(tmp_path):
    _run_dir(tmp_path, "mine", result={"system": "MINE", "verdict": {
        "claim": "tracks | the truth", "measured": "18/20\nwithin 10%", "verdict": "reproduced"}})
    md = tmp_path / "out" / "verdicts.md"
    assert main(["report", str(tmp_path), "--markdown", str(md)]) == 0
    lines = md.read_text().splitlines()
    assert lines[0] == "| system | paper's claim | our measurement | verdict |"
    assert "| MINE | tracks \\| the truth | 18/20 within 10% | **reproduced** |" in lines
    assert len(lines) == 2 + 6 and sum("**not run**" in ln for ln in lines) == 5
