"""The training loss of all SGLD chains at once, for `circuits.analyses.llc`.

`chain_loss(model, tokens, labels, loss, forward)` gives w* (the checkpoint's parameters by
name) and `loss_of(stacked) -> [chain]`: `stacked[name]` holds every chain's copy of that
parameter on a leading chain axis, and the chains' losses come back together in one
autograd graph, so one backward pass gives every chain its gradient (chain c's loss reads
only its own copy).

Two ways to compute it, the same function of the parameters:

- **generic**: the family's `forward` through `torch.func.functional_call`, one chain after
  another in the same graph (`chainwise`), for any model of any family.
- **one layer**: the answer-position forward (`Family.forward`, `interp.model.answer_logits`)
  of a one-layer model without normalization (the modular presets, `demo`), written out.
  Two savings, both exact in real arithmetic: the MLP's output map is folded into the
  unembedding (with no LayerNorm between them they compose, so each example costs
  d_mlp × d_vocab_out instead of d_mlp × d_model + d_model × d_vocab_out), and the
  per-example products run on oneDNN's fp32 GEMM where torch ships it
  (`torch.ops.mkldnn._linear_pointwise`, ~2× the default BLAS (MKL) on AVX-512 CPUs that
  MKL does not dispatch to, such as AMD EPYC), else on `F.linear`. It is checked against the
  generic loss at w* for every checkpoint (to `AGREE`) and not used if they differ.

These products are what `--llc` costs: 4 chains × 200 steps × up to 20 checkpoints of a
full-batch forward and backward (docs/circuits.md, Cost).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The one-layer loss must match the generic one at w* to this relative tolerance (float32
#: rounding of a different order of products is ~1e-7 of the loss).
AGREE = 1e-5

ChainLoss = Callable[[dict[str, Tensor]], Tensor]


def chain_loss(
    model, tokens: Tensor, labels: Tensor, loss, forward, fast: bool = True
) -> tuple[dict[str, Tensor], ChainLoss]:
    """(w*, loss_of): the checkpoint's parameters by name (tied weights once) and the chains'
    training loss `loss_of(stacked) -> [chain]` of `loss(forward(model, tokens), labels)`.
    The model is never modified (the chains read a copy). `fast=False` keeps the generic
    path."""
    from torch.func import functional_call

    from interp.model.build import native_model

    # functional_call does not restore every alias of the bridge's wrapped parameters: the
    # chains run on a copy, so the checkpoint's own model is never touched.
    model = copy.deepcopy(model)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.native = native_model(model)

        def forward(self, inputs: Tensor) -> Tensor:
            return forward(model, inputs)

    wrapped = Wrapped()
    params = {k: v.detach() for k, v in wrapped.named_parameters()}

    def one(values: dict[str, Tensor]) -> Tensor:
        return loss(functional_call(wrapped, values, (tokens,)), labels)

    generic = chainwise(one)
    if not (fast and one_layer_applies(model, forward)):
        return params, generic
    names = {id(v): k for k, v in wrapped.named_parameters()}
    layered = OneLayerLoss(native_model(model), names, tokens, labels, loss)
    at_center = {k: v[None] for k, v in params.items()}
    with torch.no_grad():
        reference, ours = float(generic(at_center)[0]), float(layered(at_center)[0])
    agrees = math.isclose(reference, ours, rel_tol=AGREE, abs_tol=1e-12)
    return params, (layered if agrees else generic)


def chainwise(loss_fn: Callable[[dict[str, Tensor]], Tensor]) -> Callable:
    """`loss_of(stacked) -> [chain]` from a one-model `loss_fn`: each chain's loss on its own
    slice, all in one autograd graph (one backward pass for all chains). On CPU this beats
    `torch.func.vmap`, whose batched indexing and matmuls are slower than a loop of plain
    ones (the products are compute-bound either way)."""

    def loss_of(stacked: dict[str, Tensor]) -> Tensor:
        chains = {k: v.unbind(0) for k, v in stacked.items()}  # one backward node per tensor
        n_chains = len(next(iter(chains.values())))
        return torch.stack([loss_fn({k: v[c] for k, v in chains.items()}) for c in range(n_chains)])

    return loss_of


def one_layer_applies(model, forward) -> bool:
    """Whether `OneLayerLoss` computes this model's loss: the default answer-position forward
    of a one-layer, normalization-free model with learned positions and plain attention."""
    from interp.model.build import native_model
    from interp.registry import Family

    native = native_model(model)
    cfg = native.cfg
    if getattr(forward, "__func__", None) is not Family.forward or len(native.layers) != 1:
        return False
    block = native.layers[0]
    plain = (block.ln1, block.ln2, native.ln_out)
    return (
        native.pos is not None
        and cfg.normalization_type is None
        and all(isinstance(getattr(m, "original_component", m), nn.Identity) for m in plain)
        and not cfg.attn_only
        and not cfg.gated_mlp
        and getattr(block.mlp, "ln", None) is None
        and float(cfg.output_logits_soft_cap) <= 0
        and float(block.attn.attn_scores_soft_cap) <= 0
        and block.attn.kv_repeats == 1
        and not cfg.use_local_attn
    )


class OneLayerLoss:
    """The chains' answer-position loss of a one-layer, normalization-free model
    (`chain_loss`): each chain's forward is written out in two dimensions (no chain axis in
    the activations, so no stacking copies), all in one autograd graph. `names` maps the
    model's parameters (by id) to their names in `stacked`; the rest (the unembedding's zero
    bias buffer) are constants."""

    def __init__(self, native: nn.Module, names: dict[int, str], tokens, labels, loss):
        block = native.layers[0]
        attn, mlp = block.attn, block.mlp
        modules = {
            "tok_embed": native.tok_embed,
            "pos": native.pos,
            "q": attn.q,
            "k": attn.k,
            "v": attn.v,
            "o": attn.o,
            "fc_in": mlp.fc_in,
            "fc_out": mlp.fc_out,
            "head": native.head,
        }
        self.roles: dict[str, str | Tensor] = {}
        for role, module in modules.items():
            weight = module.weight
            self.roles[f"{role}.weight"] = names.get(id(weight), weight.detach())
            if role not in ("tok_embed", "pos"):
                bias = getattr(module, "bias", None)
                if bias is None:
                    bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
                self.roles[f"{role}.bias"] = names.get(id(bias), bias.detach())
        self.n_heads, self.d_head, self.scale = attn.n_heads, attn.d_head, float(attn.scale)
        self.act = mlp.act
        self.tokens, self.labels, self.loss = tokens, labels, loss
        onednn = use_onednn(native.tok_embed.weight)
        self.linear = onednn_linear if onednn else F.linear
        if onednn and self.act in (F.relu, torch.relu):
            self.mlp_in = onednn_relu_linear
        else:
            self.mlp_in = lambda x, weight, bias: self.act(self.linear(x, weight, bias))
        seq, d_vocab = tokens.shape[1], native.tok_embed.weight.shape[0]
        # Row indices, position-major: each example's (position, token) row of the key and
        # value tables [pos*batch], and its score row (query token, position, token).
        self.keys = (torch.arange(seq)[:, None] * d_vocab + tokens.T).flatten()
        self.scored = (tokens[:, -1] * (seq * d_vocab) + self.keys.view(seq, -1)).flatten()

    def __call__(self, stacked: dict[str, Tensor]) -> Tensor:
        return chainwise(self.chain)(stacked)

    def chain(self, params: dict[str, Tensor]) -> Tensor:
        """One chain's loss, from its parameters by name."""

        def get(role: str) -> Tensor:
            value = self.roles[role]
            return params[value] if isinstance(value, str) else value

        linear, tokens = self.linear, self.tokens
        batch, seq = tokens.shape
        n_heads, d_head = self.n_heads, self.d_head
        embed = get("tok_embed.weight")
        d_vocab, d_model = embed.shape
        # Layer 0 sees (position, token) embeddings only: the keys and values of every pair,
        # the answer position's query of every token, and every query-key score are tables
        # an example looks its rows up in (position-major: the softmax and the sum over
        # positions run over the outer axis, which vectorizes).
        table = embed + get("pos.weight")[:seq, None]  # [pos, d_vocab, d_model]
        pairs = table.flatten(0, 1)
        k = linear(pairs, get("k.weight"), get("k.bias")).view(-1, n_heads, d_head)
        v = linear(pairs, get("v.weight"), get("v.bias"))
        q = linear(table[seq - 1], get("q.weight"), get("q.bias")).view(-1, n_heads, d_head)
        scores = q.transpose(0, 1) @ k.permute(1, 2, 0)  # [head, query token, pos*d_vocab]
        # The answer position attends to every position (causal or not).
        scores = scores.flatten(1).index_select(1, self.scored).view(n_heads, seq, batch)
        pattern = (scores / self.scale).softmax(dim=1).permute(1, 2, 0)  # [pos, batch, head]
        v = v.index_select(0, self.keys).view(seq, batch, n_heads, d_head)
        z = (pattern[..., None] * v).sum(0).flatten(1)  # [batch, d_model]
        resid = table[seq - 1].index_select(0, tokens[:, -1])
        resid = resid + linear(z, get("o.weight"), get("o.bias"))
        # logits = (resid + hidden W_outᵀ + b_out) W_Uᵀ + b_U, with W_U W_out and W_U b_out
        # folded: the MLP's output never materializes in d_model.
        w_u, w_out = get("head.weight"), get("fc_out.weight")
        b_direct = w_u @ get("fc_out.bias") + get("head.bias")
        hidden = self.mlp_in(resid, get("fc_in.weight"), get("fc_in.bias"))
        logits = linear(hidden, w_u @ w_out, None) + linear(resid, w_u, b_direct)
        return self.loss(logits, self.labels)


