"""Every robust loop trains a network of the user's own (a module class not from deepscope.nets)."""

import pytest
import torch
from torch import nn

from deepscope.robust import (
    A3T,
    ADVERSARIAL_METHODS,
    make_objective,
    train_ce,
    train_ce_early_stopping,
    train_confident_learning,
    train_coteaching,
    train_crosssplit,
    train_dividemix,
    train_robust,
)

D, K = 12, 3


class Tiny(nn.Module):
    """A user's classifier: a hidden layer (``features``) and a linear head (``classifier``)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(D, 16), nn.ReLU())
        self.classifier = nn.Linear(16, K)

    def forward(self, x):
        return self.classifier(self.features(x))


class Opaque(nn.Module):
    """No .features: fine for every loop but A3T's discriminator and CrossSplit's contrastive head."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(D, 8), nn.Linear(8, K)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, D, generator=g)
    return x, x[:, :K].argmax(1)


def _width(disc):
    return next(m for m in disc.modules() if isinstance(m, nn.Linear)).in_features


OPTS = {"epochs": 2, "batch_size": 16, "lr": 0.05}
NOISY = {
    "ce": lambda x, y, **kw: train_ce(x, y, **kw),
    "ce-es": lambda x, y, **kw: train_ce_early_stopping(x, y, **kw),
    "coteaching": lambda x, y, **kw: train_coteaching(x, y, forget_rate=0.2, **kw),
    "dividemix": lambda x, y, **kw: train_dividemix(x, y, warmup_epochs=1, **kw),
    "cleanlab": lambda x, y, **kw: train_confident_learning(x, y, folds=2, **kw),
    "crosssplit": lambda x, y, **kw: train_crosssplit(x, y, warmup_epochs=1, **kw),
}


@pytest.mark.parametrize("method", list(NOISY))
def test_noisy_label_loops_train_a_user_module_and_a_factory(method):
    x, y = _data()
    net = Tiny()
    before = net.classifier.weight.detach().clone()
    res = NOISY[method](x, y, num_classes=K, net=net, x_test=x, y_test=y, options=OPTS,
                        generator=torch.Generator().manual_seed(0))
    first = next(iter(res.models.values()))
    assert first is net and not torch.equal(before, net.classifier.weight)   # trained in place
    assert all(isinstance(m, Tiny) for m in res.models.values())
    assert res.predict(x).shape == (len(x), K) and len(res.history) == 2
    if len(res.models) == 2:  # the peer is an independent initialisation, not a copy
        assert not torch.equal(res.models["net_a"].classifier.weight,
                               res.models["net_b"].classifier.weight)
    again = NOISY[method](x, y, num_classes=K, net=Opaque, x_test=x, y_test=y,
                          options=OPTS, generator=torch.Generator().manual_seed(0),
                          **({"contrastive_weight": 0.0} if method == "crosssplit" else {}))
    assert all(isinstance(m, Opaque) for m in again.models.values())


def test_crosssplit_contrastive_head_needs_features_and_says_so():
    x, y = _data()
    with pytest.raises(ValueError, match=r"has no .features submodule .* or pass contrastive_weight=0"):
        train_crosssplit(x, y, num_classes=K, net=Opaque(), warmup_epochs=1, options=OPTS)


@pytest.mark.parametrize("method", ADVERSARIAL_METHODS)
def test_every_adversarial_objective_trains_a_user_module(method):
    x, y = _data()
    net = Tiny()
    before = net.classifier.weight.detach().clone()
    obj = make_objective(method, eps=0.1, bounds=(0.0, 1.0), **(
        {"steps": 2} if method in ("pgd-at", "trades") else
        {"disc_hidden": (8,)} if method == "a3t" else {}))
    res = train_robust(net, x, y, obj, options={"epochs": 2, "batch_size": 16},
                       generator=torch.Generator().manual_seed(0))
    assert res.model is net and not torch.equal(before, net.classifier.weight)
    if method == "a3t":
        assert obj.encoder_ is net.features and _width(obj.disc_) == 16


def test_a3t_splits_a_sequential_before_its_last_layer_and_explains_other_modules():
    x, y = _data()
    seq = nn.Sequential(nn.Linear(D, 10), nn.Tanh(), nn.Linear(10, K))
    a3t = A3T(eps=0.1, disc_hidden=(8,))
    train_robust(seq, x, y, a3t, options={"epochs": 1, "batch_size": 16})
    assert _width(a3t.disc_) == 10
    with pytest.raises(ValueError, match=r"give your module .features .* and .classifier"):
        train_robust(Opaque(), x, y, A3T(eps=0.1), options={"epochs": 1})
