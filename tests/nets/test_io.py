import pytest
import torch

import deepscope
from deepscope.nets import build_net
from deepscope.nets.io import load_model, save_model


def test_save_load_roundtrip_and_load_by_directory(tmp_path):
    net = build_net("small-cnn", input_shape=(64,), num_classes=10, channels=(4, 8), hidden=16)
    kw = dict(input_shape=(64,), num_classes=10, channels=(4, 8), hidden=16)
    save_model(tmp_path / "a" / "seed0" / "model.pt", net, "small-cnn", attrs={"input_bounds": (0.0, 1.0)}, **kw)
    save_model(tmp_path / "a" / "seed1" / "model.pt", net, "small-cnn", **kw)
    back = load_model(tmp_path / "a" / "seed0" / "model.pt")
    x = torch.rand(3, 64)
    net.eval()
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
    assert back.input_bounds == (0.0, 1.0) and not back.training
    one = deepscope.load(tmp_path / "a" / "seed0")
    assert isinstance(one, torch.nn.Module)
    both = deepscope.load(tmp_path / "a")
    assert sorted(both) == ["seed0/model", "seed1/model"]
    # nothing pickled: plain torch.load with weights_only works
    torch.load(tmp_path / "a" / "seed1" / "model.pt", weights_only=True)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model.pt below"):
        deepscope.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        deepscope.load(tmp_path / "nope")
    with pytest.raises(ValueError, match="net == 'resnet99'"):
        save_model(tmp_path / "m.pt", torch.nn.Linear(1, 1), "resnet99")
