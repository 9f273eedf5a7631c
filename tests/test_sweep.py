import json

import pytest

from deepscope.cli import main
from deepscope.sweep import expand_grid

SHARED = ["--", "--quick", "--methods", "ksg", "--threads", "1"]


def test_expand_grid_product_and_errors():
    pts = expand_grid(("seed=0,1", "n_samples=5"))
    assert pts == [{"seed": "0", "n-samples": "5"}, {"seed": "1", "n-samples": "5"}]
    assert expand_grid(()) == [{}]
    with pytest.raises(ValueError, match="not KEY=V1,V2"):
        expand_grid(("seed",))
    with pytest.raises(ValueError, match="names 'seed' twice"):
        expand_grid(("seed=1", "seed=2"))


def test_inline_sweep_runs_points_and_skips_finished_ones(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "mine-gaussians", "--grid", "seed=0,1", "--out", str(out), "--executor", "inline", *SHARED]) == 0
    a = json.loads((out / "seed=0" / "result.json").read_text())
    b = json.loads((out / "seed=1" / "result.json").read_text())
    assert a["rows"][0]["ksg"] != b["rows"][0]["ksg"]  # different seeds, different data
    capsys.readouterr()
    assert main(["sweep", "mine-gaussians", "--grid", "seed=0,1,2", "--out", str(out), "--executor", "inline", *SHARED]) == 0
    assert "3 points, 2 already done, 1 to run" in capsys.readouterr().out


def test_local_submitit_sweep(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sl"
    assert main(["sweep", "mine-gaussians", "--grid", "seed=3", "--out", str(out), *SHARED]) == 0
    assert (out / "seed=3" / "result.json").exists()


def test_invalid_point_fails_before_submitting(tmp_path, capsys):
    rc = main(["sweep", "mine-gaussians", "--grid", "n=ten", "--out", str(tmp_path / "x"), "--executor", "inline", *SHARED])
    assert rc == 2
    assert "point n=ten has invalid options" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
