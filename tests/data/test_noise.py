"""Label-noise generators: exact realised rates, masks, seeds, maps and transition matrices."""

import collections

import pytest
import torch

from deepscope.data.noise import (
    CIFAR10_ASYMMETRIC_MAP,
    CIFAR100_COARSE,
    asymmetric_noise,
    cifar100_superclass_map,
    class_map,
    cyclic_map,
    instance_noise,
    make_label_noise,
    parse_noise,
    symmetric_noise,
)


def _labels(per_class=(100, 50, 30, 20, 200, 100, 100, 100, 100, 100)):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
def test_symmetric_other_classes_flips_exactly_the_rate_per_class(rate):
    y = _labels()
    noise = symmetric_noise(y, rate, num_classes=10, generator=_g(), include_true=False)
    counts = torch.bincount(y, minlength=10)
    expected = sum(int(rate * int(n) + 0.5) for n in counts)
    assert int(noise.corrupted.sum()) == expected
    assert noise.rate == expected / len(y)
    for c in range(10):  # per class: exactly floor(rate * n_c + 1/2) flipped, never to itself
        assert int(noise.corrupted[y == c].sum()) == int(rate * int(counts[c]) + 0.5)
    assert torch.equal(noise.corrupted, noise.labels != y) and torch.equal(noise.clean, y)
    k = 10
    t = (1 - rate) * torch.eye(k, dtype=torch.float64) + rate / (k - 1) * (1 - torch.eye(k, dtype=torch.float64))
    torch.testing.assert_close(noise.transition, t, rtol=0, atol=1e-15)
    torch.testing.assert_close(noise.transition.sum(1), torch.ones(k, dtype=torch.float64))


