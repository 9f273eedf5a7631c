"""Empirical tangent kernel: every implementation against every other, and closed forms."""

import itertools

import pytest
import torch
from torch import nn

from deepscope.dynamics.ntk import NTKImplementation, empirical_ntk
from deepscope.nets import MLP

D = torch.float64
IMPLS = [e.value for e in NTKImplementation if e is not NTKImplementation.AUTO]
TOL = 1e-10
# torch's forward-mode AD (the vjp_jvp implementation) scripts its decompositions on first use
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


class Mixed(nn.Module):
    """Parameters the factorisation does not cover: LayerNorm, a bare scalar, a frozen weight,
    and a Linear called twice (shared weights)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(5, 6)
        self.inp.weight.requires_grad_(False)
        self.norm = nn.LayerNorm(6)
        self.shared = nn.Linear(6, 6)
        self.scale = nn.Parameter(torch.tensor(1.3))
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.tanh(self.norm(self.inp(x)))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        return self.out(h * self.scale)


def _nets():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        mlp = MLP(5, [7, 6], 3, activation="tanh").to(D)
        cnn1 = nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.Tanh(),
            nn.Conv1d(4, 3, 2, stride=2, padding=1, padding_mode="circular"), nn.ReLU(),
            nn.Flatten(), nn.Linear(12, 3),
        ).to(D)
        cnn2 = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding="same"), nn.Tanh(),
            nn.Conv2d(3, 8, 2, dilation=2), nn.Tanh(),  # 3x3 output, 8 channels: Gram form
            nn.Flatten(), nn.Linear(72, 3),
        ).to(D)
        mixed = Mixed().to(D)
        g = torch.Generator().manual_seed(2)
        return {
            "mlp": (mlp, torch.randn(6, 5, generator=g, dtype=D), torch.randn(4, 5, generator=g, dtype=D)),
            "cnn1d": (cnn1, torch.randn(6, 2, 7, generator=g, dtype=D), torch.randn(4, 2, 7, generator=g, dtype=D)),
            "cnn2d": (cnn2, torch.randn(6, 1, 5, 5, generator=g, dtype=D), torch.randn(4, 1, 5, 5, generator=g, dtype=D)),
            "mixed": (mixed, torch.randn(6, 5, generator=g, dtype=D), torch.randn(4, 5, generator=g, dtype=D)),
        }


NETS = _nets()


def naive_ntk(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """One backward per example and output: the definition, sharing no code with the library."""
    ps = [p for p in net.parameters() if p.requires_grad]

    def jac(x):
        rows = []
        for n in range(x.shape[0]):
            out = net(x[n : n + 1]).reshape(-1)
            for o in range(out.numel()):
                g = torch.autograd.grad(out[o], ps, retain_graph=True)
                rows.append(torch.cat([t.reshape(-1) for t in g]))
        return torch.stack(rows).view(x.shape[0], out.numel(), -1)

    return torch.einsum("nod,mpd->nmop", jac(x1), jac(x2))


@pytest.mark.parametrize("name", list(NETS))
def test_every_implementation_matches_the_naive_loop(name):
    net, x1, x2 = NETS[name]
    ref = naive_ntk(net, x1, x2)
    for impl in IMPLS:
        assert rel(empirical_ntk(net, x1, x2, implementation=impl), ref) < TOL, impl
    assert rel(empirical_ntk(net, x1), naive_ntk(net, x1, x1)) < TOL


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
@pytest.mark.parametrize("cross", [False, True], ids=["x2=None", "x2!=x1"])
def test_implementations_agree_pairwise(name, mode, cross):
    net, x1, x2 = NETS[name]
    x2 = x2 if cross else None
    runs = {}
    for impl in IMPLS:
        runs[impl] = empirical_ntk(net, x1, x2, mode=mode, implementation=impl)
        runs[impl + "/chunk2"] = empirical_ntk(net, x1, x2, mode=mode, implementation=impl, chunk_size=2)
        layers = empirical_ntk(net, x1, x2, mode=mode, implementation=impl, per_layer=True)
        runs[impl + "/layers"] = sum(layers.values())
        runs[impl + "/centered"] = empirical_ntk(net, x1, x2, mode=mode, implementation=impl, centered=True)
        for k, v in layers.items():
            runs[f"{impl}/layer[{k}]"] = v
    runs["auto"] = empirical_ntk(net, x1, x2, mode=mode)
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    o = 3
    shape = {"full": (6, n2, o, o), "trace": (6, n2), "diagonal": (6, n2, o)}[mode]
    for key, v in runs.items():
        assert v.shape == shape and v.dtype == D, key
    groups = {}
    for key, v in runs.items():
        kind = key.split("/", 1)[1] if "/" in key else ""
        groups.setdefault(kind, []).append((key, v))
    assert len(groups[""]) == 4  # three implementations and auto
    for kind, items in groups.items():
        for (ka, a), (kb, b) in itertools.combinations(items, 2):
            assert rel(a, b) < TOL, (kind, ka, kb)
    # chunked and per-layer sums are the plain kernel
    for impl in IMPLS:
        assert rel(runs[impl + "/chunk2"], runs[impl]) < TOL
        assert rel(runs[impl + "/layers"], runs[impl]) < TOL


@pytest.mark.parametrize("name", ["mlp", "cnn2d", "mixed"])
def test_trace_diagonal_centering_and_symmetry_follow_from_the_full_kernel(name):
    net, x1, x2 = NETS[name]
    full = empirical_ntk(net, x1, x2)
    assert rel(empirical_ntk(net, x1, x2, mode="trace"), torch.einsum("nmoo->nm", full)) < TOL
    assert rel(empirical_ntk(net, x1, x2, mode="diagonal"), torch.einsum("nmoo->nmo", full)) < TOL
    h1 = torch.eye(6, dtype=D) - 1 / 6
    h2 = torch.eye(4, dtype=D) - 1 / 4
    expect = torch.einsum("an,nmop,mb->abop", h1, full, h2)
    assert rel(empirical_ntk(net, x1, x2, centered=True), expect) < TOL
    k = empirical_ntk(net, x1)
    assert rel(k, k.permute(1, 0, 3, 2)) < 1e-14  # K[n, m, o, p] = K[m, n, p, o]
    assert torch.linalg.eigvalsh(k.permute(0, 2, 1, 3).reshape(18, 18)).min() > -1e-10


def test_per_layer_keys_are_the_parameter_owning_modules():
    net, x1, _ = NETS["mixed"]
    for impl in IMPLS:
        layers = empirical_ntk(net, x1, implementation=impl, per_layer=True, mode="trace")
        assert list(layers) == ["", "inp", "norm", "shared", "out"], impl  # "" owns `scale`
    mlp, x, _ = NETS["mlp"]
    assert list(empirical_ntk(mlp, x, per_layer=True)) == ["1", "3", "5"]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_model_kernel_is_the_input_gram_times_identity(bias, impl):
    torch.manual_seed(3)
    lin = nn.Linear(4, 3, bias=bias).to(D)
    x1, x2 = torch.randn(5, 4, dtype=D), torch.randn(2, 4, dtype=D)
    gram = x1 @ x2.T + (1.0 if bias else 0.0)
    eye = torch.eye(3, dtype=D)
    k = empirical_ntk(lin, x1, x2, implementation=impl)
    assert rel(k, gram[:, :, None, None] * eye) < 1e-13
    assert rel(empirical_ntk(lin, x1, x2, mode="trace", implementation=impl), 3 * gram) < 1e-13


def test_scalar_output_float32_and_batchnorm_in_eval_mode():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1), nn.Flatten(0))
    net.eval()
    x = torch.randn(4, 3)
    ks = [empirical_ntk(net, x, implementation=impl) for impl in IMPLS]
    assert ks[0].shape == (4, 4, 1, 1) and ks[0].dtype == torch.float32
    for a, b in itertools.combinations(ks, 2):
        assert rel(a, b) < 1e-5
    assert "1" in empirical_ntk(net, x, per_layer=True)  # BatchNorm's affine parameters


def test_refusals_name_the_problem_and_the_fix():
    x = torch.randn(4, 3)
    bn = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"model\.1 is a BatchNorm1d in train mode.*call model\.eval\(\) or build the network with norm='none'") as e:
        empirical_ntk(bn, x)
    assert "\n" not in str(e.value)
    drop = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.5), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"model\.1 is a Dropout\(p=0\.5\) in train mode.*call model\.eval\(\)") as e:
        empirical_ntk(drop, x)
    assert "\n" not in str(e.value)
    empirical_ntk(drop.eval(), x)  # fine in eval mode
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x2 has feature shape \(4,\) but x1 has \(3,\); both must be") as e:
        empirical_ntk(lin, x, torch.randn(2, 4))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"mode == 'ful'; choose one of \['full', 'trace', 'diagonal'\]"):
        empirical_ntk(lin, x, mode="ful")
    with pytest.raises(ValueError, match=r"implementation == 'fast'; choose one of"):
        empirical_ntk(lin, x, implementation="fast")
    with pytest.raises(ValueError, match=r"chunk_size == 0, must be an integer >= 1"):
        empirical_ntk(lin, x, chunk_size=0)
    with pytest.raises(ValueError, match=r"x1 has dtype torch\.float64 but the model's parameters are torch\.float32"):
        empirical_ntk(lin, x.double())
    with pytest.raises(ValueError, match=r"model has no parameters with requires_grad=True"):
        empirical_ntk(nn.Linear(3, 2).requires_grad_(False), x)


def test_integer_inputs_and_grad_modes():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 4)
            self.out = nn.Linear(4, 3)

        def forward(self, t):
            return self.out(self.emb(t).mean(1))

    torch.manual_seed(5)
    bag = Bag().to(D)
    tokens = torch.randint(0, 7, (5, 6))
    ks = [empirical_ntk(bag, tokens, implementation=impl) for impl in IMPLS]
    for a, b in itertools.combinations(ks, 2):
        assert rel(a, b) < TOL
    net, x1, x2 = NETS["cnn1d"]
    ref = empirical_ntk(net, x1, x2)
    for impl in IMPLS:
        with torch.no_grad():
            assert rel(empirical_ntk(net, x1, x2, implementation=impl), ref) < TOL
        with torch.inference_mode():
            assert rel(empirical_ntk(net, x1, x2, implementation=impl), ref) < TOL


def test_cost_model_charges_the_gram_forms_reduction_over_positions():
    from deepscope.dynamics.ntk import _form_costs

    # SmallCNN(32, 64)'s second conv on 8x8 digits (4x4 positions, 32*9 + 1 inputs, 64 channels):
    # by FLOPs alone the Gram form looked cheaper; measured 4-5x slower than the Jacobian
    # (benchmarks/ntk_gram_cost.py), because its (.., S, .., S) reduction runs at memory speed
    gram, jac = _form_costs("full", 10, 16, 289, 64)
    assert gram > jac
    assert 16 * 16 * 289 + 100 * 16 * 16 * 65 < jac  # the plain FLOP count's opposite verdict
    # few positions and wide layers keep the Gram form (late layers of large CNNs), in every mode
    for mode in ("full", "trace", "diagonal"):
        gram, jac = _form_costs(mode, 10, 4, 1153, 128)
        assert gram < jac, mode
    # a linear layer (one position) is charged no reduction
    assert _form_costs("full", 10, 1, 257, 128)[0] == 257 + 100 * 129
