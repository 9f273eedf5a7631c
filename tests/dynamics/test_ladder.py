"""The loss ladder on scripted curves, per-example losses against torch, learning times on scripted histories."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepscope.dynamics.ladder import (
    LossLadder,
    example_losses,
    group_gap,
    ladder_levels,
    learning_times,
    matched_loss_delta,
    regime_delta,
)

# --- per-example losses, the ladder, learning times ------------------------------------------

def test_example_losses_match_torch():
    out = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    loss, correct = example_losses(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out, y, reduction="none"))
    assert torch.equal(correct, out.argmax(1) == y)
    f = torch.tensor([[1.5], [-0.5], [0.2]])
    yb = torch.tensor([1, 1, 0])
    loss, correct = example_losses(f, yb)
    torch.testing.assert_close(loss, torch.log1p(torch.exp(torch.tensor([-1.5, 0.5, 0.2]))))
    assert correct.tolist() == [True, False, False]
    # batched: (K, N, 1) outputs with shared (N,) labels
    lk, ck = example_losses(f.expand(2, 3, 1), yb)
    assert lk.shape == (2, 3) and torch.equal(ck[1], correct)
    with pytest.raises(TypeError, match="must be integer class indices"):
        example_losses(out, y.float())


def test_ladder_levels_are_ln_c_times_powers():
    lv = ladder_levels(10)
    assert lv[0] == pytest.approx(math.log(10)) and lv[1] == pytest.approx(math.log(10) * 0.96)
    assert lv[-1] >= 1e-2 > lv[-1] * 0.96
    assert len(lv) == 1 + math.floor(math.log(1e-2 / math.log(10)) / math.log(0.96))
    with pytest.raises(ValueError, match=r"ratio == 1.2, must be in \(0, 1\)"):
        ladder_levels(10, ratio=1.2)


def test_ladder_fires_at_the_right_steps_on_a_scripted_curve():
    # L(t) = L0 exp(-t / 50): rung k fires at the first t >= 50 k ln(1 / 0.96)
    levels = ladder_levels(10, min_loss=0.5)
    ladder = LossLadder(levels)
    fired = {}
    for t in range(0, 400):
        for rung in ladder.update(t, math.log(10) * math.exp(-t / 50)):
            fired[rung] = t
    expect = {k: math.ceil(50 * k * math.log(1 / 0.96) - 1e-9) for k in range(len(levels))}
    assert fired == expect and ladder.done and ladder.steps_ == [expect[k] for k in range(len(levels))]


def test_ladder_running_mean_window_jumps_and_no_refiring():
    ladder = LossLadder([1.0, 0.9, 0.8, 0.5], window=3)
    # running means 1.25, 1.125, 1.0 (rung 0 at step 3), 1.0, 0.75 (rungs 1 and 2 at once),
    # then 1.5, 1.125, 1.083: the loss rises again and nothing fires twice
    values = [1.25, 1.0, 0.75, 1.25, 0.25, 3.0, 0.125, 0.125]
    out = [ladder.update(s, v) for s, v in enumerate(values, 1)]
    assert out == [[], [], [0], [], [1, 2], [], [], []]
    assert ladder.steps_ == [3, 5, 5] and ladder.next_ == 3
    with pytest.raises(ValueError, match="strictly decreasing"):
        LossLadder([0.5, 0.6])
    with pytest.raises(ValueError, match="training diverged"):
        ladder.update(9, float("nan"))


def test_ladder_records_and_state_roundtrip():
    ladder = LossLadder([0.6, 0.5, 0.4], window=2)
    for s, v in enumerate([0.7, 0.5, 0.45, 0.3], 1):
        for rung in ladder.update(s, v):
            ladder.record(rung, loss=torch.full((3,), v), correct=torch.tensor([v < 0.5] * 3))
    assert ladder.stack("loss").shape == (3, 3) and ladder.recorded_levels == [0.6, 0.5, 0.4]
    other = LossLadder([0.6, 0.5, 0.4], window=2)
    other.load_state_dict(ladder.state_dict())
    assert torch.equal(other.stack("correct"), ladder.stack("correct"))
    assert other.steps_ == ladder.steps_ and other.running_mean == ladder.running_mean
    with pytest.raises(ValueError, match="rung == 0, must be 3"):
        ladder.record(0, loss=torch.zeros(3), correct=torch.zeros(3, dtype=torch.bool))


def test_learning_times_on_scripted_histories():
    hist = np.array([
        [1, 1, 1, 1, 1],   # learned from the start -> 0
        [0, 0, 1, 1, 1],   # -> 2
        [0, 1, 0, 1, 1],   # learned, forgotten, relearned -> 3
        [1, 1, 1, 1, 0],   # forgotten at the end -> inf
        [0, 0, 0, 0, 0],   # never -> inf
        [0, 0, 0, 0, 1],   # at the last point -> 4
    ], dtype=bool).T
    assert learning_times(hist).tolist() == [0, 2, 3, math.inf, math.inf, 4]
    levels = [0.69, 0.6, 0.5, 0.4, 0.3]
    assert learning_times(torch.as_tensor(hist), times=levels).tolist()[:3] == [0.69, 0.5, 0.4]
    with pytest.raises(ValueError, match=r"times has shape \(2,\), must be \(5,\)"):
        learning_times(hist, times=[1, 2])


def test_group_gap():
    losses = np.array([[1.0, 1.0, 2.0, 4.0], [0.5, 0.0, 1.0, 1.0]])
    hard = np.array([False, False, True, True])
    assert group_gap(losses, hard, ~hard).tolist() == [2.0, 0.75]
    with pytest.raises(ValueError, match="both groups must be non-empty"):
        group_gap(losses, hard, np.zeros(4, bool))




def test_matched_loss_delta_equals_the_rung_delta_when_records_sit_on_the_levels():
    # records whose mean loss is exactly each level: interpolating at the levels returns the
    # records themselves, so the matched-loss Delta is regime_delta over the shared rungs
    rng = np.random.default_rng(0)
    levels = ladder_levels(10, min_loss=0.5)
    hard = np.arange(40) < 10

    def on_levels(n_rungs):
        x = rng.uniform(0.2, 1.8, size=(n_rungs, 40))
        return x * (np.array(levels[:n_rungs]) / x.mean(1))[:, None]

    a, b = on_levels(len(levels)), on_levels(12)
    d, n = matched_loss_delta(a, b, hard, ~hard, levels)
    assert n == 12 and d == pytest.approx(regime_delta(a, b, hard, ~hard)[0])


def test_matched_loss_delta_pairs_by_actual_loss_not_by_rung():
    # regime a's records lag: its rung k sits at the mean loss of b's rung k + 1; with the same
    # gap-vs-loss curve the matched-loss Delta is 0, the rung-by-rung Delta is not
    levels = ladder_levels(10, min_loss=0.5)
    hard = np.array([True, False])

    def records(means):
        return np.stack([[m * 1.5, m * 0.5] for m in means])   # gap = mean loss

    a, b = records(levels[1:]), records(levels[:-1])
    assert regime_delta(a, b, hard, ~hard)[0] < -0.01
    d, n = matched_loss_delta(a, b, hard, ~hard, levels)
    assert n == len(levels) - 2 and d == pytest.approx(0, abs=1e-12)
    assert matched_loss_delta(a[:0], b, hard, ~hard, levels) == (pytest.approx(float("nan"), nan_ok=True), 0)
