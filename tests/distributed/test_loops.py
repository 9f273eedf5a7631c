"""Every dataset loop under torchrun (2 CPU processes, gloo) gives the single-process result.

The same global batches, the same random draws: final weights and every logged metric equal
the single process's up to float summation order. One launch runs all loops (loops.py).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed
SCRIPT = Path(__file__).with_name("loops.py")
sys.path.insert(0, str(SCRIPT.parent))
from loops import LOOPS  # noqa: E402

NAMES = sorted(LOOPS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def _torchrun(out, names, kill_at=None):
    # make gpu-check sets one process per GPU (NCCL); the CPU default is two gloo processes
    procs = os.environ.get("DEEPSCOPE_TORCHRUN_PROCS", "2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", procs,
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           str(SCRIPT), str(out), ",".join(names)] + ([str(kill_at)] if kill_at else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


def _single(out, names):
    p = subprocess.run([sys.executable, str(SCRIPT), str(out), ",".join(names)],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loops")
    _single(root / "one", NAMES)
    p = _torchrun(root / "two", NAMES)
    assert p.returncode == 0, p.stderr[-5000:]
    return root


def _assert_same(a_dir, b_dir):
    a, b = torch.load(a_dir / "final.pt"), torch.load(b_dir / "final.pt")
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    ma, mb = _metrics(a_dir), _metrics(b_dir)
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    for x, y in zip(ma, mb):
        assert sorted(x) == sorted(y)
        for k, v in x.items():
            if k == "time":
                continue
            if isinstance(v, float):
                assert y[k] == pytest.approx(v, rel=1e-4, abs=1e-5), (k, x["step"])
            else:
                assert y[k] == v, (k, x["step"])


@pytest.mark.parametrize("name", NAMES)
def test_two_processes_equal_one(runs, name):
    _assert_same(runs / "one" / name, runs / "two" / name)


def test_a3t_resumes_under_torchrun(runs, tmp_path):
    killed = _torchrun(tmp_path, ["a3t"], kill_at=7)  # checkpoints at steps 3, 6, 9
    assert killed.returncode != 0
    assert not (tmp_path / "a3t" / "final.pt").exists()
    p = _torchrun(tmp_path, ["a3t"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert [m["step"] for m in _metrics(tmp_path / "a3t")] == list(range(1, 10))
    _assert_same(runs / "one" / "a3t", tmp_path / "a3t")


def test_a3t_recipe_under_torchrun_gives_the_single_process_numbers(tmp_path):
    args = ["-m", "deepscope.cli", "run", "a3t", "--mode", "methods", "--datasets", "digits",
            "--methods", "fgsm-at", "a3t", "--seeds", "1", "--epochs", "2", "--attacks", "fgsm", "pgd20", "--restarts", "1",
            "--eval-max", "100", "--threads", "1", "--no-progress", "--device", "cpu"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    for method in ("fgsm-at", "a3t"):
        sub = Path("digits") / method / "seed0"
        a = torch.load(tmp_path / "one" / sub / "model.pt", weights_only=False)["state_dict"]
        b = torch.load(tmp_path / "two" / sub / "model.pt", weights_only=False)["state_dict"]
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{method} {k}")
    ra = json.loads((tmp_path / "one" / "result.json").read_text())
    rb = json.loads((tmp_path / "two" / "result.json").read_text())
    assert rb["headline"]["digits"]["attacks_ran"] == ra["headline"]["digits"]["attacks_ran"]
    for method in ("fgsm-at", "a3t"):  # 100 examples: one flip allowed
        h = ra["headline"]["digits"][method]
        for key in ("clean", "robust"):
            assert rb["headline"]["digits"][method][key] == pytest.approx(h[key], abs=0.011)
