"""K networks of one architecture trained as one model: seeds, restarts and ensembles at once.

>>> import torch
>>> from deepscope.nets import MLP
>>> from deepscope.nets.batched import BatchedMLP, VmapStack, stack_models
>>> from deepscope.train.rng import fork_seeded, make_generator
>>> nets = []
>>> for seed in range(4):                      # four seeds, each built as a single run would be
...     with fork_seeded(make_generator(seed, "model")):
...         nets.append(MLP(2, [60, 60, 60], 1))
>>> stack = stack_models(nets)                 # BatchedMLP: one baddbmm per layer for all four
>>> x = torch.randn(50, 2)
>>> stack(x).shape                             # shared input (N, D) -> (K, N, out)
torch.Size([4, 50, 1])
>>> stack(torch.randn(4, 50, 2)).shape         # one input batch per network (K, N, D)
torch.Size([4, 50, 1])
>>> torch.allclose(stack(x)[2], nets[2](x), atol=1e-6)
True
>>> loss = stack(x).pow(2).mean(dim=(1, 2)).sum()  # sum of per-network losses: independent gradients
>>> singles = stack.unstack()                  # back to K ordinary MLPs (copies)
>>> cnns = VmapStack([torch.nn.Conv1d(1, 4, 3) for _ in range(3)])   # any architecture, via vmap
>>> cnns(torch.randn(3, 8, 1, 20)).shape
torch.Size([3, 8, 4, 18])

Why it equals K separate runs: the networks share no parameter, so the gradient of the summed
per-network losses with respect to network k's parameters is the gradient of its own loss.
Every optimiser that acts elementwise (SGD with or without momentum, Adam, weight decay) then
updates each network exactly as a separate run would, up to the rounding of a batched matrix
product (tested to float tolerance). Gradient clipping by the global norm would couple them.

Implementations (``STACK_IMPLEMENTATIONS``; all give the same outputs to float rounding):

- ``"bmm"`` -- :class:`BatchedMLP`: each layer's weights are one (K, in, out) parameter and the
  layer is one ``torch.baddbmm``. MLPs only. The default for MLPs because it was the faster of
  the two on the 2-D toy (2-60-60-60-1, 50 points, one CPU thread, a shared machine at load
  average ~5 on 2 cores, ``benchmarks/results/batched_speed.json``): an autograd training
  step took 33 ms against 39 ms for ``"vmap"`` at K = 100, and 4.1 ms against 8.5 ms at K = 4
  (``deepscope.dynamics.regimes.train_full_batch``'s hand-written step: 29.5 and 2.2 ms). At
  K = 100 both are bound by the same batched matrix products; vmap's extra cost is its
  dispatch layer and a ``functional_call`` per call, which weigh most when the matrices are
  small.
- ``"vmap"`` -- :class:`VmapStack`: ``torch.func.stack_module_state`` and ``torch.func.vmap``
  over ``functional_call``. Any architecture without batch statistics (no BatchNorm in train
  mode, no dropout), e.g. several CNN1D seeds.
- ``"auto"`` -- ``"bmm"`` when every model is a :class:`deepscope.nets.MLP`, else ``"vmap"``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from deepscope.nets import ACTIVATIONS, MLP, make_activation

__all__ = [
    "BatchedLinear", "BatchedMLP", "VmapStack", "stack_models", "STACK_IMPLEMENTATIONS",
]


class BatchedLinear(nn.Module):
    """K independent ``nn.Linear(in_features, out_features)`` layers applied with one baddbmm.

    ``weight`` is (K, in, out), network k's ``nn.Linear.weight`` transposed, so the forward is
    ``bias[k] + x[k] @ weight[k]`` without a transposed view; ``bias`` is (K, out). New
    parameters follow ``nn.Linear``'s default initialisation, drawn from torch's global RNG:
    build inside ``deepscope.train.rng.fork_seeded(generator)``.
    """

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        for name, v in (("k", k), ("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} == {v!r}, must be an integer >= 1")
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(k, out_features))
        # nn.Linear's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N, in) -> (K, N, out)."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def extra_repr(self) -> str:
        return f"k={self.k}, in_features={self.in_features}, out_features={self.out_features}"


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k == {k!r}, must be an integer >= 1 (the number of networks)")
    return k


class BatchedMLP(nn.Sequential):
    """K :class:`deepscope.nets.MLP` networks of one architecture as one module.

    Parameters
    ----------
    k : int
        Number of networks.
    dim_in, hidden, dim_out, activation
        As in :class:`deepscope.nets.MLP`.

    Notes
    -----
    Input ``(N, dim_in)`` is shared by all networks; ``(K, N, dim_in)`` gives each network its
    own batch. Output ``(K, N, dim_out)``. Build from existing networks with :meth:`stack` (so
    that network k starts exactly where a single run of seed k would) and get them back with
    :meth:`unstack`.
    """

    def __init__(self, k: int, dim_in: int, hidden: Sequence[int], dim_out: int, *,
                 activation: str = "relu"):
        _check_k(k)
        make_activation(activation)
        layers: list[nn.Module] = []
        d = dim_in
        for h in hidden:
            layers += [BatchedLinear(k, d, h), make_activation(activation)]
            d = h
        layers.append(BatchedLinear(k, d, dim_out))
        super().__init__(*layers)
        self.k, self.dim_in, self.hidden, self.dim_out = k, dim_in, tuple(hidden), dim_out
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # K from the weights, not self.k: torch.func.functional_call may pass a subset of networks
        k = self[0].weight.shape[0]
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(k, *x.shape)
        if x.ndim != 3 or x.shape[0] != k or x.shape[2] != self.dim_in:
            raise ValueError(
                f"input.shape == {tuple(x.shape)}, must be (N, {self.dim_in}) shared by all "
                f"networks or (K, N, {self.dim_in}) with K == {k}"
            )
        return super().forward(x)

    @classmethod
    def stack(cls, models: Sequence[MLP]) -> BatchedMLP:
        """One BatchedMLP holding copies of ``models`` (all MLPs of one architecture)."""
        models = list(models)
        if not models or not all(isinstance(m, MLP) for m in models):
            kinds = sorted({type(m).__name__ for m in models}) or ["nothing"]
            raise TypeError(f"models are {kinds}, must be a non-empty sequence of deepscope.nets.MLP; "
                            "use VmapStack for other architectures")
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in models]
        shapes = {tuple((lin.in_features, lin.out_features) for lin in ls) for ls in linears}
        acts = {type(m).__name__ for net in models for m in net
                if not isinstance(m, (nn.Linear, nn.Flatten))}
        if len(shapes) != 1 or len(acts) > 1:
            raise ValueError(f"models have layer shapes {sorted(shapes)} and activations "
                             f"{sorted(acts)}; all must share one architecture")
        (shape,) = shapes
        act = next((n for n, c in ACTIVATIONS.items() if c.__name__ in acts), "relu")
        out = cls(len(models), shape[0][0], [s[1] for s in shape[:-1]], shape[-1][1], activation=act)
        dev = linears[0][0].weight.device
        out = out.to(device=dev, dtype=linears[0][0].weight.dtype)
        blin = [m for m in out if isinstance(m, BatchedLinear)]
        with torch.no_grad():
            for i, layer in enumerate(blin):
                layer.weight.copy_(torch.stack([ls[i].weight.T for ls in linears]))
                layer.bias.copy_(torch.stack([ls[i].bias for ls in linears]))
        return out

    def unstack(self, *, share: bool = False) -> list[MLP]:
        """K :class:`MLP` networks holding network k's current weights (same device and dtype).

        Parameters
        ----------
        share : bool
            False (default): independent copies. True: read-only mirrors whose parameters are
            views of this stack's (``requires_grad=False``, the weights transposed views):
            they follow the stack as it trains, and ``load_state_dict`` into one writes into
            the stack. A loop that trains the stack can hand them to per-network code
            (evaluation, checkpoints that name their networks) without copying.
        """
        blin = [m for m in self if isinstance(m, BatchedLinear)]
        nets = []
        for k in range(self.k):
            with torch.device("meta"):
                net = MLP(self.dim_in, self.hidden, self.dim_out, activation=self.activation)
            lins = [m for m in net if isinstance(m, nn.Linear)]
            state = {}
            for lin, b in zip(lins, blin):
                name = next(n for n, m in net.named_children() if m is lin)
                w, bias = b.weight[k].detach().T, b.bias[k].detach()
                state[f"{name}.weight"] = w if share else w.contiguous()
                state[f"{name}.bias"] = bias if share else bias.clone()
            net.load_state_dict(state, assign=True)
            if share:
                net.requires_grad_(False)
            nets.append(net)
        return nets


class VmapStack(nn.Module):
    """K copies of any architecture, evaluated with ``torch.func.vmap`` over stacked parameters.

    Parameters
    ----------
    models : sequence of nn.Module
        Networks of one architecture (same parameter and buffer names and shapes). They are
        copied; the stack trains its own (K, ...) parameters.

    Notes
    -----
    Input ``(K, N, ...)``: network k sees ``x[k]`` (for a shared batch pass
    ``x.expand(K, *x.shape)``, which copies nothing). Output ``(K, N, ...)``. Modules whose
    forward mixes examples (BatchNorm in train mode) or draws random numbers (dropout) are
    refused by ``vmap``'s rules or would differ from separate runs: use ``norm='none'``.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        from torch.func import stack_module_state

        models = list(models)
        if not models or not all(isinstance(m, nn.Module) for m in models):
            raise TypeError("models must be a non-empty sequence of torch.nn.Module")
        names = {tuple((n, tuple(p.shape)) for n, p in m.named_parameters()) for m in models}
        if len(names) != 1:
            raise ValueError("models differ in their parameter names or shapes; all must share "
                             "one architecture")
        self.k = len(models)
        params, buffers = stack_module_state(models)
        # the template only provides the forward code; it lives on the meta device
        self._template = [copy.deepcopy(models[0]).to("meta")]
        self._pnames = list(params)
        self._bnames = list(buffers)
        self.params = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self._pnames])
        for i, n in enumerate(self._bnames):
            self.register_buffer(f"buffer{i}", buffers[n].clone())

    def _call(self, params: tuple, buffers: tuple, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call

        state = {**dict(zip(self._pnames, params)), **dict(zip(self._bnames, buffers))}
        return functional_call(self._template[0], state, (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import vmap

        # K from the parameters, not self.k: torch.func.functional_call may pass a subset
        k = self.params[0].shape[0]
        if x.ndim < 2 or x.shape[0] != k:
            raise ValueError(f"input.shape == {tuple(x.shape)}, must be (K, N, ...) with K == "
                             f"{k}; for one batch shared by all networks pass "
                             f"x.expand({k}, *x.shape)")
        buffers = tuple(getattr(self, f"buffer{i}") for i in range(len(self._bnames)))
        return vmap(self._call)(tuple(self.params), buffers, x)

    def unstack(self) -> list[nn.Module]:
        """K independent modules holding copies of the current weights."""
        nets = []
        buffers = [getattr(self, f"buffer{i}") for i in range(len(self._bnames))]
        for k in range(self.k):
            net = copy.deepcopy(self._template[0])
            state = {n: p[k].detach().clone() for n, p in zip(self._pnames, self.params)}
            state.update({n: b[k].clone() for n, b in zip(self._bnames, buffers)})
            net.load_state_dict(state, strict=False, assign=True)
            nets.append(net)
        return nets


def _bmm(models: Sequence[nn.Module]) -> nn.Module:
    return BatchedMLP.stack(models)


def _vmap(models: Sequence[nn.Module]) -> nn.Module:
    return VmapStack(models)


#: Ways to stack K networks; see the module docstring for when each wins.
STACK_IMPLEMENTATIONS: dict[str, Callable[[Sequence[nn.Module]], nn.Module]] = {
    "bmm": _bmm,
    "vmap": _vmap,
}


def stack_models(models: Sequence[nn.Module], *, implementation: str = "auto") -> nn.Module:
    """K networks of one architecture as one module mapping (K, N, ...) to (K, N, ...).

    Parameters
    ----------
    models : sequence of nn.Module
        Same architecture; copied (the originals are left alone).
    implementation : {'auto', 'bmm', 'vmap'}
        ``'auto'`` (default): ``'bmm'`` (:class:`BatchedMLP`) when every model is a
        :class:`deepscope.nets.MLP`, else ``'vmap'`` (:class:`VmapStack`).

    Returns
    -------
    nn.Module
        With ``k`` and ``unstack()``.
    """
    choices = ["auto", *STACK_IMPLEMENTATIONS]
    if implementation not in choices:
        raise ValueError(f"implementation == {implementation!r}, must be one of {choices}")
    if implementation == "auto":
        implementation = "bmm" if models and all(isinstance(m, MLP) for m in models) else "vmap"
    return STACK_IMPLEMENTATIONS[implementation](models)
