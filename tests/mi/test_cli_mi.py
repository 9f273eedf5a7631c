import json
import re
import subprocess
import sys

import numpy as np
import pytest

from deepscope.cli import main
from deepscope.mi import tasks

FAST = ["--max-steps", "300", "--patience", "2", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("mi")
    x, y, truth = tasks.correlated_gaussian(1500, d=2, mi=1.0, seed=0)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.savez(d / "xy.npz", a=x, b=y)
    np.savetxt(d / "t.csv", np.hstack([x, y]), delimiter=",", header="X0,X1,Y0,Y1", comments="")
    return d, truth


def test_estimate_npy_writes_run_dir(data, capsys):
    d, truth = data
    out = d / "run1"
    assert main(["mi", "estimate", str(d / "x.npy"), str(d / "y.npy"), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "nats" in text and "bits" in text and "95% CI" in text
    res = json.loads((out / "result.json").read_text())
    assert res["mi_nats"] == pytest.approx(truth, abs=0.35)
    part = res["parametric_part"]
    assert (part["rank"] in (0, 1, 2) or part["dof"] < float("inf")) and 0 <= part["shrinkage"] <= 1
    assert (out / "figures" / "training.png").stat().st_size > 1000
    assert (out / "config.json").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2


def test_estimate_npz_keys_and_csv_columns_agree(data):
    d, _ = data
    a, b = d / "r_npz", d / "r_csv"
    assert main(["mi", "estimate", f"{d}/xy.npz:a", f"{d}/xy.npz:b", "--out", str(a), *FAST]) == 0
    assert main(["mi", "estimate", f"{d}/t.csv:X0,X1", f"{d}/t.csv:2-3", "--out", str(b), *FAST]) == 0
    ra, rb = (json.loads((p / "result.json").read_text())["mi_nats"] for p in (a, b))
    assert ra == pytest.approx(rb, abs=1e-5)  # same numbers, same seed


@pytest.mark.parametrize(
    "files, match",
    [
        (["missing.npy", "y.npy"], "does not exist"),
        (["xy.npz", "y.npy"], "holds arrays \\['a', 'b'\\]; choose one"),
        (["xy.npz:c", "y.npy"], "has no array 'c'"),
        (["t.csv:Z9", "y.npy"], "column 'Z9' is neither a header name"),
        (["t.csv:7", "y.npy"], "column index 7 out of range"),
        (["obj.npy", "y.npy"], "object \\(pickled\\) array"),
        (["nan.npy", "y.npy"], "x contains NaN or inf"),
        (["short.npy", "short.npy"], "need at least 50"),
        (["x.npy", "short.npy"], "x has 1500 rows and y has 20"),
        (["x.txt", "y.npy"], "not a .npy, .npz or .csv"),
    ],
)
def test_bad_inputs_one_line_error(data, capsys, files, match):
    d, _ = data
    np.save(d / "obj.npy", np.array([{"a": 1}] * 60, dtype=object), allow_pickle=True)
    x = np.load(d / "x.npy")
    x[3, 0] = np.nan
    np.save(d / "nan.npy", x)
    np.save(d / "short.npy", np.random.rand(20, 2))
    rc = main(["mi", "estimate", *(str(d / f) for f in files), "--out", str(d / "bad"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(match, err), err
    assert not (d / "bad").exists()  # nothing written


@pytest.mark.parametrize(
    "option, match",
    [
        (["--rank", "5"], r"rank == 5, must be <= min\(dim_x, dim_y\) == 2"),
        (["--hidden", "0"], r"hidden == \(0,\), must be a non-empty sequence of widths >= 1"),
        (["--lr", "-1"], "lr == -1.0, must be > 0"),
    ],
)
def test_bad_options_are_refused_before_the_run_directory_exists(data, capsys, option, match):
    d, _ = data
    rc = main(["mi", "estimate", str(d / "x.npy"), str(d / "y.npy"), "--out", str(d / "bad_opt"),
               *FAST, *option])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(match, err) and len(err.strip().splitlines()) == 1, err
    assert not (d / "bad_opt").exists()


def test_estimate_csv_protocol_prints_only_a_float(data):
    d, truth = data
    cmd = [sys.executable, "-m", "deepscope.cli", "mi", "estimate-csv", str(d / "t.csv"), "2", "2", "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    value = float(p.stdout + p.stderr)  # the BMI client parses both streams together as one float
    assert value == pytest.approx(truth, abs=0.35)
    bad = subprocess.run(cmd[:-4] + ["2", "3"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "DIM_X + DIM_Y == 5" in bad.stdout + bad.stderr


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as e:
        main(["mi", "estimate", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--bound", "--transform", "--n-restarts", "--out", "--preset", "--rank"):
        assert opt in out
    assert main(["--help"]) == 0 and "mi estimate-csv" in capsys.readouterr().out
    assert main(["nonsense"]) == 2
