"""train_noisy's dispatch: what each method receives from the shared arguments."""

import pytest
import torch

from deepscope.robust import baselines
from deepscope.robust.methods import train_noisy


@pytest.mark.parametrize("ssl, mixup", [("reduced", False), ("paper", True)])
def test_dividemix_follows_the_semi_supervised_form_for_mixup(monkeypatch, ssl, mixup):
    seen = {}
    monkeypatch.setattr(baselines, "train_dividemix", lambda x, y, **kw: seen.update(kw))
    x, y = torch.randn(20, 1, 8), torch.randint(0, 3, (20,))
    train_noisy("dividemix", x, y, num_classes=3, ssl=ssl, warmup_epochs=2, asymmetric=True)
    assert seen["mixup"] is mixup and seen["warmup_epochs"] == 2
    assert seen["confidence_penalty"] == 0.1  # asymmetric noise: the papers' warm-up penalty
