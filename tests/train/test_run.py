import json

import pytest
import torch

from deepscope.train import Run, RunConfig
from deepscope.train.run import resolve_device


def _loop(run, steps, every, kill_at=None):
    """A tiny training loop that checkpoints and resumes, as recipes do."""
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = run.load_checkpoint()
    start = 0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    for step in range(start + 1, steps + 1):
        x = torch.randn(8, 3)  # drawn from the global RNG: resume must restore it
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(step, loss=loss.item())
        if step % every == 0:
            run.save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict()}, step=step)
        if kill_at is not None and step == kill_at:
            return None
    return model.weight.detach().clone()


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    cfg = {"lr": 0.1}
    w_full = _loop(Run(tmp_path / "a", config=cfg, seed=3, progress=False), 20, 5)
    # killed at step 13: steps 11..13 were logged after the last checkpoint (10)
    _loop(Run(tmp_path / "b", config=cfg, seed=3, progress=False), 20, 5, kill_at=13)
    run_b = Run(tmp_path / "b", config=cfg, seed=3, progress=False)
    w_resumed = _loop(run_b, 20, 5)
    torch.testing.assert_close(w_full, w_resumed, rtol=0, atol=0)
    la = [r["loss"] for r in Run(tmp_path / "a", config=cfg, seed=3).metrics()]
    lb = [r["loss"] for r in run_b.metrics()]
    assert la == lb and len(lb) == 20


def test_files_and_result(tmp_path):
    run = Run(tmp_path, config=RunConfig(seed=1), seed=1, progress=False)
    run.log(1, a=1.5, b=float("nan"), t=torch.tensor([1.0, 2.0]))
    run.write_result({"x": 1.0})
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1
    rec = run.metrics()[0]
    assert rec["a"] == 1.5 and rec["b"] is None and rec["t"] == [1.0, 2.0]
    assert json.loads((tmp_path / "result.json").read_text()) == {"x": 1.0}
    assert run.figure_path("curve").name == "curve.png"
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_with_other_config_is_refused(tmp_path):
    run = Run(tmp_path, config={"lr": 0.1, "threads": 1}, progress=False)
    run.save_checkpoint({}, step=1)
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        Run(tmp_path, config={"lr": 0.2, "threads": 1}, progress=False)
    Run(tmp_path, config={"lr": 0.1, "threads": 2}, progress=False)  # thread count may change


def test_elapsed_time_survives_resume(tmp_path):
    run = Run(tmp_path, config={}, progress=False)
    run.started -= 100.0  # pretend the first process ran 100 s
    run.save_checkpoint({}, step=1)
    resumed = Run(tmp_path, config={}, progress=False)
    resumed.load_checkpoint()
    import time

    assert time.time() - resumed.started >= 100.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed == -1"):
        Run("/tmp/never", seed=-1)
    with pytest.raises(ValueError, match="device == 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_concurrent_writers_do_not_share_temporaries(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from deepscope.train.run import atomic_write_text

    target = tmp_path / "config.json"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: atomic_write_text(target, f'{{"i": {i}}}\n'), range(200)))
    assert json.loads(target.read_text())["i"] in range(200)
    assert not list(tmp_path.glob("*.tmp"))
