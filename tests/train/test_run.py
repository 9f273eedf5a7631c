import json

import pytest
import torch

from deepscope.train import Run, RunConfig
from deepscope.train.distributed import resolve_device
from deepscope.train.rng import fork_seeded, seed_globals


def _loop(run, steps, every, kill_at=None):
    """A tiny training loop that checkpoints and resumes, as recipes do."""
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start = run.restore(model=model, opt=opt)["step"]
    for step in range(start + 1, steps + 1):
        x = torch.randn(8, 3)  # drawn from the global RNG: resume must restore it
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(step, loss=loss.item())
        if step % every == 0:
            run.save(step, model=model, opt=opt)
        if kill_at is not None and step == kill_at:
            return None
    return model.weight.detach().clone()


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    cfg = {"lr": 0.1}
    seed_globals(3)  # what the runner does once per recipe run (the command boundary)
    w_full = _loop(Run(tmp_path / "a", config=cfg, seed=3, progress=False), 20, 5)
    # killed at step 13: steps 11..13 were logged after the last checkpoint (10)
    seed_globals(3)
    _loop(Run(tmp_path / "b", config=cfg, seed=3, progress=False), 20, 5, kill_at=13)
    seed_globals(3)
    run_b = Run(tmp_path / "b", config=cfg, seed=3, progress=False)
    torch.randn(100)  # the restored checkpoint puts the global RNG back where it was
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
    run.save(1)
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        Run(tmp_path, config={"lr": 0.2, "threads": 1}, progress=False)
    Run(tmp_path, config={"lr": 0.1, "threads": 2}, progress=False)  # thread count may change


def test_elapsed_time_survives_resume(tmp_path):
    run = Run(tmp_path, config={}, progress=False)
    run.started -= 100.0  # pretend the first process ran 100 s
    run.save(1)
    resumed = Run(tmp_path, config={}, progress=False)
    resumed.restore()
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


def _gen_loop(run, steps, every, kill_at=None):
    """A loop in the house style: explicit generator, run.save / run.restore."""
    g = run.generator("data")
    with fork_seeded(run.generator("init")):
        model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    start = run.restore(models={"lin": model}, opt=opt)["step"]
    for step in range(start + 1, steps + 1):
        x = torch.randn(8, 3, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.log(step, loss=loss.item())
        if step % every == 0:
            run.save(step, models={"lin": model}, opt=opt, note="plain value")
        if kill_at is not None and step == kill_at:
            return None
    return model.weight.detach().clone()


def test_save_restore_with_generators_resumes_identically(tmp_path):
    w_full = _gen_loop(Run(tmp_path / "a", config={}, seed=5, progress=False), 20, 5)
    _gen_loop(Run(tmp_path / "b", config={}, seed=5, progress=False), 20, 5, kill_at=13)
    run_b = Run(tmp_path / "b", config={}, seed=5, progress=False)
    torch.randn(100)  # the global RNG is not what the loop draws from
    w_res = _gen_loop(run_b, 20, 5)
    torch.testing.assert_close(w_full, w_res, rtol=0, atol=0)
    assert [r["loss"] for r in run_b.metrics()] == [
        r["loss"] for r in Run(tmp_path / "a", config={}, seed=5).metrics()]
    blob = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)  # no pickled objects
    assert set(blob["objects"]["models"]) == {"lin"} and blob["objects"]["note"] == "plain value"
    assert Run(tmp_path / "b", config={}, seed=5).restore(
        models={"lin": torch.nn.Linear(3, 1)})["step"] == 20


def test_restore_names_missing_entries(tmp_path):
    run = Run(tmp_path, config={}, progress=False)
    run.save(1, model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"has no \['opt'\]"):
        run.restore(opt=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1))


def test_generators_are_named_and_seeded(tmp_path):
    a = Run(tmp_path / "a", seed=1, progress=False)
    b = Run(tmp_path / "b", seed=1, progress=False)
    assert a.generator("x") is a.generator("x")
    x1 = torch.rand(4, generator=a.generator("x"))
    assert torch.equal(x1, torch.rand(4, generator=b.generator("x")))
    assert not torch.equal(torch.rand(4, generator=a.generator("y")), x1)


def test_child_finished_and_read_result(tmp_path):
    import math

    from deepscope.train.run import is_finished, read_result

    run = Run(tmp_path, config={}, seed=2, progress=False)
    sub = run.child("seed3", config={"seed": 3}, seed=3)
    assert sub.dir == tmp_path / "seed3" and sub.seed == 3 and not sub.finished
    sub.write_result({"kl": math.inf, "neg": -math.inf, "x": [1.0, math.inf]})
    assert sub.finished and is_finished(tmp_path / "seed3")
    r = read_result(tmp_path / "seed3")
    assert r["kl"] == math.inf and r["neg"] == -math.inf and r["x"][1] == math.inf
    assert run.child("seed3", config={"seed": 3}, seed=3).read_result() == r


