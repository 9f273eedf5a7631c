"""The spectral-bias loop: exact resume, explicit randomness, shared initialisations, readers."""

import math

import numpy as np
import pytest
import torch

from deepscope.dynamics.spectral import spearman, sum_of_sinusoids
from deepscope.dynamics.spectral_train import (
    load_lockstep_model,
    log_spectra,
    read_spectra,
    train_lockstep,
)
from deepscope.nets import MLP
from deepscope.train import Run
from tests.killing import KillAt, Killed

Z = torch.arange(64, dtype=torch.float32) / 64
X = Z[:, None]
FREQS = [2, 5]
TARGETS = {"a": sum_of_sinusoids(Z, FREQS, [1.0, 1.0], [0.0, 1.0]),
           "b": sum_of_sinusoids(Z, FREQS, [0.2, 0.4], [0.5, 0.0])}
SMALL = dict(width=16, depth=3, steps=30, lr=3e-3, record_every=5, checkpoint_every=10)


def _extra(step, models):  # a record hook beside the spectra, like spectral-noise's
    return {"out_norm": {n: round(float(m(X).norm()), 6) for n, m in models.items()}}


def _record():
    spectra = log_spectra(X, dict.fromkeys(TARGETS, [1.0, 1.0]), freqs=FREQS)
    return lambda step, models: {**spectra(step, models), **_extra(step, models)}


def _train(run, **kw):
    return train_lockstep(X, TARGETS, generator=torch.Generator().manual_seed(7), run=run,
                          record=_record(), **{**SMALL, **kw})


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _strip(metrics):
    return [{k: v for k, v in r.items() if k != "time"} for r in metrics]


def test_killed_loop_resumes_to_identical_weights_and_metrics(tmp_path):
    full = _train(Run(tmp_path / "a", config={}, progress=False))
    with pytest.raises(Killed):
        _train(KillAt(tmp_path / "b", config={}, progress=False, kill_at=25))  # last checkpoint: 20
    assert max(r["step"] for r in Run(tmp_path / "b", config={}).metrics()) == 25
    torch.randn(10)  # the global RNG plays no part
    run_b = Run(tmp_path / "b", config={}, progress=False)
    resumed = _train(run_b)
    for n in TARGETS:
        for p, q in zip(full[n].parameters(), resumed[n].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    a = _strip(Run(tmp_path / "a", config={}).metrics())
    assert _strip(run_b.metrics()) == a and [r["step"] for r in a] == [5, 10, 15, 20, 25, 30]
    assert set(a[0]) == {"step", "loss_a", "loss_b", "spectrum_a", "spectrum_b", "out_norm"}
    blob = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert set(blob["objects"]["models"]) == {"a", "b"} and blob["step"] == 30


def test_no_run_same_numbers_and_the_global_rng_is_neither_read_nor_moved(tmp_path):
    torch.manual_seed(1)
    state = torch.get_rng_state()
    alone = train_lockstep(X, TARGETS, generator=torch.Generator().manual_seed(7), **SMALL)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)  # another global state: same networks
    with_run = _train(Run(tmp_path, config={}, progress=False))
    for n in TARGETS:
        torch.testing.assert_close(_flat(alone[n]), _flat(with_run[n]), rtol=0, atol=0)
    steps, spectra, losses = read_spectra(Run(tmp_path, config={}).metrics(), ["a", "b"])
    assert steps.tolist() == [5, 10, 15, 20, 25, 30] and spectra.shape == (6, 2, 2)
    assert losses.shape == (6, 2) and losses[-1, 0] < losses[0, 0]


def test_share_init_groups_start_equal_and_others_differ():
    targets = {n: TARGETS["a"] for n in ("p", "q", "r")}
    kw = dict(width=8, depth=2, steps=1, lr=0.0 + 1e-12, record_every=1, checkpoint_every=1)
    nets = train_lockstep(X, targets, generator=torch.Generator().manual_seed(0),
                          share_init=[["p", "r"], ["q"]], **kw)
    w = {n: _flat(m) for n, m in nets.items()}
    torch.testing.assert_close(w["p"], w["r"], rtol=0, atol=0)
    assert not torch.allclose(w["p"], w["q"], atol=1e-3)
    # one input per name works too (the manifold experiment: one curve per network)
    nets = train_lockstep({n: X * (i + 1) for i, n in enumerate(targets)}, targets,
                          generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(_flat(nets["p"]), _flat(nets["q"]), atol=1e-6, rtol=0)


def test_loop_errors_name_the_argument():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="steps == 0, must be an integer >= 1"):
        train_lockstep(X, TARGETS, generator=g, steps=0)
    with pytest.raises(ValueError, match="depth == 1, must be an integer >= 2"):
        train_lockstep(X, TARGETS, generator=g, depth=1)
    with pytest.raises(ValueError, match=r"targets\['a'\] has shape \(63,\), must be \(64,\)"):
        train_lockstep(X, {"a": Z[:63]}, generator=g)
    with pytest.raises(ValueError, match="share_init == .* must list every target name exactly once"):
        train_lockstep(X, TARGETS, generator=g, share_init=[["a"]])
    with pytest.raises(ValueError, match="x has no input for target 'b'"):
        train_lockstep({"a": X}, TARGETS, generator=g)
    with pytest.raises(ValueError, match="lr == -1.0, must be a number > 0"):
        train_lockstep(X, TARGETS, generator=g, lr=-1.0)
    with pytest.raises(ValueError, match="lr == inf, must be a finite number > 0"):
        train_lockstep(X, TARGETS, generator=g, lr=float("inf"))


