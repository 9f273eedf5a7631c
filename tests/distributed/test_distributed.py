"""torchrun with 2 CPU processes (gloo) gives the single-process numbers; `make test-distributed`."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed
SCRIPT = Path(__file__).with_name("ddp_loop.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script, *args):
    """Two CPU processes under torchrun, one thread each."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _torchrun(out, steps, kill_at=None):
    return _launch(SCRIPT, out, steps, *([kill_at] if kill_at else []))


def _single(out, steps):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run([sys.executable, str(SCRIPT), str(out), str(steps)], capture_output=True,
                       text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr


def _losses(out):
    return [json.loads(line)["loss"] for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    _single(tmp_path / "one", 20)
    p = _torchrun(tmp_path / "two", 20)
    assert p.returncode == 0, p.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "final.pt")
    b = torch.load(tmp_path / "two" / "final.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert _losses(tmp_path / "one") == pytest.approx(_losses(tmp_path / "two"), rel=1e-5)


def test_resume_under_torchrun(tmp_path):
    _single(tmp_path / "one", 20)
    killed = _torchrun(tmp_path / "two", 20, kill_at=13)
    assert killed.returncode != 0
    assert not (tmp_path / "two" / "final.pt").exists()
    p = _torchrun(tmp_path / "two", 20)
    assert p.returncode == 0, p.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # lines after the step-10 checkpoint were dropped, none doubled
    a = torch.load(tmp_path / "one" / "final.pt")
    b = torch.load(tmp_path / "two" / "final.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


EXIT_SCRIPT = '''
import pathlib, sys, torch
from deepscope.train.distributed import init_distributed
dist, _ = init_distributed("cpu")
if dist.rank == 1 and sys.argv[1] == "fail":
    raise ValueError("rank 1 fails on purpose")
t = torch.ones(1)
for _ in range(3 if sys.argv[1] == "clean" else 10**9):
    torch.distributed.all_reduce(t)
pathlib.Path(sys.argv[2], f"rank{dist.rank}.txt").write_text(str(float(t)))
'''


def _launch_exit_script(tmp_path, mode):
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    return _launch(script, mode, tmp_path)  # each process writes its result to its own file


def test_every_process_leaves_the_group_cleanly(tmp_path):
    # at exit every process waits for the others before it destroys its group (train.distributed)
    p = _launch_exit_script(tmp_path, "clean")
    assert p.returncode == 0, p.stderr[-3000:]
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["8.0", "8.0"]
    assert "destroy_process_group() was not called" not in p.stderr


def test_one_failing_process_ends_the_launch_instead_of_hanging(tmp_path):
    # the exit wait is skipped after an uncaught exception: the peer in its loop is stopped
    p = _launch_exit_script(tmp_path, "fail")
    assert p.returncode != 0
    assert "rank 1 fails on purpose" in p.stderr
