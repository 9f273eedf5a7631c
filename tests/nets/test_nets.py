"""Shapes, parameter counts against reference implementations, the features/classifier split,
norm options and error messages of deepscope.nets."""

import pytest
import torch
from torch import nn

from deepscope.nets import (
    CNN1D,
    MLP,
    NETS,
    SmallCNN,
    build_net,
    preact_resnet18,
    resnet18,
    split_mlp,
    vgg11,
    vgg16,
    vgg19,
)
from deepscope.nets.cnn import Reshape, make_norm
from deepscope.train.rng import fork_seeded, make_generator

IMAGE_NETS = ["small-cnn", "resnet18", "preact-resnet18", "vgg11", "vgg13", "vgg16", "vgg19"]
CONV_NETS = ["cnn1d", *IMAGE_NETS]
DEEP_NETS = ["resnet18", "preact-resnet18", "vgg11", "vgg13", "vgg16", "vgg19"]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def meta_count(build, **kwargs) -> int:
    """Count parameters without initialising them (fast for 20M-parameter networks)."""
    with torch.device("meta"):
        return n_params(build(**kwargs))


def check_split(net: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    net.eval()  # BatchNorm with running statistics: two calls give the same output
    with torch.no_grad():
        h = net.features(x)
        y = net(x)
    assert h.shape == (x.shape[0], net.feature_dim)
    assert y.shape == (x.shape[0], num_classes)
    assert isinstance(net.classifier, nn.Linear)
    assert net.classifier.in_features == net.feature_dim
    torch.testing.assert_close(y, net.classifier(h))


# --- reference parameter counts -------------------------------------------------------------

def test_cnn1d_matches_mnist1d_convbase():
    # greydanus/mnist1d ConvBase: Conv1d(1,25,5,s2,p1), Conv1d(25,25,3,s2,p1) x2, Linear(125, 10):
    # (25*5 + 25) + 2 * (25*25*3 + 25) + (125*10 + 10) = 150 + 3800 + 1260
    net = CNN1D(10)
    assert n_params(net) == 150 + 3800 + 1260 == 5210
    assert net.feature_dim == 125
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 25, (5,), (2,), (1,)), (25, 25, (3,), (2,), (1,)), (25, 25, (3,), (2,), (1,))]
    # BatchNorm: convs lose their 75 biases, 3 x 50 BN weights/biases come in
    assert n_params(CNN1D(10, norm="batch")) == 5210 - 75 + 150


@pytest.mark.parametrize("shape, count", [
    ((1, 8, 8), (9 * 32 + 32) + (32 * 64 * 9 + 64) + (64 * 2 * 2 * 128 + 128) + (128 * 10 + 10)),
    ((1, 28, 28), (9 * 32 + 32) + (32 * 64 * 9 + 64) + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)),
])
def test_small_cnn_count_from_the_architecture(shape, count):
    assert n_params(SmallCNN(10, input_shape=shape)) == count
    assert count in (53_002, 421_642)


@pytest.mark.parametrize("build, kwargs, count", [
    (resnet18, {}, 11_173_962),                                    # kuangliu/pytorch-cifar ResNet18
    (preact_resnet18, {"stem_norm": False}, 11_171_146),           # kuangliu PreActResNet18
    (preact_resnet18, {}, 11_171_146 + 128),                       # DivideMix/CrossSplit: stem BN(64)
    (vgg11, {"conv_bias": True}, 9_231_114),                       # kuangliu VGG('VGG11')
    (vgg16, {"conv_bias": True}, 14_728_266),
    (vgg19, {"conv_bias": True}, 20_040_522),
    (vgg11, {}, 9_231_114 - (64 + 128 + 2 * 256 + 4 * 512)),       # without the biases BN cancels
    (vgg16, {}, 14_728_266 - (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512)),
    (vgg19, {}, 20_040_522 - (2 * 64 + 2 * 128 + 4 * 256 + 8 * 512)),
])
def test_reference_counts_batchnorm_cifar10(build, kwargs, count):
    assert meta_count(build, num_classes=10, norm="batch", **kwargs) == count


