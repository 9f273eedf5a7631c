import json

import pytest

from deepscope.cli import main
from deepscope.runner import execute_recipe, load_recipe


def test_mine_gaussians_quick_writes_table_and_figure(tmp_path):
    mod = load_recipe("mine-gaussians")
    cfg = mod.Config(quick=True, out=tmp_path / "g", progress=False, methods=("mine", "ksg"))
    res = execute_recipe("mine-gaussians", cfg, quiet=True)
    assert len(res["rows"]) == 5
    for r in res["rows"]:
        assert abs(r["ksg"] - r["truth"]) < 0.15
        assert abs(r["mine"] - r["truth"]) < 0.3
    assert (tmp_path / "g" / "figures" / "mine_gaussians.png").stat().st_size > 5000
    saved = json.loads((tmp_path / "g" / "result.json").read_text())
    assert saved["within_target_truth_le_4"]["ksg"].endswith("/5")
    assert "truth" in saved["summary"]


def test_mine_gaussians_resumes_from_checkpoint(tmp_path):
    mod = load_recipe("mine-gaussians")
    out = tmp_path / "r"
    full = execute_recipe("mine-gaussians", mod.Config(quick=True, out=tmp_path / "full", progress=False, methods=("ksg",)), quiet=True)
    # simulate a run killed after 2 of 5 grid points: keep a checkpoint holding 2 rows
    import torch

    from deepscope.train import Run

    run = Run(out, config={"recipe": "mine-gaussians", **mod.Config(quick=True, out=out, progress=False, methods=("ksg",)).__dict__}, progress=False)
    run.save_checkpoint({"rows": full["rows"][:2]}, step=1)
    resumed = execute_recipe("mine-gaussians", mod.Config(quick=True, out=out, progress=False, methods=("ksg",)), quiet=True)
    assert [r["ksg"] for r in resumed["rows"]] == [r["ksg"] for r in full["rows"]]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 4


def test_mi_staircase_quick(tmp_path):
    mod = load_recipe("mi-staircase")
    cfg = mod.Config(quick=True, out=tmp_path / "s", progress=False, estimators=("mine", "infonce"), variants=("gaussian",))
    res = execute_recipe("mi-staircase", cfg, quiet=True)
    st = res["stairs"]
    assert set(st) == {"gaussian/mine", "gaussian/infonce"}
    for per in st.values():
        assert per[1]["mean"] > per[0]["mean"]  # the estimate climbs with the staircase
        assert all(p["mean"] <= res["infonce_ceiling"] + 0.5 for p in per)
    assert (tmp_path / "s" / "figures" / "mi_staircase.png").exists()
    assert (tmp_path / "s" / "estimates.npz").exists()


def test_recipe_help_and_errors(capsys, tmp_path):
    assert main(["run", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "mine-gaussians" in listed and "mi-staircase" in listed
    with pytest.raises(SystemExit) as e:
        main(["run", "mine-gaussians", "--help"])
    assert e.value.code == 0
    assert "--rhos" in capsys.readouterr().out
    assert main(["run", "nope"]) == 2
    assert "recipe == 'nope' is unknown" in capsys.readouterr().err
    mod = load_recipe("mine-gaussians")
    with pytest.raises(ValueError, match="methods contains \\['mien'\\]"):
        execute_recipe("mine-gaussians", mod.Config(quick=True, methods=("mien",), out=tmp_path / "e", progress=False), quiet=True)
    assert "ValueError" in (tmp_path / "e" / "error.txt").read_text()
