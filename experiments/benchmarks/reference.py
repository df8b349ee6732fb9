"""A plain-PyTorch reference of the `mod-add` architecture, computing every position.

This is what a researcher would write without the project: token + position embeddings,
one block of 4-head causal attention and a ReLU MLP (no LayerNorm), an unembedding, the
loss at the last position, `torch.optim.AdamW`. It starts from the very same initial
weights as the project's model (copied from `interp.model.build_model`), so the two
train the same function and any speed difference is the implementation's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.config import RunConfig
from interp.model import build_model, state_dict


class ReferenceTransformer(nn.Module):
    """1-layer attention + MLP transformer without LayerNorm, full-sequence forward."""

    def __init__(self, d_vocab: int, d_vocab_out: int, n_ctx: int, d_model: int, n_heads: int, d_head: int, d_mlp: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.embed = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Embedding(n_ctx, d_model)
        self.q = nn.Linear(d_model, n_heads * d_head)
        self.k = nn.Linear(d_model, n_heads * d_head)
        self.v = nn.Linear(d_model, n_heads * d_head)
        self.o = nn.Linear(n_heads * d_head, d_model)
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.fc_out = nn.Linear(d_mlp, d_model)
        self.unembed = nn.Linear(d_model, d_vocab_out, bias=False)  # the project's head bias is a zero buffer
        mask = torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        batch, seq = tokens.shape
        x = self.embed(tokens) + self.pos.weight[:seq]  # [batch, pos, d_model]
        q = self.q(x).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(x).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(x).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
        scores = scores.masked_fill(self.causal_mask[:seq, :seq], float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, -1)
        x = x + self.o(z)
        x = x + self.fc_out(F.relu(self.fc_in(x)))
        return self.unembed(x)  # [batch, pos, d_vocab_out]


#: native parameter name (suffix) -> reference parameter name
_NATIVE_TO_REFERENCE = {
    "tok_embed": "embed", "pos": "pos", "attn.q": "q", "attn.k": "k", "attn.v": "v", "attn.o": "o",
    "mlp.fc_in": "fc_in", "mlp.fc_out": "fc_out", "head": "unembed",
}


def _reference_name(native_name: str) -> str:
    parts = [p for p in native_name.split(".") if p not in ("_original_component", "layers", "0")]
    *module, leaf = parts
    return f"{_NATIVE_TO_REFERENCE['.'.join(module)]}.{leaf}"


def reference_from_config(config: RunConfig, device: str | torch.device = "cpu") -> ReferenceTransformer:
    """The reference model initialized with exactly the project's initial weights for `config`."""
    m, t = config.model, config.task
    if m.n_layers != 1 or m.normalization != "none" or m.act_fn != "relu":
        raise ValueError("the reference covers the 1-layer, no-LayerNorm, ReLU shape of mod-add only")
    model = ReferenceTransformer(t.d_vocab, t.d_vocab_out, t.n_ctx, m.d_model, m.n_heads, m.d_head, m.d_mlp)
    bridge = build_model(m, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
    init = {_reference_name(k): v for k, v in state_dict(bridge).items()}
    model.load_state_dict(init)
    return model.to(device)


def make_optimizer(model: nn.Module, config: RunConfig):
    train = config.train
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay,
                            betas=(train.beta1, train.beta2))
    warmup = train.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / warmup, 1.0) if warmup > 0 else 1.0)
    return opt, sched


def reference_step(model: nn.Module, opt, sched, tokens: Tensor, labels: Tensor) -> Tensor:
    """One full-batch step; the loss is read at the last position (float32, as one would write it)."""
    logits = model(tokens)[:, -1]
    loss = F.cross_entropy(logits, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss


@dataclass
class GrokResult:
    grok_step: int | None  # first evaluated step with test accuracy >= target
    seconds: float  # wall-clock to grok_step (or to the end), evaluation included
    steps_run: int
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, test_acc)


def train_reference_to_grok(config: RunConfig, *, target: float = 0.99, max_steps: int = 50_000,
                            eval_every: int = 50, log=None, device: str = "cpu") -> GrokResult:
    """Train the reference with `config`'s optimizer settings until test accuracy >= target."""
    from interp.tasks import build_task

    task = build_task(config.task)
    model = reference_from_config(config, device)
    opt, sched = make_optimizer(model, config)
    train_x, train_y = (t.to(device) for t in task.split("train"))
    test_x, test_y = (t.to(device) for t in task.split("test"))
    start = time.perf_counter()
    history: list[tuple[int, float, float]] = []
    for step in range(1, max_steps + 1):
        reference_step(model, opt, sched, train_x, train_y)
        if step % eval_every == 0:
            with torch.inference_mode():
                acc = float((model(test_x)[:, -1].argmax(-1) == test_y).double().mean())
            elapsed = time.perf_counter() - start
            history.append((step, elapsed, acc))
            if log is not None:
                log(f"step {step} t {elapsed:.1f}s test_acc {acc:.4f}")
            if acc >= target:
                return GrokResult(step, elapsed, step, history)
    return GrokResult(None, time.perf_counter() - start, max_steps, history)