def test_null_run_lets_loops_run_without_a_directory():
    from deepscope.train.run import NullRun, as_run

    run = as_run(None)
    assert isinstance(run, NullRun) and run.device.type == "cpu"
    assert run.restore(model=torch.nn.Linear(1, 1)) == {"step": 0}
    run.save(3, model=torch.nn.Linear(1, 1))
    run.log(1, a=1)
    with run.progress(3) as adv:
        adv(1, loss=0.5)


def test_fork_seeded_leaves_global_rng_alone():
    from deepscope.train.rng import fork_seeded, make_generator

    before = torch.get_rng_state()
    with fork_seeded(make_generator(0, "m")):
        w1 = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(torch.get_rng_state(), before)
    with fork_seeded(make_generator(0, "m")):
        w2 = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(w1, w2)


def test_config_validation_at_the_boundary():
    from deepscope.train.config import deferred_validation

    with pytest.raises(ValueError, match="seed == -1, must be an integer >= 0"):
        RunConfig(seed=-1)
    with pytest.raises(ValueError, match="device == 'gpu'"):
        RunConfig(device="gpu")
    with deferred_validation():
        cfg = RunConfig(threads=-2)  # built, not yet validated (the CLI validates once)
    with pytest.raises(ValueError, match="threads == -2"):
        cfg.validate()


def test_tensorboard_and_wandb_loggers(tmp_path):
    pytest.importorskip("tensorboard")
    wandb = pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Run(tmp_path, config={"lr": 0.1}, progress=False, loggers=("tensorboard", "wandb"))
    for step in (1, 2, 3):
        run.log(step, loss=1.0 / step, note="text is not a scalar")
    run.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3]
    assert acc.Scalars("loss")[2].value == pytest.approx(1 / 3)
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb")), "no offline wandb run"
    assert wandb.run is None  # finished
    with pytest.raises(ValueError, match="logger == 'mlflow'"):
        Run(tmp_path / "x", loggers=("mlflow",))


def test_under_torchrun_cuda_means_this_process_gpu(monkeypatch):
    import torch

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == torch.device("cuda", 3) == resolve_device("auto")
    assert chosen == [torch.device("cuda", 3)] * 2
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # an explicit index is kept
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_device("cuda") == torch.device("cuda")  # one process: unchanged


def test_save_file_is_atomic_and_reads_back(tmp_path, monkeypatch):
    """Side files (cached data, predictions) go through a unique temporary and a rename: a
    crash while writing leaves the previous file whole and no temporary behind."""
    import numpy as np

    from deepscope.train import run as run_mod

    run = Run(tmp_path / "r", config={"a": 1}, seed=0, progress=False)
    path = run.save_file("cache.pt", {"x": torch.arange(3)})
    assert path == run.dir / "cache.pt"
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    npz = run.save_file("est.npz", {"truth": np.ones(2)})
    assert np.load(npz)["truth"].tolist() == [1.0, 1.0]

    def crash(obj, f, *a, **k):
        with open(f, "wb") as h:
            h.write(b"half a fi")
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run.save_file("cache.pt", {"x": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in run.dir.iterdir() if p.name.startswith("cache")) == ["cache.pt"]


def test_runs_leave_the_global_generators_alone(tmp_path):
    """Library code never seeds the global RNGs; only the command boundary does (seed_globals)."""
    import random

    import numpy as np

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    run = Run(tmp_path, config={}, seed=7, progress=False)
    run.child("seed1", config={}, seed=1).generator("data")
    run.generator("init")
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and (before[1] == after[1]).all() and before[2] == after[2]


def test_seed_globals_seeds_all_three_and_checks_its_argument():
    import random

    import numpy as np

    seed_globals(4)
    a = (torch.rand(2), np.random.rand(2), random.random())
    seed_globals(4)
    b = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]
    with pytest.raises(ValueError, match="seed == -1"):
        seed_globals(-1)


def test_one_list_of_fields_that_may_change_on_resume(tmp_path):
    run = Run(tmp_path, config={"lr": 0.1, **{k: "a" for k in RunConfig.RESUMABLE_CHANGES}}, progress=False)
    run.save(1)
    Run(tmp_path, config={"lr": 0.1, **{k: "b" for k in RunConfig.RESUMABLE_CHANGES}}, progress=False)
    with pytest.raises(ValueError, match=r"differs in \['seed'\]"):
        Run(tmp_path, config={"lr": 0.1, "seed": 1}, progress=False)


def test_as_run_never_changes_the_callers_run(tmp_path):
    from deepscope.train.loop import TrainOptions, setup
    from deepscope.train.run import NullRun, as_run

    run = Run(tmp_path, config={}, device="cpu", progress=False)
    assert as_run(run) is run and as_run(run, "cpu") is run
    assert isinstance(as_run(None, "cpu"), NullRun)
    same, dist, device = setup(run, TrainOptions(device="cpu"))
    assert same is run and run.device == device == torch.device("cpu") and not dist.enabled
    null, _, device = setup(None, TrainOptions())
    assert isinstance(null, NullRun) and null.device == device == torch.device("cpu")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="the run is on cpu"):
            as_run(run, "cuda")