@pytest.mark.parametrize("name", DEEP_NETS + ["cnn1d", "small-cnn"])
def test_norm_variants_count(name):
    # 'none' = 'batch' minus BatchNorm's 2 parameters per channel plus one bias per conv channel;
    # 'group' keeps the affine parameters and adds the biases.
    shape = (40,) if name == "cnn1d" else (3, 32, 32)
    with torch.device("meta"):
        bn = build_net(name, input_shape=shape, num_classes=10, norm="batch")
    bn_params = sum(n_params(m) for m in bn.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    conv_channels = sum(m.out_channels for m in bn.modules() if isinstance(m, nn.modules.conv._ConvNd))
    assert all(m.bias is None for m in bn.modules() if isinstance(m, nn.modules.conv._ConvNd))
    count = meta_count(NETS[name], input_shape=shape, num_classes=10, norm="none")
    assert count == n_params(bn) - bn_params + conv_channels
    assert meta_count(NETS[name], input_shape=shape, num_classes=10, norm="group") == n_params(bn) + conv_channels


def test_none_counts_stated_in_docstrings():
    assert meta_count(resnet18, norm="none") == 11_169_162
    assert meta_count(preact_resnet18, norm="none") == 11_169_162
    assert meta_count(vgg11, norm="none") == 9_225_610
    assert meta_count(vgg16, norm="none") == 14_719_818
    assert meta_count(vgg19, norm="none") == 20_029_514


# --- shapes, the features/classifier split, norm layers -------------------------------------

@pytest.mark.parametrize("name", DEEP_NETS)
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (1, 8, 8), (2, 9, 12)])
def test_deep_nets_on_small_inputs(name, shape):
    net = build_net(name, input_shape=shape, num_classes=7, norm="batch", width=8)
    assert net.feature_dim == 64
    check_split(net, torch.randn(2, *shape), 7)


@pytest.mark.parametrize("name", DEEP_NETS)
def test_full_width_forward_8x8(name):
    net = build_net(name, input_shape=(3, 8, 8), num_classes=10)
    assert net.feature_dim == 512
    check_split(net, torch.randn(2, 3, 8, 8), 10)