def test_symmetric_over_all_classes_redraws_the_rate_and_keeps_one_in_k():
    # DivideMix's convention: rate * n re-drawn uniformly over all K classes.
    k, n = 10, 20000
    y = torch.arange(k).repeat(n // k)
    noise = symmetric_noise(y, 0.6, num_classes=k, generator=_g(3), include_true=True)
    # realised flips ~ Binomial(12000, 9/10): mean 10800, sd ~33
    flips = int(noise.corrupted.sum())
    assert abs(flips - 10800) < 5 * 33
    assert abs(noise.rate - 0.6 * (k - 1) / k) < 5 * 33 / n
    t = 0.4 * torch.eye(k, dtype=torch.float64) + 0.06
    torch.testing.assert_close(noise.transition, t, rtol=0, atol=1e-15)
    # the empirical matrix is close to T (each row has 2000 examples: sd of an entry ~ 0.0053)
    assert (noise.empirical_transition() - t).abs().max() < 0.03
    assert noise.kind == "sym" and noise.nominal_rate == 0.6


def test_noise_is_deterministic_by_seed_and_differs_across_seeds():
    y = _labels()
    for make in (
        lambda g: symmetric_noise(y, 0.5, num_classes=10, generator=g),
        lambda g: asymmetric_noise(y, 0.5, mapping="cyclic", num_classes=10, generator=g),
        lambda g: instance_noise(y, torch.randn(len(y), 7, generator=_g(9)), 0.4, num_classes=10,
                                 generator=g),
    ):
        a, b, c = make(_g(1)), make(_g(1)), make(_g(2))
        assert torch.equal(a.labels, b.labels) and torch.equal(a.corrupted, b.corrupted)
        assert not torch.equal(a.labels, c.labels)


def test_noise_leaves_the_global_rng_alone():
    y = _labels()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    symmetric_noise(y, 0.5, num_classes=10, generator=_g())
    instance_noise(y, torch.randn(len(y), 3, generator=_g(1)), 0.3, num_classes=10, generator=_g())
    assert torch.equal(torch.get_rng_state(), before)


def test_cifar10_asymmetric_map_and_matrix():
    assert CIFAR10_ASYMMETRIC_MAP == (0, 1, 0, 5, 7, 3, 6, 7, 8, 1)
    y = torch.arange(10).repeat(500)
    noise = asymmetric_noise(y, 0.4, mapping="cifar10", generator=_g())
    moves = collections.Counter(zip(y[noise.corrupted].tolist(), noise.labels[noise.corrupted].tolist()))
    assert moves == {(9, 1): 200, (2, 0): 200, (4, 7): 200, (3, 5): 200, (5, 3): 200}
    assert noise.rate == 0.2  # 5 of 10 classes, 40% of each
    t = torch.eye(10, dtype=torch.float64)
    for src, dst in ((9, 1), (2, 0), (4, 7), (3, 5), (5, 3)):
        t[src, src], t[src, dst] = 0.6, 0.4
    torch.testing.assert_close(noise.transition, t, rtol=0, atol=0)
    torch.testing.assert_close(noise.empirical_transition(), t, rtol=0, atol=1e-15)  # exact counts


def test_cifar100_next_class_within_superclass():
    assert sorted(collections.Counter(CIFAR100_COARSE).values()) == [5] * 20
    m = cifar100_superclass_map("coarse")
    for f in range(100):
        assert m[f] != f and CIFAR100_COARSE[m[f]] == CIFAR100_COARSE[f]
    # fruit_and_vegetables = apple 0, mushroom 51, orange 53, pear 57, sweet_pepper 83
    assert (m[0], m[51], m[53], m[57]) == (51, 53, 57, 83)
    assert m[83] == 0  # the last one of the superclass wraps to the first
    assert sorted(m) == list(range(100))  # a permutation: one cycle of 5 per superclass
    c = cifar100_superclass_map("consecutive")
    assert c[:6] == (1, 2, 3, 4, 0, 6) and c[99] == 95
    y = torch.arange(100).repeat(10)
    noise = make_label_noise(y, "asym20", num_classes=100, generator=_g())
    assert noise.rate == 0.2 and int(noise.corrupted.sum()) == 200
    assert all(noise.labels[i] == m[int(y[i])] for i in noise.corrupted.nonzero().squeeze(1).tolist())
    assert noise.transition[0, 51] == 0.2 and noise.transition[0, 0] == 0.8


def test_cyclic_map_and_generic_mapping():
    assert cyclic_map(4) == (1, 2, 3, 0) and cyclic_map(4, shift=-1) == (3, 0, 1, 2)
    y = torch.arange(4).repeat(25)
    noise = asymmetric_noise(y, 1.0, mapping=(1, 2, 3, 0), generator=_g())
    assert torch.equal(noise.labels, (y + 1) % 4) and noise.rate == 1.0 and noise.kind == "cyclic"
    torch.testing.assert_close(noise.transition, torch.roll(torch.eye(4, dtype=torch.float64), 1, 1))
    keep = asymmetric_noise(y, 0.4, mapping=(0, 1, 3, 2), generator=_g())  # classes 0, 1 fixed
    assert not keep.corrupted[y < 2].any() and keep.rate == 0.2  # 10 of 25 in classes 2 and 3


def test_instance_dependent_noise_rows_and_rate():
    k, n = 10, 5000
    y = torch.arange(k).repeat(n // k)
    x = torch.randn(n, 20, generator=_g(5))
    noise = instance_noise(y, x, 0.4, num_classes=k, generator=_g(6))
    p = noise.instance_transition
    torch.testing.assert_close(p.sum(1), torch.ones(n, dtype=torch.float64))
    assert (p >= 0).all()
    # flip rates are a normal(0.4, 0.1) truncated to [0, 1]: mean 0.4, realised ~ mean(q)
    q = 1 - p[torch.arange(n), y]
    assert abs(float(q.mean()) - 0.4) < 0.01 and float(q.std()) == pytest.approx(0.1, abs=0.01)
    assert abs(noise.rate - float(q.mean())) < 4 * (0.25 / n) ** 0.5
    torch.testing.assert_close(noise.transition.sum(1), torch.ones(k, dtype=torch.float64))
    torch.testing.assert_close(noise.transition[3], p[y == 3].mean(0))


def test_parse_and_make_by_name():
    assert parse_noise("sym40") == ("sym", 0.4) and parse_noise("asym0") == ("asym", 0.0)
    assert parse_noise("symother80") == ("symother", 0.8) and parse_noise("idn100") == ("idn", 1.0)
    y = _labels()
    assert make_label_noise(y, "sym0", num_classes=10, generator=_g()).rate == 0.0
    a = make_label_noise(y, "symother40", num_classes=10, generator=_g(4))
    b = symmetric_noise(y, 0.4, num_classes=10, generator=_g(4), include_true=False)
    assert torch.equal(a.labels, b.labels)


def test_bad_arguments_name_the_fix():
    y = _labels()
    with pytest.raises(ValueError, match=r"rate == 1.5, must be a number in \[0, 1\]"):
        symmetric_noise(y, 1.5, num_classes=10, generator=_g())
    with pytest.raises(ValueError, match=r"labels span 0..9, must be in 0..4"):
        symmetric_noise(y, 0.2, num_classes=5, generator=_g())
    with pytest.raises(TypeError, match="must be a torch.Generator"):
        symmetric_noise(y, 0.2, num_classes=10, generator=0)
    with pytest.raises(ValueError, match=r"noise == 'sym400', must be a kind among"):
        parse_noise("sym400")
    with pytest.raises(ValueError, match=r"mapping == 'cifar1000', must be one of"):
        class_map("cifar1000")
    with pytest.raises(ValueError, match=r"shift == 4, must not be a multiple of num_classes == 4"):
        cyclic_map(4, 4)
    with pytest.raises(ValueError, match=r"noise == 'idn20' is instance-dependent: pass the inputs x"):
        make_label_noise(y, "idn20", num_classes=10, generator=_g())
    with pytest.raises(ValueError, match=r"mapping has 10 entries, must have num_classes == 12"):
        asymmetric_noise(y, 0.2, mapping="cifar10", num_classes=12, generator=_g())
