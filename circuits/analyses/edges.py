"""The model's computational graph as edges between components, and a forward pass in which
every edge can be switched between its clean and its corrupted value.

Nodes (writers into the residual stream): the embedding, each attention head, each MLP.
Readers: each head's input (Q, K and V together), each MLP's input, and the unembedding at
the answer position. Every writer before a reader feeds it through the residual stream, so
an edge is (writer, reader, position): the writer's output at that position, as read by
the reader at that position (a head reads its input at every position up to the query, so
its input edges are indexed by position; heads in the last layer feed the answer only
through their query position, and the last layer's MLP only there: edges that cannot reach
the answer are left out).

`masked_answer_logits` computes the answer logits with each reader's input rebuilt as

    input_v = input_v(corrupt run) + sum_u m_uv * (out_u(this run) - out_u(corrupt run)),

so m = 1 everywhere is the clean run, m = 0 everywhere the corrupt one, and any 0/1 mask is
the "everything outside the circuit ablated" run of ACDC and TransformerLens's faithfulness
check (an edge kept carries the value its writer computes from its own, partly ablated,
inputs). The gradient of the metric with respect to m at m = 1 is edge attribution patching
(Syed et al. 2023): (out_u(clean) - out_u(corrupt)) . d metric / d input_v. With
`neuron_mask`, the hidden units of a one-layer model's MLP are switched the same way.

The forward uses the bridge's own parameters (`interp.model.forward.unwrapped`) and equals the
hooked forward (`tests/circuits/test_circuits.py`); it covers the architectures the fast paths
cover (learned positions, no soft caps or rotary, one K/V head per query head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.model.build import native_model
from interp.model.forward import mlp_hidden, mlp_output, supports_fast_path, unembed, unwrapped


@dataclass(frozen=True)
class EdgeGraph:
    """The edges of a model with `n_layers` × `n_heads` heads (and MLPs unless attention-only)
    over `n_pos` positions, the answer read at `answer_pos`. Edge i is
    (writers[edge_writer[i]], readers[edge_reader[i]], edge_pos[i])."""

    n_layers: int
    n_heads: int
    n_pos: int
    has_mlp: bool
    answer_pos: int
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    edge_writer: Tensor
    edge_reader: Tensor
    edge_pos: Tensor

    @property
    def n_edges(self) -> int:
        return len(self.edge_writer)

    def n_upstream(self, layer: int, reader: str) -> int:
        """Writers before layer `layer`'s attention (`reader="attn"`) or MLP (`"mlp"`)."""
        per_layer = self.n_heads + int(self.has_mlp)
        return 1 + per_layer * layer + (self.n_heads if reader == "mlp" else 0)

    def edge_names(self, position_names: tuple[str, ...] = ()) -> list[str]:
        def pos(p: int) -> str:
            return position_names[p] if p < len(position_names) else str(p)

        return [
            f"{self.writers[w]}→{self.readers[r]}@{pos(p)}"
            for w, r, p in zip(
                self.edge_writer.tolist(), self.edge_reader.tolist(), self.edge_pos.tolist()
            )
        ]

    def split(self, mask: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """A mask over the edges, [batch, edge], as the forward's per-reader blocks: per layer
        the heads' [batch, upstream, head, pos], the MLP's [batch, upstream, pos] (answer
        position only in the last layer), and the logits' [batch, writer]."""
        attn, mlp, start = [], [], 0
        batch = mask.shape[0]
        for layer in range(self.n_layers):
            n = self.n_upstream(layer, "attn")
            size = n * self.n_heads * self.n_pos
            attn.append(mask[:, start : start + size].reshape(batch, n, self.n_heads, self.n_pos))
            start += size
            if self.has_mlp:
                n = self.n_upstream(layer, "mlp")
                n_pos = 1 if layer == self.n_layers - 1 else self.n_pos
                mlp.append(mask[:, start : start + n * n_pos].reshape(batch, n, n_pos))
                start += n * n_pos
        logits = mask[:, start : start + len(self.writers)]
        assert start + len(self.writers) == self.n_edges
        return attn, mlp, logits


def edge_graph(model, n_pos: int, answer_pos: int = -1) -> EdgeGraph:
    """The graph of `model` (a TransformerBridge) on inputs of `n_pos` positions."""
    cfg = model.cfg
    n_layers, n_heads, has_mlp = cfg.n_layers, cfg.n_heads, not native_model(model).cfg.attn_only
    answer_pos = answer_pos % n_pos
    writers, readers = ["embed"], []
    for layer in range(n_layers):
        writers += [f"a{layer}.{h}" for h in range(n_heads)] + [f"m{layer}"] * has_mlp
        readers += [f"a{layer}.{h}" for h in range(n_heads)] + [f"m{layer}"] * has_mlp
    readers.append("logits")
    w, r, p = [], [], []
    reader = 0
    per_layer = n_heads + int(has_mlp)
    for layer in range(n_layers):
        n = 1 + per_layer * layer
        for u in range(n):  # order of EdgeGraph.split: [upstream, head, pos]
            for h in range(n_heads):
                for pos in range(n_pos):
                    w.append(u), r.append(reader + h), p.append(pos)
        if has_mlp:
            positions = [answer_pos] if layer == n_layers - 1 else range(n_pos)
            for u in range(n + n_heads):
                for pos in positions:
                    w.append(u), r.append(reader + n_heads), p.append(pos)
        reader += per_layer
    for u in range(len(writers)):
        w.append(u), r.append(reader), p.append(answer_pos)
    return EdgeGraph(
        n_layers,
        n_heads,
        n_pos,
        has_mlp,
        answer_pos,
        tuple(writers),
        tuple(readers),
        torch.tensor(w),
        torch.tensor(r),
        torch.tensor(p),
    )


def supports_edges(model) -> bool:
    """Whether `masked_answer_logits` covers this architecture."""
    native = native_model(model)
    return supports_fast_path(native) and not native.cfg.gated_mlp


@dataclass(frozen=True)
class RunCache:
    """What the masked forward needs of a (corrupt) run: each writer's output
    [batch, pos, writer, d_model], each reader point's residual, the MLP hidden units."""

    writers: Tensor
    resid_pre: list[Tensor]
    resid_mid: list[Tensor]
    resid_final: Tensor
    hidden: list[Tensor]

    def repeat(self, times: int) -> RunCache:
        """The cache of `times` copies of the batch, one after the other."""

        def rep(x: Tensor) -> Tensor:
            return x.repeat(times, *[1] * (x.dim() - 1))

        return RunCache(
            rep(self.writers),
            [rep(x) for x in self.resid_pre],
            [rep(x) for x in self.resid_mid],
            rep(self.resid_final),
            [rep(x) for x in self.hidden],
        )


def _heads(block, x: Tensor, n_heads: int) -> Tensor:
    """Causal attention with one input per head, x [batch, pos, head, d_model]; returns each
    head's output in the residual stream [batch, pos, head, d_model] (b_O not included)."""
    attn = unwrapped(block.attn)
    q, k, v, o = (unwrapped(getattr(attn, name)) for name in ("q", "k", "v", "o"))
    x = unwrapped(block.ln1)(x)

    def project(linear) -> Tensor:
        weight = linear.weight.view(n_heads, -1, linear.weight.shape[-1])  # [head, d_head, d]
        out = torch.einsum("bphd,hed->bhpe", x, weight)
        return out if linear.bias is None else out + linear.bias.view(1, n_heads, 1, -1)

    z = F.scaled_dot_product_attention(
        project(q), project(k), project(v), is_causal=True, scale=1.0 / attn.scale
    )  # [batch, head, pos, d_head]
    w_o = o.weight.view(o.weight.shape[0], n_heads, -1)  # [d, head, d_head]
    return torch.einsum("bhpe,dhe->bphd", z, w_o)


def masked_answer_logits(
    model,
    graph: EdgeGraph,
    tokens: Tensor,
    corrupt: RunCache | None = None,
    mask: Tensor | None = None,
    neuron_mask: Tensor | None = None,
    record: bool = False,
) -> tuple[Tensor, RunCache | None]:
    """Answer-position logits [batch, d_vocab_out] with the edges mixed by `mask` (one value
    per edge of `graph`, 1 = clean; [edge], or [batch, edge] for a mask per example) against
    `corrupt` (see the module docstring); `neuron_mask` likewise over the hidden units.
    Without `corrupt`, the plain forward. With `record`, also this run's `RunCache`."""
    native = native_model(model)
    mixing = corrupt is not None
    batch, n_pos = tokens.shape
    if mixing:
        assert mask is not None
        attn_masks, mlp_masks, logit_mask = graph.split(mask.expand(batch, -1))
    embed, pos = unwrapped(native.tok_embed), unwrapped(native.pos)
    resid = embed.weight[tokens] + pos.weight[:n_pos]
    outs = [resid]  # each writer's output [batch, pos, d_model]
    resid_pre, resid_mid, hidden_kept = [], [], []
    ans = graph.answer_pos
    for layer, block in enumerate(native.layers):
        block = unwrapped(block)
        b_o = unwrapped(unwrapped(block.attn).o).bias
        if mixing:
            delta = torch.stack(outs, 2) - corrupt.writers[:, :, : len(outs)]
            x = corrupt.resid_pre[layer][:, :, None] + torch.einsum(
                "bpud,buhp->bphd", delta, attn_masks[layer]
            )
        else:
            x = resid[:, :, None].expand(-1, -1, graph.n_heads, -1)
        resid_pre.append(resid)
        heads = _heads(block, x, graph.n_heads)
        outs += list(heads.unbind(2))
        resid = resid + heads.sum(2) + (0 if b_o is None else b_o)
        if graph.has_mlp:
            last = layer == graph.n_layers - 1
            sl = slice(ans, ans + 1) if last else slice(None)
            if mixing:
                delta = torch.stack(outs, 2)[:, sl] - corrupt.writers[:, sl, : len(outs)]
                x = corrupt.resid_mid[layer] + torch.einsum(
                    "bpud,bup->bpd", delta, mlp_masks[layer]
                )
            else:
                x = resid[:, sl]
            resid_mid.append(resid[:, sl])
            hidden = mlp_hidden(block, x)
            if neuron_mask is not None and mixing:
                knob = neuron_mask if neuron_mask.dim() == 1 else neuron_mask[:, None]
                hidden = corrupt.hidden[layer] + knob * (hidden - corrupt.hidden[layer])
            hidden_kept.append(hidden)
            out = mlp_output(block, hidden)
            if last:  # positions other than the answer's cannot reach it
                out = torch.zeros_like(resid).index_copy(1, torch.tensor([ans]), out)
            outs.append(out)
            resid = resid + out
    if mixing:
        delta = torch.stack(outs, 1)[:, :, ans] - corrupt.writers[:, ans]
        final = corrupt.resid_final + torch.einsum("bud,bu->bd", delta, logit_mask)
    else:
        final = resid[:, ans]
    logits = unembed(native, final)
    cache = None
    if record:
        cache = RunCache(torch.stack(outs, 2), resid_pre, resid_mid, final, hidden_kept)
    return logits, cache


def mlp_out_weight(model) -> Tensor:
    """The last layer's MLP output weight [d_model, hidden]."""
    block = unwrapped(native_model(model).layers[-1])
    return unwrapped(unwrapped(block.mlp).fc_out).weight


def logits_from_final(model, final: Tensor) -> Tensor:
    """Logits from the final residual at the answer position [batch, d_model]."""
    return unembed(native_model(model), final)
