import json
import math

import pytest
import torch

from deepscope.cli import main
from deepscope.runner import execute_recipe, load_recipe
from deepscope.train import Run


def test_mine_gaussians_tracks_the_truth_at_d2_low_mi(tmp_path):
    # The paper's Figure 1 claim where the budget allows it: at d = 2 and low MI, MINE's held-out
    # estimate is within the accuracy target (0.05 + 10% of the truth), as KSG is.
    mod = load_recipe("mine-gaussians")
    cfg = mod.Config(dims=(2,), rhos=(0.0, 0.5), n=2000, max_steps=800, methods=("mine", "ksg"),
                     out=tmp_path / "g", progress=False)
    res = execute_recipe("mine-gaussians", cfg, quiet=True)
    assert [(r["d"], r["rho"]) for r in res["rows"]] == [(2, 0.0), (2, 0.5)]
    for r in res["rows"]:
        for m in ("mine", "ksg"):
            assert abs(r[m] - r["truth"]) <= 0.05 + 0.1 * r["truth"], (m, r)
        lo, hi = r["mine_ci"]
        assert lo <= r["mine"] <= hi
    assert res["within_target_truth_le_4"] == {"mine": "2/2", "ksg": "2/2"}
    assert (tmp_path / "g" / "figures" / "mine_gaussians.png").stat().st_size > 5000
    assert "truth" in json.loads((tmp_path / "g" / "result.json").read_text())["summary"]


def test_mine_gaussians_quick_preset_and_kill_and_resume(tmp_path, monkeypatch):
    mod = load_recipe("mine-gaussians")
    cfg = lambda out: mod.Config(quick=True, out=out, progress=False, methods=("ksg",))  # noqa: E731
    full = execute_recipe("mine-gaussians", cfg(tmp_path / "full"), quiet=True)
    assert [r["rho"] for r in full["rows"]] == [-0.9, -0.5, 0.0, 0.5, 0.9]  # the QUICK preset

    log = Run.log

    def log_then_die(self, step, **kw):
        log(self, step, **kw)
        if step == 2:  # grid point 2 is logged before it is checkpointed: points 0 and 1 are saved
            raise KeyboardInterrupt

    monkeypatch.setattr(Run, "log", log_then_die)
    with pytest.raises(KeyboardInterrupt):
        execute_recipe("mine-gaussians", cfg(tmp_path / "r"), quiet=True)
    monkeypatch.undo()
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 1
    resumed = execute_recipe("mine-gaussians", cfg(tmp_path / "r"), quiet=True)
    assert resumed["rows"] == full["rows"]
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 4


def test_mi_staircase_quick_climbs_and_infonce_stays_under_log_batch(tmp_path):
    mod = load_recipe("mi-staircase")
    cfg = mod.Config(quick=True, out=tmp_path / "s", progress=False, estimators=("mine", "infonce"),
                     variants=("gaussian",))
    res = execute_recipe("mi-staircase", cfg, quiet=True)
    st = res["stairs"]
    assert set(st) == {"gaussian/mine", "gaussian/infonce"} and [p["truth"] for p in st["gaussian/mine"]] == [2, 4]
    for per in st.values():
        assert per[1]["mean"] > per[0]["mean"] + 0.3  # the estimate climbs with the staircase
    assert res["infonce_max"]["gaussian/infonce"] <= res["infonce_ceiling"] == math.log(64)
    assert (tmp_path / "s" / "figures" / "mi_staircase.png").exists()
    assert (tmp_path / "s" / "estimates.npz").exists()
    models = torch.load(tmp_path / "s" / "checkpoint.pt", weights_only=True)["objects"]["models"]
    assert set(models) == {"gaussian/mine", "gaussian/infonce"}


def test_recipe_help_and_errors(capsys, tmp_path, monkeypatch):
    assert main(["run", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "mine-gaussians" in listed and "mi-staircase" in listed
    with pytest.raises(SystemExit) as e:
        main(["run", "mi-staircase", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--estimators" in out and "infonce" in out and "cubic" in out  # Literal choices are listed
    assert main(["run", "nope"]) == 2
    assert "recipe == 'nope' is unknown" in capsys.readouterr().err
    mod = load_recipe("mine-gaussians")
    with pytest.raises(ValueError, match=r"methods == \('mien',\), must be one or more of"):
        mod.Config(methods=("mien",))
    monkeypatch.chdir(tmp_path)
    for argv, msg in [
        (["run", "mine-gaussians", "--rhos", "1.5"], "rhos == (1.5,), must be non-empty, each in (-1, 1)"),
        (["run", "mi-staircase", "--steps-per-level", "0"], "steps_per_level == 0, must be >= 2"),
        (["run", "mi-staircase", "--ema-alpha", "0"], "ema_alpha == 0.0, must be in (0, 1]"),
    ]:
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"deepscope run {argv[1]}: {msg}"
    assert list(tmp_path.iterdir()) == []
