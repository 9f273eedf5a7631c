"""The empirical neural tangent kernel, three exact ways, on ``torch.func``.

``K[(x, o), (x', o')] = <df_o(x)/dtheta, df_o'(x')/dtheta>`` for a network ``f`` with outputs
``o = 1..O`` and trainable parameters ``theta`` (Jacot et al., arXiv 1806.07572; studied along
training in Baratin et al., arXiv 2008.00938).

Cookbook::

    import torch
    from deepscope.dynamics.ntk import empirical_ntk
    from deepscope.nets import MLP

    net = MLP(40, [256, 256], 10).eval()
    x, x_test = torch.randn(500, 40), torch.randn(50, 40)

    K = empirical_ntk(net, x)                           # (500, 500, 10, 10)
    K_tr = empirical_ntk(net, x, mode="trace")          # (500, 500): sum over o of K[:, :, o, o]
    K_diag = empirical_ntk(net, x, mode="diagonal")     # (500, 500, 10): K[:, :, o, o]
    K_cross = empirical_ntk(net, x_test, x)             # (50, 500, 10, 10)
    layers = empirical_ntk(net, x, per_layer=True)      # {"1": ..., "3": ..., "5": ...}, sums to K
    Kc = empirical_ntk(net, x, centered=True)           # (I_O (x) H) K (I_O (x) H), H = I - 11'/N

    # bounded memory: 20,000 inputs, a (20000, 20000) float32 output (1.6 GB), blocks of 2,000
    K_big = empirical_ntk(net, torch.randn(20_000, 40), mode="trace", chunk_size=2_000)

    # the same kernel by each implementation (they agree to rounding)
    for impl in ("factorized", "jacobian", "vjp_jvp"):
        empirical_ntk(net, x[:50], implementation=impl)

Implementations (``NTKImplementation``; all exact, tested to agree to 1e-10 in float64):

- ``"jacobian"`` -- Jacobian contraction: per-example Jacobians ``J`` (vmap + jacrev, in chunks
  of examples and, when one example's Jacobian is large, of parameters), then ``K = J1 J2^T``.
  Time ``N O FP + N^2 O^2 P``, memory ``chunk O P``.
- ``"vjp_jvp"`` -- kernel-vector products: a column ``K[:, (m, p)]`` is the jvp through ``f(x1)``
  of the vjp ``J2^T e_(m, p)``; no Jacobian of ``x1`` is stored. Time ``~ N^2 O FP``.
- ``"factorized"`` -- per-layer structure of ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d``
  (``groups=1``): the layer's kernel is ``sum_(s, t) (a_(n,s) . a_(m,t)) (g_(n,o,s) . g_(m,p,t))``
  with ``a`` the layer's input (unfolded patches for a convolution, a constant 1 appended for the
  bias) at position ``s`` and ``g`` the gradient of output ``o`` with respect to the layer's output,
  all ``g`` from one batched backward pass. Per layer it takes the cheaper of the Gram form above
  and contracting the layer's Jacobian ``sum_s a_s (x) g_s``, by FLOP count plus a measured cost
  for the Gram form's reduction over pairs of positions, which runs at memory speed. Parameters
  of other modules (norm layers, embeddings, bare ``nn.Parameter``), of grouped convolutions and of
  modules called more than once per forward or sharing a parameter go through ``"jacobian"``.
  A factorised module's parameters must be used only by its own ``forward`` (a weight read
  directly elsewhere, e.g. ``F.linear(h, self.fc.weight)``, would be missed).
- ``"auto"`` (default) -- ``"factorized"`` when some parameter-owning module is a Linear/Conv1d/
  Conv2d it can factorise (the others' parameters by Jacobian contraction), else ``"jacobian"``.
  ``"vjp_jvp"`` is never picked automatically: it stores no Jacobian, but it runs ``N2 O`` jvps
  over the ``x1`` chunk; in ``benchmarks/ntk_speed.py`` it was far slower than ``"factorized"``
  on both models, faster than ``"jacobian"`` on the MLP and slower on the CNN (its cost grows
  with the forward FLOPs, which weight sharing makes large for convolutions).

Conventions: parameters are those with ``requires_grad=True``; the model is evaluated as is (call
``model.eval()`` first if it has BatchNorm or dropout -- train mode is refused); examples must be
processed independently (true for any network without batch statistics). The kernel has the
parameters' dtype and device; floating inputs must have the parameters' dtype. With ``x2=None``
only the blocks on and above the diagonal are computed and the rest is mirrored. The full kernel
is returned as a (non-contiguous) view of an ``(N1*O, N2*O)`` matrix with rows ordered
``(n, o)``: ``K.permute(0, 2, 1, 3).reshape(N1 * O, N2 * O)`` is free.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap
from torch.nn import functional as F

__all__ = ["empirical_ntk", "NTKImplementation", "MODES", "check_ntk_model"]

#: Kernel shapes: "full" (N1, N2, O, O), "trace" (N1, N2), "diagonal" (N1, N2, O).
MODES = ("full", "trace", "diagonal")

# Working memory of one block's temporaries (per-example Jacobians, Gram products), bytes.
_BLOCK_BYTES = 2**28
# Features (Jacobians, layer inputs and gradients) kept between blocks instead of recomputed.
_CACHE_BYTES = 2**30
# Target number of kernel entries in one block: small enough that the blocks above the diagonal
# save work when x2 is x1, large enough that each Gram product runs at matrix-multiply speed.
_BLOCK_ENTRIES = 2**19


class NTKImplementation(str, enum.Enum):
    """How ``empirical_ntk`` computes the kernel; see the module docstring for costs."""

    AUTO = "auto"
    JACOBIAN = "jacobian"
    VECTOR_PRODUCTS = "vjp_jvp"
    FACTORIZED = "factorized"


# --------------------------------------------------------------------------------------
# Checks and the model description shared by the implementations
# --------------------------------------------------------------------------------------
def check_ntk_model(model: nn.Module) -> None:
    """Refuse modules whose train-mode output for one example depends on others or on chance.

    Raises
    ------
    ValueError
        A BatchNorm in train mode (batch statistics couple the examples) or an active dropout
        (the function is random); the message names the module and the fix.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model is a {type(model).__name__}, must be a torch.nn.Module")
    for name, m in model.named_modules():
        label = f"model.{name}" if name else "model"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(
                f"{label} is a {type(m).__name__} in train mode, which mixes the examples of a "
                f"batch, so the tangent kernel is undefined; call model.eval() or build the "
                f"network with norm='none'"
            )
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(
                f"{label} is a {type(m).__name__}(p={m.p}) in train mode, which makes the network "
                f"random; call model.eval() before computing the tangent kernel"
            )


_FACTORIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class _Layer:
    """A module whose parameters the factorised implementation handles (one call per forward)."""

    name: str
    module: nn.Module
    weight: bool  # the weight is trainable (part of the kernel)
    bias: bool
    positions: int = 1  # S: output positions (1 for a Linear on (N, D) inputs)
    d_in: int = 0  # D: input features per position (+1 for a trainable bias)
    d_out: int = 0  # C: output channels


@dataclass
class _Ctx:
    model: nn.Module
    params: dict[str, torch.Tensor]  # trainable, detached
    fixed: dict[str, torch.Tensor]  # frozen parameters and buffers
    group_of: dict[str, str]  # parameter name -> owning module name
    groups: list[str]  # owning module names, in parameter order
    n_out: int
    mode: str
    per_layer: bool
    dtype: torch.dtype
    device: torch.device
    layers: list[_Layer] = field(default_factory=list)  # factorised layers (factorized only)
    rest: list[str] = field(default_factory=list)  # parameters left to Jacobian contraction
    chunk: int = 1  # examples per block (fixes the parameter passes for every block)

    def key(self, group: str) -> str:
        return group if self.per_layer else ""


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def _prepare(model: nn.Module, x1: torch.Tensor, mode: str, per_layer: bool) -> tuple[_Ctx, dict]:
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no parameters with requires_grad=True; the kernel is zero-dimensional")
    first = next(iter(params.values()))
    if x1.is_floating_point() and x1.dtype != first.dtype:
        raise ValueError(
            f"x1 has dtype {x1.dtype} but the model's parameters are {first.dtype}; pass "
            f"x1.to({first.dtype}) or convert the model (e.g. model.to({x1.dtype}))"
        )
    fixed = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    fixed.update(dict(model.named_buffers()))
    group_of = {k: _owner(k) for k in params}
    groups = list(dict.fromkeys(group_of.values()))

    # one example through the network: output size, and how often each module is called
    calls: dict[str, list] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, _FACTORIZABLE):
            def hook(mod, inp, out, name=name):
                calls.setdefault(name, []).append((tuple(inp[0].shape) if inp else None, tuple(out.shape)))
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = functional_call(model, (params, fixed), (x1[:1],))
    finally:
        for h in hooks:
            h.remove()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model returned a {type(out).__name__}; empirical_ntk needs a tensor output (N, ...)")
    if out.ndim == 0 or out.shape[0] != 1:
        raise ValueError(
            f"model maps 1 example to an output of shape {tuple(out.shape)}; it must keep the batch "
            f"dimension first, (N, ...)"
        )
    ctx = _Ctx(model, params, fixed, group_of, groups, out[0].numel(), mode, per_layer,
               first.dtype, first.device)
    return ctx, calls


