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


def test_aggregate_mean_std_count_over_seeds(tmp_path):
    import csv
    import math

    from deepscope.sweep import aggregate

    pts = []
    for lr, seed, acc in (("0.1", "0", 0.8), ("0.1", "1", 0.9), ("0.2", "0", 0.5), ("0.2", "1", float("nan"))):
        d = tmp_path / f"lr={lr},seed={seed}"
        d.mkdir()
        (d / "result.json").write_text(json.dumps({"acc": acc, "nested": {"kl": "inf"}, "seed": int(seed)}))
        pts.append(({"lr": lr, "seed": seed}, d))
    rows = aggregate(pts, tmp_path)
    acc = {r["lr"]: r for r in rows if r["metric"] == "acc"}
    assert acc["0.1"]["mean"] == pytest.approx(0.85) and acc["0.1"]["count"] == 2
    assert acc["0.1"]["std"] == pytest.approx(math.sqrt(0.005))
    assert acc["0.1"]["ci95_low"] < 0.85 < acc["0.1"]["ci95_high"]
    # one rule (train.stats.summarise): a NaN (null) is dropped and counted; one value has std 0
    assert acc["0.2"]["count"] == 1 and acc["0.2"]["missing"] == 1 and acc["0.2"]["std"] == 0.0
    kl = [r for r in rows if r["metric"] == "nested.kl"][0]
    assert kl["mean"] == math.inf
    assert len(list(csv.DictReader(open(tmp_path / "summary.csv")))) == len(rows)
    assert json.loads((tmp_path / "summary.json").read_text())[0]["metric"]