def test_load_lockstep_model_by_name(tmp_path):
    nets = _train(Run(tmp_path, config={}, progress=False))
    net = MLP(1, [16, 16], 1)
    assert load_lockstep_model(tmp_path, "b", net) == 30
    torch.testing.assert_close(_flat(net), _flat(nets["b"]), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"has no model 'equal_s0'; it holds \['a', 'b'\]"):
        load_lockstep_model(tmp_path, "equal_s0", net)
    with pytest.raises(ValueError, match="holds no checkpoint.pt"):
        load_lockstep_model(tmp_path / "nothing", "a", net)
    old = Run(tmp_path / "old", config={}, progress=False)  # the layout before names
    old.save(30, models=[nets["a"].state_dict()])
    with pytest.raises(ValueError, match="keeps its networks by position"):
        load_lockstep_model(tmp_path / "old", "equal_s0", net)


def test_spearman_ranks_missing_last():
    r = spearman([1, 2, 3, 4], [10.0, 20.0, math.nan, 30.0], missing=99.0)
    assert r["rho"] == pytest.approx(0.8)
    assert np.isnan(spearman([1, 2, 3], [5.0, 5.0, 5.0], missing=0.0)["rho"])


# --- implementation="stacked": the same networks as one stacked model -----------------------------------

SEEDED = {f"{case}_s{s}": TARGETS[t] for s in range(2) for case, t in (("eq", "a"), ("inc", "b"))}
GROUPS = [["eq_s0", "inc_s0"], ["eq_s1", "inc_s1"]]  # per seed, both cases share one init


def _pair(implementation, run=None, **kw):
    spectra = log_spectra(X, dict.fromkeys(SEEDED, [1.0, 1.0]), freqs=FREQS)
    return train_lockstep(X, SEEDED, implementation=implementation, generator=torch.Generator().manual_seed(3), run=run, share_init=GROUPS,
              record=spectra, **{**SMALL, "steps": 60, **kw})


def test_stacked_equals_separate_networks(tmp_path):
    sep = _pair("separate", Run(tmp_path / "sep", config={}, progress=False))
    bat = _pair("stacked", Run(tmp_path / "bat", config={}, progress=False))
    for n in SEEDED:
        torch.testing.assert_close(_flat(bat[n]), _flat(sep[n]), rtol=1e-4, atol=1e-5)
    names = list(SEEDED)
    s_steps, s_spec, s_loss = read_spectra(Run(tmp_path / "sep", config={}).metrics(), names)
    b_steps, b_spec, b_loss = read_spectra(Run(tmp_path / "bat", config={}).metrics(), names)
    assert s_steps.tolist() == b_steps.tolist() == list(range(5, 61, 5))
    np.testing.assert_allclose(b_spec, s_spec, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(b_loss, s_loss, rtol=1e-4, atol=1e-6)
    assert (b_loss[-1] < b_loss[0]).all()  # it did train
    # the stacked checkpoint names its networks like the separate one's
    net = MLP(1, [16, 16], 1)
    assert load_lockstep_model(tmp_path / "bat", "inc_s1", net) == 60
    torch.testing.assert_close(_flat(net), _flat(bat["inc_s1"]), rtol=0, atol=0)


def test_stacked_killed_and_resumed_equals_uninterrupted(tmp_path):
    full = _pair("stacked", Run(tmp_path / "a", config={}, progress=False), steps=30)
    with pytest.raises(Killed):
        _pair("stacked", KillAt(tmp_path / "b", config={}, progress=False, kill_at=25), steps=30)
    torch.randn(3)  # the global RNG plays no part
    run_b = Run(tmp_path / "b", config={}, progress=False)
    resumed = _pair("stacked", run_b, steps=30)
    for n in SEEDED:
        torch.testing.assert_close(_flat(full[n]), _flat(resumed[n]), rtol=0, atol=0)
    assert _strip(run_b.metrics()) == _strip(Run(tmp_path / "a", config={}).metrics())


def test_stacked_needs_one_row_count_and_a_known_implementation():
    with pytest.raises(ValueError, match=r"x has \[32, 64\] rows across the targets; implementation='stacked'"):
        train_lockstep({"a": X, "b": X[:32]}, {"a": TARGETS["a"], "b": TARGETS["b"][:32]},
                       generator=torch.Generator().manual_seed(0), implementation="stacked", **SMALL)
    with pytest.raises(ValueError, match="steps == 0, must be an integer >= 1"):
        train_lockstep(X, TARGETS, generator=torch.Generator().manual_seed(0), steps=0,
                       implementation="stacked")
    with pytest.raises(ValueError, match=r"implementation == 'vmap'; choose one of \['separate', 'stacked'\]"):
        train_lockstep(X, TARGETS, generator=torch.Generator().manual_seed(0), implementation="vmap")