def _plan_factorized(ctx: _Ctx, calls: dict) -> None:
    """Fill ``ctx.layers`` (factorisable modules) and ``ctx.rest`` (all other parameters)."""
    owners: dict[int, int] = {}
    for _, m in ctx.model.named_modules(remove_duplicate=False):
        for p in m._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    covered: set[str] = set()
    for name, m in ctx.model.named_modules():
        if not isinstance(m, _FACTORIZABLE) or len(calls.get(name, [])) != 1:
            continue
        own = {k for k, p in m._parameters.items() if p is not None}
        if not own <= {"weight", "bias"} or any(owners[id(p)] != 1 for p in m._parameters.values() if p is not None):
            continue
        prefix = f"{name}." if name else ""
        w, b = f"{prefix}weight" in ctx.params, f"{prefix}bias" in ctx.params
        if not (w or b):
            continue
        in_shape, out_shape = calls[name][0]
        if in_shape is None:
            continue
        if isinstance(m, nn.Linear):
            s, d, c = math.prod(out_shape[1:-1]), m.in_features, m.out_features
        else:
            if m.groups != 1 or len(in_shape) != m.weight.ndim:  # grouped or unbatched convolution
                continue
            s, d, c = math.prod(out_shape[2:]), m.weight[0].numel(), m.out_channels
        d_in = (d if w else 0) + (1 if b else 0)
        ctx.layers.append(_Layer(name, m, w, b, s, d_in, c))
        covered.update(k for k in (f"{prefix}weight", f"{prefix}bias") if k in ctx.params)
    ctx.rest = [k for k in ctx.params if k not in covered]


# --------------------------------------------------------------------------------------
# Contractions shared by the implementations; block layouts:
#   full (n1*O, n2*O) rows (n, o), cols (m, p);  trace (n1, n2);  diagonal (O, n1, n2)
# --------------------------------------------------------------------------------------
def _contract_jac(j1: torch.Tensor, j2: torch.Tensor, mode: str) -> torch.Tensor:
    """Kernel block of Jacobians ``j1 (n1, O, D)``, ``j2 (n2, O, D)``."""
    n1, o, d = j1.shape
    n2 = j2.shape[0]
    if mode == "full":
        return j1.reshape(n1 * o, d) @ j2.reshape(n2 * o, d).T
    if mode == "trace":
        return j1.reshape(n1, o * d) @ j2.reshape(n2, o * d).T
    return torch.bmm(j1.transpose(0, 1), j2.permute(1, 2, 0))


