"""Several seeds of one small model trained at once, in one process, with stacked weights.

Every parameter gets a leading `seed` axis and one batched forward (the answer-position
shortcut of `interp.model.answer_logits`, written with batched matmuls) serves all seeds.
AdamW, weight decay and the Grokfast EMA are elementwise, so one optimizer over the
stacked tensors is exactly S independent optimizers; the loss is the *sum* of the per-seed
mean losses, so seed i's gradient is exactly its single-run gradient. ⊥Grad projects per
seed. On a GPU this turns S small launches per op into one (throughput grows with S until
the device is busy); on a CPU the gain is smaller (the matmuls are already large).

Scope: the 1-layer, no-LayerNorm shape of the modular presets (`mod-add`, `demo`), full
batch, no gradient clipping and no MA filter. `tests/test_multiseed.py` checks seed i
follows the loss trajectory of a single-seed `Trainer` run.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.config import RunConfig
from interp.metrics import cross_entropy_f64, stablemax_cross_entropy_f64
from interp.model import build_model, native_model, state_dict
from interp.tasks import build_task
from interp.training import resolve_device

#: stacked name -> native state-dict key (the same tensors `interp.model.state_dict` saves)
_NATIVE = {
    "W_E": "tok_embed.weight", "W_pos": "pos.weight",
    "W_Q": "attn.q.weight", "b_Q": "attn.q.bias", "W_K": "attn.k.weight", "b_K": "attn.k.bias",
    "W_V": "attn.v.weight", "b_V": "attn.v.bias", "W_O": "attn.o.weight", "b_O": "attn.o.bias",
    "W_in": "mlp.fc_in.weight", "b_in": "mlp.fc_in.bias", "W_out": "mlp.fc_out.weight",
    "b_out": "mlp.fc_out.bias", "W_U": "head.weight",
}


def _short(native_key: str) -> str:
    return ".".join(p for p in native_key.split(".") if p not in ("_original_component", "layers", "0"))


class MultiSeedTrainer:
    """`seeds` copies of `config`'s model (model.seed = each seed), trained in lockstep."""

    def __init__(self, config: RunConfig, seeds: list[int], device: str | None = None):
        m, t, train = config.model, config.task, config.train
        if m.n_layers != 1 or m.normalization != "none" or m.tied_embeddings:
            raise ValueError("MultiSeedTrainer: supports 1-layer models without LayerNorm or tied embeddings")
        if train.batch_size != 0 or train.grad_clip > 0 or train.grad_filter == "ma" or train.weight_norm_floor:
            raise ValueError("MultiSeedTrainer: full batch only, no grad_clip, no MA filter, no weight_norm_floor")
        self.config, self.seeds = config, list(seeds)
        self.device = resolve_device(device or train.device)
        self.task = build_task(t)
        act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu}
        if m.act_fn not in act:
            raise ValueError(f"MultiSeedTrainer: act_fn {m.act_fn!r} not supported")
        self.act = act[m.act_fn]
        per_seed = []
        for seed in self.seeds:
            bridge = build_model(replace(m, seed=seed), d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
            per_seed.append({_short(k): v for k, v in state_dict(bridge).items()})
        self.scale = float(native_model(bridge).layers[0].attn.scale)
        self.n_heads, self.d_head = m.n_heads, m.d_head
        self.params = {
            name: torch.nn.Parameter(torch.stack([w[key] for w in per_seed]).to(self.device))
            for name, key in _NATIVE.items()
        }
        self.optimizer = torch.optim.AdamW(
            self.params.values(), lr=train.lr, weight_decay=train.weight_decay, betas=(train.beta1, train.beta2)
        )
        warmup = train.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(step / warmup, 1.0) if warmup > 0 else 1.0
        )
        self.ema: dict[str, Tensor] = {}
        index = self.task.train_index
        self.train_tokens = self.task.tokens[index].to(self.device)
        self.train_labels = self.task.labels[index].to(self.device)
        self.step = 0

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def logits(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "seed batch d_vocab_out"]:
        """Answer-position logits of every seed (the shortcut of `interp.model.answer_logits`)."""
        w = self.params
        n_seeds, batch, seq = self.n_seeds, tokens.shape[0], tokens.shape[1]
        positions = torch.arange(seq, device=tokens.device)
        table = w["W_E"][:, None] + w["W_pos"][:, :seq, None]  # [seed, pos, d_vocab, d_model]
        flat = table.reshape(n_seeds, -1, table.shape[-1])
        k = (torch.baddbmm(w["b_K"][:, None], flat, w["W_K"].transpose(1, 2))).view(n_seeds, seq, -1, w["b_K"].shape[-1])
        v = (torch.baddbmm(w["b_V"][:, None], flat, w["W_V"].transpose(1, 2))).view(n_seeds, seq, -1, w["b_V"].shape[-1])
        k, v = k[:, positions, tokens], v[:, positions, tokens]  # [seed, batch, pos, H*dh]
        last = table[:, -1]  # [seed, d_vocab, d_model]
        q = torch.baddbmm(w["b_Q"][:, None], last, w["W_Q"].transpose(1, 2))[:, tokens[:, -1]]  # [seed, batch, H*dh]
        resid = last[:, tokens[:, -1]]  # [seed, batch, d_model]
        q = q.view(n_seeds, batch, self.n_heads, self.d_head)
        k = k.view(n_seeds, batch, seq, self.n_heads, self.d_head)
        v = v.view(n_seeds, batch, seq, self.n_heads, self.d_head)
        pattern = (torch.einsum("sbhd,sbkhd->sbhk", q, k) / self.scale).softmax(-1)  # last query sees all keys
        z = torch.einsum("sbhk,sbkhd->sbhd", pattern, v).reshape(n_seeds, batch, -1)
        resid = resid + torch.baddbmm(w["b_O"][:, None], z, w["W_O"].transpose(1, 2))
        post = self.act(torch.baddbmm(w["b_in"][:, None], resid, w["W_in"].transpose(1, 2)))
        resid = resid + torch.baddbmm(w["b_out"][:, None], post, w["W_out"].transpose(1, 2))
        return resid @ w["W_U"].transpose(1, 2)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        fn = stablemax_cross_entropy_f64 if self.config.train.loss == "stablemax" else cross_entropy_f64
        return torch.stack([fn(logits[i], labels) for i in range(self.n_seeds)])

    def train_step(self) -> Float[Tensor, " seed"]:
        """One full-batch step of every seed; returns the per-seed training losses."""
        train = self.config.train
        losses = self._loss(self.logits(self.train_tokens), self.train_labels)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        with torch.no_grad():
            for name, param in self.params.items():
                grad = param.grad
                if train.orthogonal_grad:  # ⊥Grad per seed: dims after the seed axis
                    dims = tuple(range(1, param.ndim))
                    coef = (grad * param).sum(dims, keepdim=True) / (param * param).sum(dims, keepdim=True).clamp(min=1e-30)
                    grad.sub_(param * coef)
                if train.grad_filter == "ema":
                    if name not in self.ema:
                        self.ema[name] = grad.clone()
                    else:
                        self.ema[name].mul_(train.grokfast_alpha).add_(grad, alpha=1 - train.grokfast_alpha)
                    grad.add_(self.ema[name], alpha=train.grokfast_lamb)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return losses.detach()

    @torch.inference_mode()
    def accuracy(self, split: str = "test") -> Float[Tensor, " seed"]:
        tokens, labels = (x.to(self.device) for x in self.task.split(split))
        return (self.logits(tokens).argmax(-1) == labels).double().mean(-1)

    def seed_state_dict(self, i: int) -> dict[str, Tensor]:
        """Seed i's weights under the native names (loadable with `interp.model.load_state`)."""
        bridge_keys = {_short(k): k for k in _native_keys(self.config)}
        return {bridge_keys[key]: self.params[name][i].detach().cpu().contiguous() for name, key in _NATIVE.items()}


def _native_keys(config: RunConfig) -> list[str]:
    t = config.task
    return list(state_dict(build_model(config.model, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)))