def use_onednn(tensor: Tensor) -> bool:
    """Whether `onednn_linear` can run: a float32 CPU tensor and a torch with oneDNN's linear."""
    return (
        tensor.device.type == "cpu"
        and tensor.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _gemm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a [m, k] · b [n, k]ᵀ (+ bias) on oneDNN (strided operands are read in place)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """`F.linear` with every product (forward and both gradients) on oneDNN's GEMM."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return _gemm(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _linear_grads(ctx.needs_input_grad, *ctx.saved_tensors, grad)


class _OneDNNReluLinear(torch.autograd.Function):
    """relu(`F.linear`) with the relu fused into oneDNN's GEMM (its gradient masks by the
    output)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1], output)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, output = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad, output, 0)
        return _linear_grads(ctx.needs_input_grad, x, weight, grad)


def _linear_grads(needed, x: Tensor, weight: Tensor, grad: Tensor):
    """The gradients of x weightᵀ + bias from the output's, on oneDNN."""
    grad_x = _gemm(grad, weight.t()) if needed[0] else None
    grad_w = None
    if needed[1]:
        # gradᵀ x, with the wider operand in oneDNN's weight slot (faster when transposed)
        wide = grad.shape[1] >= x.shape[1]
        grad_w = _gemm(x.t(), grad.t()).t() if wide else _gemm(grad.t(), x.t())
    grad_b = grad.sum(0) if needed[2] else None
    return grad_x, grad_w, grad_b


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear(x, weight, bias)` for 2-D `x` on oneDNN's GEMM (`use_onednn`)."""
    return _OneDNNLinear.apply(x, weight, bias)


def onednn_relu_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """relu(`onednn_linear(x, weight, bias)`), fused."""
    return _OneDNNReluLinear.apply(x, weight, bias)