def _add(acc: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if acc is None else acc.add_(b)


# --------------------------------------------------------------------------------------
# Jacobian contraction
# --------------------------------------------------------------------------------------
def _output_fn(ctx: _Ctx, sub: dict[str, torch.Tensor]) -> Callable:
    """``f(p, x) -> (n, O)`` with the parameters in ``p`` and the rest of ``ctx.params`` held fixed."""
    held = {k: v for k, v in ctx.params.items() if k not in sub}

    def f(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = functional_call(ctx.model, (p, held, ctx.fixed), (x,))
        return out.reshape(x.shape[0], ctx.n_out)

    return f


def _param_passes(ctx: _Ctx, names: list[str]) -> list[list[str]]:
    """Split ``names`` so that one pass's Jacobian of a block of examples fits ``_BLOCK_BYTES``."""
    item = torch.finfo(ctx.dtype).bits // 8
    room = max(1, _BLOCK_BYTES // (ctx.chunk * ctx.n_out * item))
    passes: list[list[str]] = []
    size = 0
    for k in names:
        numel = ctx.params[k].numel()
        # per-layer output needs one group per pass so a pass's Jacobians concatenate by group
        new_group = passes and ctx.per_layer and ctx.group_of[passes[-1][-1]] != ctx.group_of[k]
        if not passes or size + numel > room or new_group:
            passes.append([])
            size = 0
        passes[-1].append(k)
        size += numel
    return passes


def _jacobians(ctx: _Ctx, names: list[str], x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """[(group key, (n, O, D) Jacobian)] of the parameters ``names`` on the examples ``x``."""
    out: list[tuple[str, torch.Tensor]] = []
    for chunk in _param_passes(ctx, names):
        sub = {k: ctx.params[k] for k in chunk}
        f = _output_fn(ctx, sub)

        def single(p, xi, f=f):
            return f(p, xi.unsqueeze(0))[0]

        jac = vmap(jacrev(single), (None, 0))(sub, x)  # {name: (n, O, *shape)}
        by_group: dict[str, list[torch.Tensor]] = {}
        for k in chunk:
            by_group.setdefault(ctx.key(ctx.group_of[k]), []).append(jac[k].reshape(x.shape[0], ctx.n_out, -1))
        out.extend((g, torch.cat(js, 2) if len(js) > 1 else js[0]) for g, js in by_group.items())
    return out


def _jacobian_chunk(ctx: _Ctx, names: list[str]) -> int:
    item = torch.finfo(ctx.dtype).bits // 8
    p = sum(ctx.params[k].numel() for k in names)
    return max(1, _BLOCK_BYTES // (ctx.n_out * p * item))


class _Jacobian:
    @staticmethod
    def chunk(ctx: _Ctx) -> int:
        return _jacobian_chunk(ctx, list(ctx.params))

    @staticmethod
    def features(ctx: _Ctx, x: torch.Tensor) -> Any:
        return _jacobians(ctx, list(ctx.params), x)

    @staticmethod
    def block(ctx: _Ctx, f1: Any, f2: Any) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for (g, j1), (_, j2) in zip(f1, f2):
            out[g] = _add(out.get(g), _contract_jac(j1, j2, ctx.mode))
        return out


# --------------------------------------------------------------------------------------
# Kernel-vector products: vjp (columns J2^T e_(m,p)) then jvp through f(x1)
# --------------------------------------------------------------------------------------
def _kvp_columns(f: Callable, sub: dict, x1: torch.Tensor, xm: torch.Tensor, n_out: int) -> torch.Tensor:
    """Kernel columns ``K[:, (m, p)]`` for the examples ``xm``: ``(m * O, n1, O)``, ``[(m, p), n, o]``."""
    eye = torch.eye(n_out, dtype=next(iter(sub.values())).dtype, device=xm.device)

    def vjp_rows(xi):
        _, pull = vjp(lambda p: f(p, xi.unsqueeze(0))[0], sub)
        return vmap(pull)(eye)[0]  # J^T e_p: {name: (O, *shape)}

    def push(t):
        return jvp(lambda p: f(p, x1), (sub,), (t,))[1]  # (n1, O)

    tangents = {k: v.flatten(0, 1) for k, v in vmap(vjp_rows)(xm).items()}
    return vmap(push)(tangents)


class _VectorProducts:
    @staticmethod
    def chunk(ctx: _Ctx) -> int:
        return max(1, int(math.sqrt(_BLOCK_ENTRIES)) // ctx.n_out)

    @staticmethod
    def features(ctx: _Ctx, x: torch.Tensor) -> Any:
        return x

    @staticmethod
    def block(ctx: _Ctx, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        o, n1, n2 = ctx.n_out, x1.shape[0], x2.shape[0]
        item = torch.finfo(ctx.dtype).bits // 8
        groups = ctx.groups if ctx.per_layer else [""]
        out: dict[str, torch.Tensor] = {}
        for g in groups:
            sub = {k: v for k, v in ctx.params.items() if not ctx.per_layer or ctx.group_of[k] == g}
            f = _output_fn(ctx, sub)
            p = sum(v.numel() for v in sub.values())
            # tangents (m O, P) and the batched jvp's outputs (m O, n1, O) within the block budget
            m_step = max(1, _BLOCK_BYTES // ((3 * p + 4 * n1 * o) * item * o))
            cols = [_kvp_columns(f, sub, x1, x2[m0:m0 + m_step], o) for m0 in range(0, n2, m_step)]
            k = torch.cat(cols).view(n2, o, n1, o)  # [m, p, n, o]
            if ctx.mode == "full":
                b = k.permute(2, 3, 0, 1).reshape(n1 * o, n2 * o)
            else:
                d = torch.diagonal(k, dim1=1, dim2=3)  # [m, n, o] = K[n, m, o, o]
                b = d.sum(-1).T.contiguous() if ctx.mode == "trace" else d.permute(2, 1, 0).contiguous()
            out[g] = b
        return out


# --------------------------------------------------------------------------------------
# Per-layer factorisation
# --------------------------------------------------------------------------------------
def _unfold(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """(n, S, C_in * prod(kernel)) input patches of a Conv1d/Conv2d, in the weight's order."""
    pad = m._reversed_padding_repeated_twice
    if any(pad):
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        a = F.pad(a, pad, mode=mode)
    if isinstance(m, nn.Conv1d):
        a = a.unsqueeze(2)
        k, d, s = (1, m.kernel_size[0]), (1, m.dilation[0]), (1, m.stride[0])
    else:
        k, d, s = m.kernel_size, m.dilation, m.stride
    return F.unfold(a, k, dilation=d, stride=s).transpose(1, 2)


#: Cost of the Gram form's elementwise product-and-sum over pairs of positions, in matrix-multiply
#: multiply-adds per element of the (.., S, .., S) temporary it reduces: that step runs at memory
#: speed. Fitted per mode with ``benchmarks/ntk_gram_cost.py`` on the 2-core CPU, one thread
#: (full 230-430, diagonal 150-310 over 7 layer shapes and three runs; the trace mode's reduction
#: is a small share of its time and its fit noisy, 64 lies amid its positive values). With them
#: the model picks the faster form in all 21 measured (mode, shape) cases, the plain FLOP count
#: in 16 (it took the Gram form up to 4.5x slower). Other hardware may shift the ties.
_REDUCE_COST = {"full": 300, "trace": 64, "diagonal": 160}


def _form_costs(mode: str, o: int, s: int, d: int, c: int) -> tuple[float, float]:
    """Per pair of examples, the cost of one layer's kernel entries by the Gram form and by the
    layer's Jacobian, in multiply-adds (see :data:`_REDUCE_COST`)."""
    red = _REDUCE_COST[mode] if s > 1 else 1
    if mode == "full":
        return s * s * d + o * o * s * s * (c + red), o * o * d * c
    reduced = s * s if mode == "trace" else o * s * s
    return s * s * d + o * s * s * c + red * reduced, o * d * c


def _use_gram(ctx: _Ctx, lay: _Layer) -> bool:
    """Cheaper per pair of examples: the Gram form (True) or the layer's Jacobian (False)."""
    gram, jac = _form_costs(ctx.mode, ctx.n_out, lay.positions, lay.d_in, lay.d_out)
    return gram <= jac


def _layer_features(ctx: _Ctx, x: torch.Tensor) -> dict[str, tuple]:
    """Per factorised layer: ('gram', a, g) or ('jac', J), from one forward and one batched backward."""
    recs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for lay in ctx.layers:
        def hook(mod, inp, out, name=lay.name):
            # d f / d eps == d f / d (layer output): the kernel needs exactly those gradients
            eps = torch.zeros_like(out, requires_grad=True)
            recs[name] = (inp[0].detach(), eps)
            return out + eps
        hooks.append(lay.module.register_forward_hook(hook))
    n, o = x.shape[0], ctx.n_out
    # plain autograd, also when called under no_grad or inference_mode
    with torch.inference_mode(False), torch.enable_grad():
        if x.is_inference():
            x = x.clone()
        try:
            y = functional_call(ctx.model, (ctx.params, ctx.fixed), (x,)).reshape(n, o)
        finally:
            for h in hooks:
                h.remove()
        eps = [recs[lay.name][1] for lay in ctx.layers]
        cot = torch.eye(o, dtype=y.dtype, device=y.device)[:, None, :].expand(o, n, o)
        try:
            grads = torch.autograd.grad(y, eps, cot, is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule: one backward per output
            per_o = [torch.autograd.grad(y, eps, cot[i], retain_graph=i < o - 1) for i in range(o)]
            grads = tuple(torch.stack(gs) for gs in zip(*per_o))
    feats: dict[str, tuple] = {}
    for lay, g in zip(ctx.layers, grads):
        a = recs[lay.name][0]
        if isinstance(lay.module, nn.Linear):
            a = a.reshape(n, lay.positions, -1)
            g = g.reshape(o, n, lay.positions, lay.d_out)
        else:
            a = _unfold(lay.module, a)
            g = g.reshape(o, n, lay.d_out, lay.positions).transpose(2, 3)
        if not lay.weight:
            a = a.new_ones(n, lay.positions, 1)
        elif lay.bias:
            a = torch.cat([a, a.new_ones(n, lay.positions, 1)], 2)
        feats[lay.name] = _layer_form(ctx.mode, a, g, gram=_use_gram(ctx, lay))
    return feats


def _layer_form(mode: str, a: torch.Tensor, g: torch.Tensor, *, gram: bool) -> tuple:
    """A layer's features from its inputs ``a (n, S, D)`` and output gradients ``g (O, n, S, C)``:
    ``('gram', a, g)`` with ``g`` laid out for :func:`_gram_block`, or ``('jac', J)`` with the
    per-example Jacobian ``J (n, O, D * C)``."""
    o, n, s, c = g.shape
    if gram:
        if mode == "diagonal":
            g = g.reshape(o, n * s, c).contiguous()  # [o][(n, s)]
        elif mode == "trace" or s == 1:
            g = g.permute(1, 2, 0, 3).contiguous()  # [n][s][o]
        else:
            g = g.permute(1, 0, 2, 3).contiguous()  # [n][o][s]
        return ("gram", a.contiguous(), g)
    # J[n, o] = sum_s a[n, s] (x) g[o, n, s]
    j = torch.bmm(a.transpose(1, 2), g.permute(1, 2, 0, 3).reshape(n, s, -1))
    return ("jac", j.view(n, -1, o, c).permute(0, 2, 1, 3).reshape(n, o, -1))


def _gram_block(ctx: _Ctx, f1: tuple, f2: tuple, acc: torch.Tensor | None) -> torch.Tensor:
    """One factorised layer's block by the Gram form, added into ``acc`` when given."""
    _, a1, g1 = f1
    _, a2, g2 = f2
    n1, s, _ = a1.shape
    n2 = a2.shape[0]
    o, c = ctx.n_out, g1.shape[-1]
    pa = a1.reshape(n1 * s, -1) @ a2.reshape(n2 * s, -1).T  # (n1*S, n2*S) input Gram
    if s == 1:
        if ctx.mode == "full":
            q = (g1.view(n1 * o, c) @ g2.view(n2 * o, c).T).view(n1, o, n2, o)
            p4 = pa.view(n1, 1, n2, 1)
            if acc is None:
                return q.mul_(p4).view(n1 * o, n2 * o)
            acc.view(n1, o, n2, o).addcmul_(q, p4)
            return acc
        if ctx.mode == "trace":
            q = g1.view(n1, o * c) @ g2.view(n2, o * c).T
            return q.mul_(pa) if acc is None else acc.addcmul_(q, pa)
        q = torch.bmm(g1, g2.transpose(1, 2))  # (O, n1, n2)
        return q.mul_(pa) if acc is None else acc.addcmul_(q, pa)
    pa = pa.view(n1, s, n2, s)
    item = torch.finfo(ctx.dtype).bits // 8
    if ctx.mode == "trace":
        q = g1.view(n1 * s, o * c) @ g2.view(n2 * s, o * c).T
        return _add(acc, (q.view(n1, s, n2, s) * pa).sum((1, 3)))
    if ctx.mode == "diagonal":
        q = torch.bmm(g1, g2.transpose(1, 2)).view(o, n1, s, n2, s)
        return _add(acc, (q * pa).sum((2, 4)))
    # full with positions: rows of x1 in slices so that (r, O, S, n2, O, S) fits the budget
    out = torch.empty(n1, o, n2, o, dtype=a1.dtype, device=a1.device)
    r = max(1, _BLOCK_BYTES // (2 * o * o * s * s * n2 * item))
    g2m = g2.view(n2 * o * s, c)
    for i in range(0, n1, r):
        gi = g1[i:i + r]
        ri = gi.shape[0]
        q = (gi.reshape(ri * o * s, c) @ g2m.T).view(ri, o, s, n2, o, s)
        out[i:i + ri] = (q * pa[i:i + ri].view(ri, 1, s, n2, 1, s)).sum((2, 5))
    return _add(acc, out.view(n1 * o, n2 * o))


class _Factorized:
    @staticmethod
    def chunk(ctx: _Ctx) -> int:
        o = {"full": ctx.n_out, "trace": 1, "diagonal": math.sqrt(ctx.n_out)}[ctx.mode]
        c = max(1, int(math.sqrt(_BLOCK_ENTRIES) / o))
        if ctx.rest:
            c = min(c, _jacobian_chunk(ctx, ctx.rest))
        item = torch.finfo(ctx.dtype).bits // 8
        for lay in ctx.layers:  # a layer's Jacobian (or gradients) for one chunk within budget
            per_ex = ctx.n_out * (lay.d_in * lay.d_out if not _use_gram(ctx, lay) else lay.positions * lay.d_out)
            c = min(c, max(1, _BLOCK_BYTES // (per_ex * item)))
        return c

    @staticmethod
    def features(ctx: _Ctx, x: torch.Tensor) -> Any:
        return _layer_features(ctx, x), (_jacobians(ctx, ctx.rest, x) if ctx.rest else [])

    @staticmethod
    def block(ctx: _Ctx, f1: Any, f2: Any) -> dict[str, torch.Tensor]:
        (l1, r1), (l2, r2) = f1, f2
        out: dict[str, torch.Tensor] = {}
        for lay in ctx.layers:
            k = ctx.key(lay.name)
            if l1[lay.name][0] == "gram":
                out[k] = _gram_block(ctx, l1[lay.name], l2[lay.name], out.get(k))
            else:
                out[k] = _add(out.get(k), _contract_jac(l1[lay.name][1], l2[lay.name][1], ctx.mode))
        for (g, j1), (_, j2) in zip(r1, r2):
            out[g] = _add(out.get(g), _contract_jac(j1, j2, ctx.mode))
        if ctx.per_layer:  # in the model's parameter order
            out = {g: out[g] for g in ctx.groups if g in out}
        return out


_IMPLEMENTATIONS: dict[NTKImplementation, Any] = {
    NTKImplementation.JACOBIAN: _Jacobian,
    NTKImplementation.VECTOR_PRODUCTS: _VectorProducts,
    NTKImplementation.FACTORIZED: _Factorized,
}


# --------------------------------------------------------------------------------------
# The driver: blocks of examples, mirrored when x2 is x1
# --------------------------------------------------------------------------------------
def _bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_bytes(v) for v in obj)
    return 0


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised output; large CPU ones through NumPy, which asks Linux for huge pages.

    Writing a fresh 100 MB tensor from ``torch.empty`` page-faults 4 KiB at a time (measured
    60-100 ms here); NumPy's allocator madvises transparent huge pages (15 ms).
    """
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}
    if device.type == "cpu" and dtype in np_dtype and math.prod(shape) >= 2**20:
        return torch.from_numpy(np.empty(shape, dtype=np_dtype[dtype]))
    return torch.empty(shape, dtype=dtype, device=device)


def center_axes_(k: torch.Tensor, d1: int, d2: int) -> torch.Tensor:
    """In place: subtract the means of ``k`` over axis ``d1`` and over axis ``d2`` (the two
    example axes of a kernel), add back the mean over both; returns ``k``."""
    m1 = k.mean(d1, keepdim=True)
    m2 = k.mean(d2, keepdim=True)
    m12 = m1.mean(d2, keepdim=True)
    return k.sub_(m1).sub_(m2).add_(m12)


def _center(k: torch.Tensor, mode: str, n1: int, n2: int, o: int) -> None:
    """In place: subtract the means over x1 and over x2 (per output pair), add the grand mean."""
    v = {"full": lambda: k.view(n1, o, n2, o), "trace": lambda: k, "diagonal": lambda: k}[mode]()
    center_axes_(v, *{"full": (0, 2), "trace": (0, 1), "diagonal": (1, 2)}[mode])


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    mode: str = "full",
    per_layer: bool = False,
    centered: bool = False,
    implementation: str | NTKImplementation = "auto",
    chunk_size: int | None = None,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Empirical tangent kernel of ``model`` between the examples ``x1`` and ``x2``.

    ``K[n, m, o, p] = <d f_o(x1[n]) / d theta, d f_p(x2[m]) / d theta>`` over the trainable
    parameters ``theta`` (arXiv 1806.07572; the object of arXiv 2008.00938).

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, *features)`` to ``(N, O)`` (any ``(N, ...)`` output is flattened to ``O``).
        BatchNorm and dropout must be in eval mode (``model.eval()``).
    x1 : (N1, *features) tensor
    x2 : (N2, *features) tensor, optional
        Default: ``x1`` (then only blocks on and above the diagonal are computed).
    mode : {'full', 'trace', 'diagonal'}
        'full': ``(N1, N2, O, O)``; 'trace': ``(N1, N2)``, the sum over ``o`` of ``K[..., o, o]``;
        'diagonal': ``(N1, N2, O)``, ``K[..., o, o]``.
    per_layer : bool
        Return ``{module name: kernel}`` for every module that owns trainable parameters
        (``''`` for the root); the kernels sum to the whole kernel.
    centered : bool
        Return ``(I_O (x) H1) K (I_O (x) H2)`` with ``H = I - 11^T / N``: the kernel of the
        tangent features centred over the examples of ``x1`` and of ``x2``.
    implementation : {'auto', 'factorized', 'jacobian', 'vjp_jvp'} or NTKImplementation
        See the module docstring; all give the same kernel.
    chunk_size : int, optional
        Examples per block. Default: chosen from the implementation so that one block's
        temporaries stay near 256 MiB; the memory in use is then the output, those
        temporaries and at most 1 GiB of per-chunk features kept for reuse (beyond that they
        are recomputed).

    Returns
    -------
    tensor, or dict of tensors when ``per_layer``
        Shape by ``mode`` (above), the parameters' dtype and device. The full kernel is a
        non-contiguous view (see the module docstring).

    Examples
    --------
    >>> lin = nn.Linear(3, 2, bias=False).double()
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> K = empirical_ntk(lin, x)                                   # (x . x') I_2
    >>> torch.allclose(K, (x @ x.T)[:, :, None, None] * torch.eye(2, dtype=torch.float64))
    True
    """
    if mode not in MODES:
        raise ValueError(f"mode == {mode!r}; choose one of {list(MODES)}")
    try:
        impl = NTKImplementation(implementation)
    except ValueError:
        allowed = [e.value for e in NTKImplementation]
        raise ValueError(f"implementation == {implementation!r}; choose one of {allowed}") from None
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size == {chunk_size!r}, must be an integer >= 1 (examples per block)")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None and (not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] == 0):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} is {shape}, must be a tensor (N, *features) with N >= 1")
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"x2 has feature shape {tuple(x2.shape[1:])} but x1 has {tuple(x1.shape[1:])}; "
            f"both must be (N, *features) with the same features"
        )
    if x2 is not None and x2.is_floating_point() and x1.is_floating_point() and x2.dtype != x1.dtype:
        raise ValueError(f"x2 has dtype {x2.dtype} but x1 has {x1.dtype}; pass both in one dtype")
    check_ntk_model(model)
    symmetric = x2 is None or x2 is x1
    ctx, calls = _prepare(model, x1, mode, per_layer)
    if impl in (NTKImplementation.AUTO, NTKImplementation.FACTORIZED):
        _plan_factorized(ctx, calls)
        if impl is NTKImplementation.AUTO:
            impl = NTKImplementation.FACTORIZED if ctx.layers else NTKImplementation.JACOBIAN
    runner = _IMPLEMENTATIONS[impl]

    xa = x1
    xb = x1 if symmetric else x2
    n1, n2, o = xa.shape[0], xb.shape[0], ctx.n_out
    c = ctx.chunk = chunk_size or runner.chunk(ctx)
    r1 = [(i, min(i + c, n1)) for i in range(0, n1, c)]
    r2 = r1 if symmetric else [(j, min(j + c, n2)) for j in range(0, n2, c)]
    shape = {"full": (n1 * o, n2 * o), "trace": (n1, n2), "diagonal": (o, n1, n2)}[mode]
    keys = ctx.groups if per_layer else [""]
    outs = {k: _empty(shape, ctx.dtype, ctx.device) for k in keys}

    cache: dict[tuple[int, int], Any] = {}
    cached = [0]

    def feats(side: int, i: int) -> Any:
        if (side, i) in cache:
            return cache[(side, i)]
        lo, hi = (r1 if side == 1 else r2)[i]
        f = runner.features(ctx, (xa if side == 1 else xb)[lo:hi])
        size = _bytes(f)
        if cached[0] + size <= _CACHE_BYTES:
            cache[(side, i)] = f
            cached[0] += size
        return f

    side2 = 1 if symmetric else 2
    for i, (a0, a1) in enumerate(r1):
        f1 = feats(1, i)
        for j in range(i if symmetric else 0, len(r2)):
            b0, b1 = r2[j]
            f2 = f1 if (symmetric and i == j) else feats(side2, j)
            for k, b in runner.block(ctx, f1, f2).items():
                out = outs[k]
                if mode == "full":
                    v = out.view(n1, o, n2, o)
                    b4 = b.view(a1 - a0, o, b1 - b0, o)
                    v[a0:a1, :, b0:b1, :] = b4
                    if symmetric and i != j:
                        v[b0:b1, :, a0:a1, :] = b4.permute(2, 3, 0, 1)
                elif mode == "trace":
                    out[a0:a1, b0:b1] = b
                    if symmetric and i != j:
                        out[b0:b1, a0:a1] = b.T
                else:
                    out[:, a0:a1, b0:b1] = b
                    if symmetric and i != j:
                        out[:, b0:b1, a0:a1] = b.transpose(1, 2)
        if not symmetric:  # rows of x1 are visited once
            cache.pop((1, i), None)

    result = {}
    for k, out in outs.items():
        if centered:
            _center(out, mode, n1, n2, o)
        if mode == "full":
            out = out.view(n1, o, n2, o).permute(0, 2, 1, 3)
        elif mode == "diagonal":
            out = out.permute(1, 2, 0)
        result[k] = out
    return result if per_layer else result[""]
