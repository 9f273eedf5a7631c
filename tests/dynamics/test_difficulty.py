"""Difficulty measures: toy labels and exact boundary distances against brute force, label noise,
the spurious patch, kNN agreement, quantile groups, hold-out consistency and c-score files."""

import math

import numpy as np
import pytest
import torch

from deepscope.dynamics.difficulty import (
    DISK_RADIUS,
    consistency_reliability,
    distance_to_boundary,
    holdout_consistency,
    holdout_splits,
    knn_agreement,
    load_cscores,
    quantile_groups,
    sample_toy,
    spurious_patch,
    toy_labels,
)


@pytest.mark.parametrize("name", ["disk", "yinyang1", "disk_flip_diagonal", "yinyang_scurve"])
def test_distance_to_boundary_matches_brute_force(name):
    # distance to the nearest grid point of the other class, on a 1201 x 1201 grid
    side = torch.linspace(-1.2, 1.2, 1201, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    lab = toy_labels(grid, name)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 2, generator=g, dtype=torch.float64) * 2 - 1)
    d = distance_to_boundary(x, name)
    lx = toy_labels(x, name)
    brute = torch.stack([(grid[lab != lx[i]] - x[i]).norm(dim=1).min() for i in range(40)])
    spacing = float(side[1] - side[0])
    assert (d - brute).abs().max() <= spacing * 1.01  # within one grid step (and rounding)
    assert d.min() >= 0


@pytest.mark.parametrize("name", ["disk", "yinyang1", "disk_flip_diagonal", "yinyang_scurve"])
def test_toys_are_balanced_and_symmetric(name):
    g = torch.Generator().manual_seed(1)
    x, y = sample_toy(name, 20000, generator=g)
    assert x.shape == (20000, 2) and x.abs().max() <= 1
    assert abs(float(y.float().mean()) - 0.5) < 0.015  # each class has half of the square
    if name in ("yinyang_scurve", "yinyang1"):  # point symmetry through the origin swaps the classes
        assert torch.equal(toy_labels(-x[:1000], name), 1 - toy_labels(x[:1000], name))
    if name == "disk":
        assert distance_to_boundary(torch.tensor([[0.0, 0.0]]), name).item() == pytest.approx(DISK_RADIUS)


def test_toy_label_geometry():
    pts = lambda *p: torch.tensor(p, dtype=torch.float64)  # noqa: E731
    # yinyang1 (the authors'): the sign of the vertical coordinate, flipped inside the discs of
    # radius 0.3 around (0.5, -0.5) and (-0.5, 0.5)
    assert toy_labels(pts([0.9, 0.9], [0.9, -0.9], [0.5, -0.5], [-0.5, 0.5], [0.5, -0.21],
                          [0.5, -0.19]), "yinyang1").tolist() == [1, 0, 1, 0, 1, 0]
    d = distance_to_boundary(pts([0.5, -0.5], [0.0, 0.1], [0.5, -0.9]), "yinyang1")
    assert d.tolist() == pytest.approx([0.3, 0.1, 0.1])
    # disk_flip_diagonal (ours): the disk's labels flipped above the diagonal x2 > x1
    assert toy_labels(pts([0.1, -0.1], [-0.1, 0.1], [0.9, -0.9], [-0.9, 0.9]),
                      "disk_flip_diagonal").tolist() == [1, 0, 0, 1]
    d = distance_to_boundary(pts([0.0, 0.0], [0.3, -0.3]), "disk_flip_diagonal")
    assert d.tolist() == pytest.approx([0.0, min(0.6 / math.sqrt(2), DISK_RADIUS - math.sqrt(0.18))])
    # our S-curve yin-yang: the upper dot's centre is class 0, the lower one's class 1
    assert toy_labels(pts([0.0, 0.5], [0.0, -0.5]), "yinyang_scurve").tolist() == [0, 1]


@pytest.mark.parametrize("name", ["disk", "yinyang1"])
def test_extra_dims_are_irrelevant_uniform_inputs(name):
    g = torch.Generator().manual_seed(2)
    x, y = sample_toy(name, 4000, generator=g, extra_dims=5)
    assert x.shape == (4000, 7) and x.dtype == torch.float32 and x.abs().max() <= 1
    # label and distance read the first two coordinates only
    assert torch.equal(y, toy_labels(x[:, :2], name))
    assert torch.equal(distance_to_boundary(x, name), distance_to_boundary(x[:, :2], name))
    extra = x[:, 2:]
    assert extra.mean().abs() < 0.03 and (extra.var() - 1 / 3).abs() < 0.02  # uniform on [-1, 1]
    for j in range(5):  # independent of the label
        assert (extra[y == 1, j].mean() - extra[y == 0, j].mean()).abs() < 0.08
    # no extra dims: plane points
    x0, _ = sample_toy(name, 10, generator=torch.Generator().manual_seed(3))
    assert x0.shape == (10, 2)
    with pytest.raises(ValueError, match="extra_dims == -1"):
        sample_toy(name, 10, generator=g, extra_dims=-1)
    with pytest.raises(ValueError, match="must be \\(N, D\\) points with D >= 2"):
        toy_labels(torch.zeros(3, 1), name)


