"""Every training loop's device path, run on the device and on the CPU, compared.

Marked ``cuda``: on a machine without CUDA they are skipped with a reason. ``make gpu-check``
(scripts/gpu_check.py) runs them on the GPU; ``DEEPSCOPE_CHECK_DEVICE=cpu`` runs the same code
with the CPU as "the device" (what ``make gpu-check DEVICE=cpu`` does in CI, so these tests
cannot rot while no GPU is around; there the comparisons are exact by construction).

Tolerances (relative L2 distance of the trained weights, device vs CPU, same seeds):
``SMOOTH`` for loops whose steps are smooth functions of the weights; ``DISCRETE`` for loops
whose steps take signs, arg-maxes or sample selections of float values (attacks, co-teaching's
small-loss selection, DivideMix's mixture, A3T's discriminator), where float rounding can flip
a decision and the runs then part by more. AMP (float16 autocast) against float32 on the
device uses ``AMP``. These tolerances are stated, not yet measured on a GPU: the closing note
of the first GPU run records the distances it saw (the JSON of ``make gpu-check``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda

DEVICE = os.environ.get("DEEPSCOPE_CHECK_DEVICE", "cuda")
SMOOTH, DISCRETE, AMP = 1e-3, 5e-2, 5e-2

sys.path.insert(0, str(Path(__file__).parents[1] / "distributed"))
from loops import LOOPS  # noqa: E402  (toy-sized calls of every dataset loop)

needs_device = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="no CUDA device here; make gpu-check runs these on a GPU (DEVICE=cpu: on the CPU)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="AMP (float16 autocast) needs a CUDA device")

DISCRETE_LOOPS = {"coteaching", "dividemix", "fgsm-at", "pgd-at", "pgd-at-l2", "trades", "a3t"}


def _run(tmp, name, device):
    from deepscope.train import Run

    return Run(tmp / name, config={"loop": name}, seed=0, device=device, progress=False)


def _distance(a: dict, b: dict) -> float:
    """Relative L2 distance between two state dicts (over all floating tensors)."""
    num = den = 0.0
    for k, v in a.items():
        if not v.is_floating_point():
            continue
        w = b[k].to(v.device, v.dtype)
        num += float((v - w).double().pow(2).sum())
        den += float(v.double().pow(2).sum())
    return (num / max(den, 1e-30)) ** 0.5


def _state(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


@needs_device
@pytest.mark.parametrize("name", sorted(LOOPS))
def test_loop_on_the_device_matches_the_cpu(tmp_path, name):
    on_cpu = _state(LOOPS[name](_run(tmp_path / "cpu", name, "cpu"), torch.Generator().manual_seed(0)))
    on_dev = _state(LOOPS[name](_run(tmp_path / "dev", name, DEVICE), torch.Generator().manual_seed(0)))
    assert sorted(on_cpu) == sorted(on_dev)
    tol = DISCRETE if name in DISCRETE_LOOPS else SMOOTH
    assert _distance(on_cpu, on_dev) <= tol, f"{name}: weights part by more than {tol}"


@needs_device
def test_a_checkpoint_written_on_the_device_resumes_to_the_same_numbers(tmp_path):
    from loops import _Kill

    full = _state(LOOPS["ce"](_run(tmp_path / "full", "ce", DEVICE), torch.Generator().manual_seed(0)))
    run = _run(tmp_path / "killed", "ce", DEVICE)
    run.log = _Kill(run, 1)  # after epoch 1's checkpoint
    with pytest.raises(SystemExit):
        LOOPS["ce"](run, torch.Generator().manual_seed(0))
    resumed = _state(LOOPS["ce"](_run(tmp_path / "killed", "ce", DEVICE),
                                 torch.Generator().manual_seed(0)))
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=1e-6, atol=1e-7, msg=k)


@needs_device
def test_load_onto_the_device_and_back(tmp_path):
    from deepscope import load
    from deepscope.nets import build_net
    from deepscope.nets.io import save_model

    net = build_net("cnn1d", input_shape=(40,), num_classes=10)
    save_model(tmp_path / "model.pt", net, "cnn1d", input_shape=(40,), num_classes=10)
    on_dev = load(tmp_path, map_location=DEVICE)
    assert next(on_dev.parameters()).device.type == torch.device(DEVICE).type
    x = torch.randn(4, 40)
    back = on_dev.to("cpu")
    torch.testing.assert_close(back(x), net.eval()(x), rtol=1e-5, atol=1e-6)


@needs_device
def test_mine_estimate_on_the_device_matches_the_cpu():
    from deepscope.mi import MINE, tasks

    x, y, truth = tasks.correlated_gaussian(2000, d=2, mi=0.5, seed=0)
    a = MINE(random_state=0, device="cpu", max_steps=200).fit(x, y).mi_
    b = MINE(random_state=0, device=DEVICE, max_steps=200).fit(x, y).mi_
    assert abs(a - b) <= 0.05, (a, b, truth)


@needs_device
def test_full_batch_engine_and_spectral_lockstep_on_the_device(tmp_path):
    from deepscope.dynamics import AlphaScaled, train_full_batch, train_lockstep
    from deepscope.nets import MLP
    from deepscope.nets.batched import BatchedMLP
    from deepscope.train.rng import fork_seeded

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 2, generator=g) * 2 - 1
    y = (x[:, 0] > 0).float()
    with fork_seeded(g):
        nets = [MLP(2, [16], 1) for _ in range(3)]
    outs = {}
    for dev in ("cpu", DEVICE):
        model = AlphaScaled(BatchedMLP.stack(nets), 1.0)
        outs[dev] = train_full_batch(model, x, y, levels=[0.6, 0.5], lr=0.5, max_steps=200,
                                     device=dev)
    assert outs["cpu"].steps.tolist() == outs[DEVICE].steps.tolist()
    assert _distance(_state(outs["cpu"].final), _state(outs[DEVICE].final)) <= SMOOTH

    t = torch.linspace(0, 1, 64).unsqueeze(1)
    targets = {"a": torch.sin(6.28 * t).squeeze(1)}
    w = {dev: train_lockstep(t, targets, generator=torch.Generator().manual_seed(0), device=dev,
                             width=16, depth=2, steps=50, record_every=25)["a"] for dev in ("cpu", DEVICE)}
    assert _distance(_state(w["cpu"].state_dict()), _state(w[DEVICE].state_dict())) <= SMOOTH


@needs_cuda
@pytest.mark.parametrize("name", ["ce", "crosssplit"])
def test_amp_agrees_with_float32_on_cuda(tmp_path, name):
    import loops

    x, y = loops._data(n=90)
    x_test, y_test = loops._data(n=30, seed=1)
    from deepscope.robust import train_ce, train_crosssplit

    fn = {"ce": train_ce, "crosssplit": train_crosssplit}[name]
    extra = {"warmup_epochs": 1} if name == "crosssplit" else {}
    states = {}
    for amp in (False, True):
        res = fn(x, y, num_classes=3, generator=torch.Generator().manual_seed(0), x_test=x_test,
                 y_test=y_test, net="mlp", net_kwargs={"hidden": (16,)},
                 options={"epochs": 3, "batch_size": 16, "lr": 0.05, "amp": amp, "device": "cuda"},
                 **extra)
        states[amp] = {f"{n}.{k}": v.detach().cpu() for n, m in res.models.items()
                       for k, v in m.state_dict().items()}
    assert _distance(states[False], states[True]) <= AMP


def _noisy_kwargs(device):
    import loops

    x, y = loops._data(n=90)
    x_test, y_test = loops._data(n=30, seed=1)
    return dict(x=x, y=y, num_classes=3, x_test=x_test, y_test=y_test, net="mlp",
                net_kwargs={"hidden": (16,)},
                options={"epochs": 2, "batch_size": 16, "lr": 0.05, "device": device})


@needs_device
@pytest.mark.parametrize("name", ["confident_learning", "ce_early_stopping"])
def test_other_noisy_label_loops_on_the_device_match_the_cpu(name):
    from deepscope.robust import train_ce_early_stopping, train_confident_learning

    fn = {"confident_learning": train_confident_learning,
          "ce_early_stopping": train_ce_early_stopping}[name]
    states = {}
    for dev in ("cpu", DEVICE):
        kw = _noisy_kwargs(dev)
        x, y = kw.pop("x"), kw.pop("y")
        extra = {"folds": 2} if name == "confident_learning" else {}
        res = fn(x, y, generator=torch.Generator().manual_seed(0), **kw, **extra)
        states[dev] = {f"{n}.{k}": v.detach().cpu() for n, m in res.models.items()
                       for k, v in m.state_dict().items()}
    assert _distance(states["cpu"], states[DEVICE]) <= SMOOTH


@needs_device
def test_gan_staircase_and_batched_spectral_loops_on_the_device_match_the_cpu():
    from deepscope.dynamics import train_lockstep
    from deepscope.mi import make_toy, train_gan, train_staircase

    gan, stair, batched = {}, {}, {}
    t = torch.linspace(0, 1, 64).unsqueeze(1)
    targets = {"a": torch.sin(6.28 * t).squeeze(1), "b": torch.cos(6.28 * t).squeeze(1)}
    for dev in ("cpu", DEVICE):
        res = train_gan(make_toy("ring"), generator=torch.Generator().manual_seed(0), device=dev,
                        steps=20, hidden=(16,), critic_hidden=(16,), batch_size=64,
                        checkpoint_every=10, log_every=10)
        gan[dev] = _state(res.model.state_dict())
        est = train_staircase(generator=torch.Generator().manual_seed(0), device=dev,
                              estimators=("smile",), variants=("gaussian",), levels=(2.0,),
                              steps_per_level=20, d=4, batch_size=32, hidden=(16,),
                              checkpoint_every=10)
        stair[dev] = est
        nets = train_lockstep(t, targets, generator=torch.Generator().manual_seed(0), device=dev,
                              width=16, depth=2, steps=30, record_every=10, implementation="stacked")
        batched[dev] = {f"{n}.{k}": v for n, m in nets.items()
                        for k, v in _state(m.state_dict()).items()}
    assert _distance(gan["cpu"], gan[DEVICE]) <= DISCRETE
    assert _distance(batched["cpu"], batched[DEVICE]) <= SMOOTH
    a, b = stair["cpu"]["gaussian/smile"], stair[DEVICE]["gaussian/smile"]
    assert abs(float(a.mean()) - float(b.mean())) <= 0.05  # nats, the mean estimate over steps
