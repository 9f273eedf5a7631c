"""``deepscope sweep --executor slurm`` against a real single-node SLURM.

Start one with ``sudo bash scripts/slurm-local.sh start`` (or run ``make test-slurm``, which
starts it, runs this file and stops it). Without an idle SLURM node the test is skipped, unless
``DEEPSCOPE_REQUIRE_SLURM=1`` (set by ``make test-slurm``) turns the skip into a failure.

The sweep is driven through the CLI in subprocesses, as a user would: a 2-point sweep that
finishes, then a sweep whose slow point is cancelled with ``scancel`` after its first checkpoint
while the fast point finishes; the resubmitted sweep must skip the finished point and resume the
other from its checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

PARTITION = "debug"
# The installed console script (the CLI a user runs), else the same entry point through python -c.
_SCRIPT = Path(sys.executable).with_name("deepscope")
DEEPSCOPE = ([str(_SCRIPT)] if _SCRIPT.exists()
             else [sys.executable, "-c", "import sys; from deepscope.cli import main; sys.exit(main())"])
SLURM_OPTS = ["--executor", "slurm", "--slurm-partition", PARTITION, "--cpus-per-task", "1",
              "--mem-gb", "1", "--max-parallel", "2", "--timeout-min", "10"]
# The kill-and-resume sweep: 20 (d, rho) rows, one checkpoint after each. With the KSG
# estimator a row takes well under a second; with MINE (300 critic steps) about 2-4 s, so the
# slow point is cancelled after its first row with most of its ~60 s of rows still to do.
RHOS = [round(-0.95 + 0.1 * i, 2) for i in range(20)]
ROWS = ["--dims", "2", "--rhos", *[str(r) for r in RHOS], "--n", "1000", "--max-steps", "300", "--threads", "1"]


def _idle_node() -> str:
    """Why SLURM is not usable here ('' when a node of PARTITION is idle)."""
    if shutil.which("sinfo") is None or shutil.which("scancel") is None:
        return "no SLURM client (sinfo, scancel) on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-t", "idle,mix", "-o", "%n"],
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out"
    if out.returncode != 0 or not out.stdout.strip():
        return f"no idle node in partition {PARTITION!r} ({(out.stderr or out.stdout).strip()[:200]})"
    return ""


@pytest.fixture(scope="module")
def slurm():
    pytest.importorskip("submitit")
    why = _idle_node()
    if why:
        msg = f"{why}; start one with `sudo bash scripts/slurm-local.sh start` or run `make test-slurm`"
        if os.environ.get("DEEPSCOPE_REQUIRE_SLURM") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _sweep(out: Path, grid: str, shared: list[str], timeout: float) -> tuple[int, str]:
    argv = [*DEEPSCOPE, "sweep", "mine-gaussians", "--grid", grid, "--out", str(out), *SLURM_OPTS,
            "--", *shared]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env())
    return p.returncode, p.stdout + p.stderr


def _wait(cond, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep exited (rc {proc.returncode}) while waiting for {what}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _in_queue(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True, timeout=20)
    return bool(out.stdout.strip())


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_point_sweep_finishes_on_slurm(slurm, tmp_path):
    out = tmp_path / "sweep"
    rc, text = _sweep(out, "seed=0,1", ["--quick", "--methods", "ksg", "--threads", "1"], timeout=150)
    assert rc == 0, text
    assert "2 points, 0 already done, 2 to run" in text
    assert "sweep finished: 2/2 points have results" in text
    a = json.loads((out / "seed=0" / "result.json").read_text())
    b = json.loads((out / "seed=1" / "result.json").read_text())
    assert a["rows"][0]["ksg"] != b["rows"][0]["ksg"]  # different seeds, different data
    # Both points ran as SLURM jobs (one array), not in this process.
    assert list((out / "submitit").glob("*_submission.sh")), sorted(p.name for p in (out / "submitit").iterdir())


def test_cancelled_point_resumes_from_its_checkpoint(slurm, tmp_path):
    import torch

    out = tmp_path / "sweep"
    fast, slow = out / "methods=ksg", out / "methods=mine"
    argv = [*DEEPSCOPE, "sweep", "mine-gaussians", "--grid", "methods=ksg,mine", "--out", str(out),
            *SLURM_OPTS, "--", *ROWS]
    log = tmp_path / "first.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=_env())
    try:
        _wait(lambda: (slow / "checkpoint.pt").exists(), 120, "the slow point's first checkpoint", proc)
        (script,) = (out / "submitit").glob("*_submission.sh")
        job = f"{script.name.split('_')[0]}_1"  # array task 1 is the second grid point (mine)
        subprocess.run(["scancel", job], check=True, timeout=20)
        _wait(lambda: not _in_queue(job), 60, f"job {job} to leave the queue")
        _wait(lambda: (fast / "result.json").exists(), 90, "the fast point's result", proc)
    finally:
        # Without an accounting database sacct fails, so submitit cannot see that the job was
        # cancelled and would wait for it forever: stop the first sweep as a user would (Ctrl-C).
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    first = log.read_text()
    assert "2 points, 0 already done, 2 to run" in first, first
    assert not (slow / "result.json").exists(), "the slow point finished before it was cancelled"
    step = torch.load(slow / "checkpoint.pt", weights_only=True)["step"]
    time.sleep(5)  # longer than KillWait: a process that escaped the cancel would still be writing
    later = torch.load(slow / "checkpoint.pt", weights_only=True)["step"]
    assert later == step, f"the cancelled job kept running after it left the queue (step {step} -> {later})"
    before = _metrics(slow)
    assert 0 <= step < len(RHOS) - 1 and before, (step, [r["step"] for r in before])
    kept = [r for r in before if r["step"] <= step]

    rc, text = _sweep(out, "methods=ksg,mine", ROWS, timeout=240)
    assert rc == 0, text
    assert "2 points, 1 already done, 1 to run" in text, text
    assert "done   methods=mine" in text and "done   methods=ksg" not in text, text
    after = _metrics(slow)
    steps = [r["step"] for r in after]
    assert steps == list(range(len(RHOS))), steps  # every row once: no duplicate and no missing step
    assert after[: len(kept)] == kept  # rows up to the checkpoint were kept, not recomputed
    rows = json.loads((slow / "result.json").read_text())["rows"]
    assert len(rows) == len(RHOS)
    assert [r["mine"] for r in rows[: len(kept)]] == [r["mine"] for r in kept]  # from the checkpoint