@pytest.mark.parametrize("shape", [(500, 40), (500, 3, 12, 12)])
def test_spurious_patch_is_predictive_for_the_majority_only(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    y = torch.randint(10, (shape[0],), generator=g)
    xp, agrees = spurious_patch(x, y, 10, majority=0.8, size=4, generator=g)
    assert abs(float(agrees.float().mean()) - 0.8) < 0.06
    patch = xp[..., -4:].reshape(shape[0], -1) if len(shape) == 2 else xp[..., -4:, -4:].reshape(shape[0], -1)
    # decode the patch by the class whose patch it equals in the majority group
    codes = {}
    for i in torch.nonzero(agrees).squeeze(1).tolist():
        codes.setdefault(int(y[i]), patch[i])
    assert len(codes) == 10 and len({tuple(c.tolist()) for c in codes.values()}) == 10
    decoded = torch.tensor([next(c for c, v in codes.items() if torch.equal(v, patch[i]))
                            for i in range(shape[0])])
    assert torch.equal(decoded == y, agrees)  # minority: the code of another class
    assert set(patch.unique().tolist()) == {-1.0, 1.0}
    # outside the patch nothing changed
    rest = (slice(None), slice(0, -4)) if len(shape) == 2 else (slice(None), slice(None), slice(0, -4))
    assert torch.equal(xp[rest], x[rest])
    with pytest.raises(ValueError, match="size == 50, must be an integer in 1..40"):
        spurious_patch(torch.randn(5, 40), y[:5], 10, size=50, generator=g)


def test_knn_agreement():
    # two well separated clusters, one mislabelled point inside the first
    x = torch.cat([torch.randn(30, 2) * 0.1, torch.randn(30, 2) * 0.1 + 5])
    y = torch.cat([torch.zeros(30), torch.ones(30)]).long()
    y[0] = 1
    a = knn_agreement(x, y, k=5, chunk=7)
    assert a[0] == 0.0 and a[30:].min() == 1.0 and a[1:30].min() >= 0.8
    with pytest.raises(ValueError, match="k == 60, must be an integer in 1..59"):
        knn_agreement(x, y, k=60)


def test_quantile_groups_are_equal_sized_by_rank():
    s = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0])
    assert quantile_groups(s, 3).tolist() == [2, 0, 1, 1, 2, 0]
    assert np.bincount(quantile_groups(np.zeros(10), 3)).tolist() == [4, 3, 3]


def test_holdout_consistency_holds_each_example_out_once_per_seed():
    n, folds, seeds = 23, 4, 3
    g = torch.Generator().manual_seed(0)
    splits = holdout_splits(n, folds=folds, seeds=seeds, generator=g)
    assert len(splits) == folds * seeds
    for s in range(seeds):
        held = torch.cat([te for (ss, _, _, te) in splits if ss == s]).sort().values
        assert torch.equal(held, torch.arange(n))
    for _, _, tr, te in splits:
        assert not set(tr.tolist()) & set(te.tolist()) and len(tr) + len(te) == n

    # an oracle "model": example i scores i / n, plus seed-dependent noise on odd examples
    def fit_predict(train, test, seed, fold):
        base = test.double() / n
        return (base + 0.3 * (seed % 2) * (test % 2)).clamp(0, 1)

    cs = holdout_consistency(n, fit_predict, folds=folds, seeds=seeds, generator=g)
    assert cs.per_seed.shape == (seeds, n) and not np.isnan(cs.per_seed).any()
    np.testing.assert_allclose(cs.score, cs.per_seed.mean(0))
    np.testing.assert_allclose(cs.per_seed[0], np.arange(n) / n)  # seed 0: no noise
    assert 0 < cs.reliability["pairwise"] < 1 and cs.reliability["n_seeds"] == 3

    with pytest.raises(ValueError, match=r"fit_predict returned shape"):
        holdout_consistency(n, lambda tr, te, s, f: torch.ones(len(te) + 1), folds=2, seeds=1, generator=g)


def test_consistency_reliability_values():
    a = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    r = consistency_reliability(a)
    assert r["pairwise"] == 1.0 and r["split_half"] == 1.0 and r["spearman_brown"] == 1.0
    r = consistency_reliability(np.array([[1, 2, 3, 4], [4, 3, 2, 1.0]]))
    assert r["pairwise"] == -1.0 and math.isnan(r["spearman_brown"])
    with pytest.raises(ValueError, match="S >= 2"):
        consistency_reliability(np.zeros((1, 4)))


def test_load_cscores_validates_the_file(tmp_path):
    good = tmp_path / "c.npz"
    np.savez(good, scores=np.linspace(0, 1, 50), labels=np.arange(50) % 10)
    s, lab = load_cscores(good, n=50)
    assert s.shape == (50,) and lab[3] == 3
    np.save(tmp_path / "c.npy", np.full(50, 0.5))
    assert load_cscores(tmp_path / "c.npy")[1] is None
    with pytest.raises(ValueError, match="has 50 scores, must have 40"):
        load_cscores(good, n=40)
    with pytest.raises(ValueError, match="is not a file"):
        load_cscores(tmp_path / "missing.npz")
    bad = tmp_path / "b.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(ValueError, match=r"holds arrays \['other'\]; need one named 'scores'"):
        load_cscores(bad)
    np.save(tmp_path / "r.npy", np.full(5, 2.0))
    with pytest.raises(ValueError, match=r"score in \[0, 1\]"):
        load_cscores(tmp_path / "r.npy")
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_cscores(tmp_path / "t.npz")