def test_vgg_pools_kept_while_maps_are_at_least_2():
    def pools(shape):
        net = vgg11(input_shape=shape, width=4)
        return sum(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert (pools((3, 32, 32)), pools((1, 28, 28)), pools((1, 8, 8)), pools((1, 1, 1))) == (5, 4, 3, 0)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("name", CONV_NETS)
def test_norm_layers(name, norm):
    shape = (40,) if name == "cnn1d" else (1, 8, 8)
    kw = {"width": 4} if name in DEEP_NETS else {}
    net = build_net(name, input_shape=shape, num_classes=3, norm=norm, **kw)
    kinds = {type(m) for m in net.modules()}
    has_bn = any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert has_bn == (norm == "batch")
    assert (nn.GroupNorm in kinds) == (norm == "group")
    assert not any(issubclass(k, nn.modules.dropout._DropoutNd) for k in kinds)
    convs = [m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert all((c.bias is None) == (norm == "batch") for c in convs)
    check_split(net, torch.randn(2, *shape), 3)


def test_group_norm_group_count():
    assert make_norm("group", 512).num_groups == 32
    assert make_norm("group", 16).num_groups == 16
    assert make_norm("group", 25).num_groups == 1
    assert isinstance(make_norm("none", 8), nn.Identity)


@pytest.mark.parametrize("name, shape, x_shape", [
    ("cnn1d", (40,), (2, 40)),
    ("cnn1d", (40,), (2, 1, 40)),
    ("cnn1d", (2, 30), (2, 60)),
    ("small-cnn", (64,), (2, 64)),
    ("small-cnn", (64,), (2, 1, 8, 8)),
    ("small-cnn", (1, 8, 8), (2, 64)),
    ("small-cnn", (1, 28, 28), (2, 1, 28, 28)),
    ("small-cnn", (3, 32, 32), (2, 3, 32, 32)),
    ("resnet18", (784,), (2, 784)),
    ("vgg11", (1, 28, 28), (2, 784)),
    ("mlp", (1, 28, 28), (2, 1, 28, 28)),
    ("mlp", (40,), (2, 40)),
])
def test_input_layouts(name, shape, x_shape):
    kw = {"width": 4} if name in DEEP_NETS else {}
    net = build_net(name, input_shape=shape, num_classes=5, **kw)
    check_split(net, torch.randn(x_shape), 5)


def test_flat_and_shaped_inputs_agree():
    net = build_net("small-cnn", input_shape=(1, 8, 8), num_classes=10)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(net(x), net(x.reshape(3, 64)))


def test_small_cnn_is_sized_from_the_input():
    assert SmallCNN(input_shape=(64,)).features[-2].in_features == 64 * 2 * 2
    assert SmallCNN(input_shape=(1, 28, 28)).features[-2].in_features == 64 * 7 * 7


# --- MLP -----------------------------------------------------------------------------------

def test_mlp_split_and_properties():
    net = MLP(40, [32, 16], 10)
    x = torch.randn(5, 40)
    assert isinstance(net, nn.Sequential) and len(net) == 6  # Flatten + 2 x (Linear, ReLU) + Linear
    assert list(net.state_dict()) == ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert net.feature_dim == 16 and net.classifier is net[-1]
    torch.testing.assert_close(net(x), net.classifier(net.features(x)))
    for layer, width in [(1, 32), (2, 16)]:
        encoder, head = split_mlp(net, layer)
        h = encoder(x)
        assert h.shape == (5, width) and (h >= 0).all()  # after the ReLU
        torch.testing.assert_close(head(h), net(x))
    encoder, _ = split_mlp(net, 1)
    assert encoder[1] is net[1]  # shared, not copied


def test_build_mlp():
    net = build_net("mlp", input_shape=(40,), num_classes=10, hidden=[100], activation="tanh")
    assert isinstance(net, MLP) and isinstance(net[2], nn.Tanh)
    assert n_params(net) == 40 * 100 + 100 + 100 * 10 + 10


# --- randomness ----------------------------------------------------------------------------

def test_construction_draws_only_from_the_forked_global_rng():
    state = torch.get_rng_state()
    nets = []
    for _ in range(2):
        with fork_seeded(make_generator(0, "model")):
            nets.append(build_net("resnet18", input_shape=(3, 8, 8), num_classes=10, norm="batch", width=4))
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    with fork_seeded(make_generator(1, "model")):
        other = build_net("resnet18", input_shape=(3, 8, 8), num_classes=10, norm="batch", width=4)
    assert not torch.equal(other.classifier.weight, nets[0].classifier.weight)


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: build_net("resnet50", input_shape=(3, 32, 32), num_classes=10),
     r"name == 'resnet50', must be one of \['cnn1d', 'mlp', 'preact-resnet18'"),
    (lambda: build_net("vgg11", input_shape=(3, 32, 32), num_classes=10, norm="batchnorm"),
     r"norm == 'batchnorm', must be one of \['batch', 'group', 'none'\]"),
    (lambda: build_net("mlp", input_shape=(40,), num_classes=10, norm="batch"),
     r"norm == 'batch', the 'mlp' has no normalisation layers; use norm='none'"),
    (lambda: build_net("resnet18", input_shape=(3, 32, 32), num_classes=0),
     r"num_classes == 0, must be an integer >= 1"),
    (lambda: build_net("resnet18", input_shape=(60,), num_classes=10),
     r"input_shape == \(60,\), a flat shape must be a square"),
    (lambda: build_net("vgg16", input_shape=(3, 0, 32), num_classes=10),
     r"input_shape == \(3, 0, 32\), must be a non-empty tuple of ints >= 1"),
    (lambda: build_net("cnn1d", input_shape=(3, 32, 32), num_classes=10),
     r"must be \(L,\) or \(C, L\) for a 1-D CNN"),
    (lambda: build_net("small-cnn", input_shape=(1, 3, 3), num_classes=10),
     r"input_shape == \(1, 3, 3\), H and W must be >= 4"),
    (lambda: build_net("resnet18", input_shape=(3, 32, 32), num_classes=10, width=0),
     r"width == 0, must be an integer >= 1"),
    (lambda: build_net("preact-resnet18", input_shape=(3, 32, 32), num_classes=10, stem_norm="yes"),
     r"stem_norm == 'yes', must be True or False"),
    (lambda: build_net("mlp", input_shape=(40,), num_classes=10, hiden=(3,)),
     r"^build_net\('mlp'\) has no option 'hiden' \(net_kwargs\); its options: hidden, activation$"),
    (lambda: build_net("vgg11", input_shape=(3, 32, 32), num_classes=10, widht=8),
     r"build_net\('vgg11'\) has no option 'widht' \(net_kwargs\); its options: width, conv_bias"),
    (lambda: split_mlp(MLP(4, [8, 8], 2), 3), r"layer == 3, must be an int in 1..2"),
    (lambda: split_mlp(MLP(4, [], 2), 1), r"layer == 1, but this MLP has no hidden layer to split at"),
    (lambda: Reshape((1, 8, 8))(torch.randn(2, 63)), r"input.shape == \(2, 63\), must be \(N, 1, 8, 8\) or flat \(N, 64\)"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_split_mlp_type_error():
    with pytest.raises(TypeError, match="mlp is a Sequential, must be a deepscope.nets.MLP"):
        split_mlp(nn.Sequential(nn.Linear(2, 2)), 1)


def test_norm_layers_name_the_normalisation_choices():
    from deepscope.nets import NORM_LAYERS

    assert NORM_LAYERS == ("batch", "group", "none")


def test_a_bad_net_kwarg_through_the_loop_kit_names_the_options():
    from deepscope.train.loop import make_models

    with pytest.raises(ValueError, match=r"has no option 'hiden' \(net_kwargs\); its options: hidden, activation"):
        make_models(["net"], "mlp", input_shape=(4,), num_classes=2,
                    generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                    net_kwargs={"hiden": (3,)})
