import math

import numpy as np
import pytest
import torch

from deepscope.mi.staircase import train_staircase
from deepscope.train import Run
from deepscope.train.rng import make_generator

TINY = dict(estimators=("mine", "dv", "nwj", "infonce", "smile"), variants=("gaussian", "cubic"),
            levels=(1.0, 2.0), steps_per_level=20, d=3, batch_size=8, hidden=(16,), checkpoint_every=20,
            log_every=10)


def test_killed_run_resumes_to_identical_numbers(tmp_path):
    full = Run(tmp_path / "a", config={"x": 1}, seed=3, progress=False)
    est_full = train_staircase(generator=make_generator(3, "s"), run=full, **TINY)

    killed = Run(tmp_path / "b", config={"x": 1}, seed=3, progress=False)
    log = killed.log

    def log_then_die(step, **fields):
        log(step, **fields)
        if step == 30:  # after the checkpoint at step 20
            raise KeyboardInterrupt

    killed.log = log_then_die
    with pytest.raises(KeyboardInterrupt):
        train_staircase(generator=make_generator(3, "s"), run=killed, **TINY)
    blob = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert blob["step"] == 20 and set(blob["objects"]["models"]) == {f"{v}/{e}" for v in TINY["variants"]
                                                                     for e in TINY["estimators"]}
    resumed = Run(tmp_path / "b", config={"x": 1}, seed=3, progress=False)
    torch.randn(5)  # the loop does not draw from the global RNG
    est_res = train_staircase(generator=make_generator(3, "s"), run=resumed, **TINY)
    assert list(est_full) == list(est_res)
    for name, a in est_full.items():
        np.testing.assert_array_equal(a, est_res[name])
        assert np.isfinite(a).all() and a.shape == (40,)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(full.metrics()) == strip(resumed.metrics()) and len(full.metrics()) == 4
    assert [r["truth"] for r in full.metrics()] == [1.0, 1.0, 2.0, 2.0]


def test_without_a_run_same_numbers_and_global_rng_untouched():
    kw = dict(TINY, estimators=("infonce", "smile"), variants=("gaussian",))
    before = torch.get_rng_state()
    a = train_staircase(generator=make_generator(0, "s"), **kw)
    assert torch.equal(before, torch.get_rng_state())
    b = train_staircase(generator=make_generator(0, "s"), **kw)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert a["gaussian/infonce"].max() <= math.log(kw["batch_size"])  # InfoNCE never exceeds log K


def test_bad_arguments():
    g = torch.Generator()
    with pytest.raises(ValueError, match="bound == 'mien'; choose one of"):
        train_staircase(generator=g, estimators=("mien",))
    with pytest.raises(ValueError, match=r"variants == \('log',\), must be a subset of"):
        train_staircase(generator=g, variants=("log",))
    with pytest.raises(ValueError, match="steps_per_level == 0, must be an integer >= 1"):
        train_staircase(generator=g, steps_per_level=0)
