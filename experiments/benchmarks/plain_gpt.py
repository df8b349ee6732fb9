"""A plain PyTorch causal GPT (no TransformerLens): the reference the walk benchmark measures
the project's trainer against. Pre-LN blocks, learned positions, causal attention through
`F.scaled_dot_product_attention`, a GELU MLP and an untied unembedding: the shape of the
`graph-walk` preset's model, written as one would write it by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.config import RunConfig


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * n_heads * d_head)
        self.out = nn.Linear(n_heads * d_head, d_model)
        self.fc_in, self.fc_out = nn.Linear(d_model, d_mlp), nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = (
            self.qkv(self.ln1(x)).view(b, s, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        )
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(z.transpose(1, 2).reshape(b, s, -1))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, config: RunConfig):
        super().__init__()
        m, t = config.model, config.task
        self.embed = nn.Embedding(t.d_vocab, m.d_model)
        self.pos = nn.Embedding(t.n_ctx, m.d_model)
        self.blocks = nn.ModuleList(
            Block(m.d_model, m.n_heads, m.d_head, m.d_mlp) for _ in range(m.n_layers)
        )
        self.ln_final = nn.LayerNorm(m.d_model)
        self.unembed = nn.Linear(m.d_model, t.d_vocab_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))
