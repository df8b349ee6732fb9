"""Named starting points for `interp train PRESET`.

`mod-add` is the Nanda et al. (2023) mainline recipe exactly (ANCHORS §1). `demo` is a
smaller, faster variant that groks on 2 CPU cores in a few minutes. `demo-memorize` is
the memorization control: the demo with every answer replaced by a random one and no
weight decay, so a lookup table is the only solution and `circuit_score` must stay low.
`mod-add-fast` is the same task, training split and model as `mod-add` with the fastest
recipe measured in docs/benchmarks.md (Grokfast EMA + ⊥Grad, lr 3e-3, weight decay 1): 99 %
test accuracy in ~400 steps instead of thousands. ⊥Grad removes the gradient's radial part,
so weight decay alone would keep shrinking the weights after the circuit has formed, and
accuracy collapsed a few hundred steps later on every seed tried. A floor on the total
weight norm (`train.weight_norm_floor = 1.25`: 1.25x its initial value, binding once the
norm has first risen past it, which it does in the first ~100 steps) stops the shrinking
there; the circuit then holds (5 seeds stable to 1,500 steps, docs/benchmarks.md). A floor at
the initial norm (1.0) still let loss spikes through (test accuracy 0.77 for one checkpoint
on seed 999, 0.96 at the end on seed 1000). The preset sets aside 10 % of the held-out pairs
as a validation split and, as a convenience, stops once validation accuracy has stayed
>= 99 % for 4 checkpoints (100 steps); `--set train.stop_at_val_acc=0` trains on.

`two-hop` and `comparison` are the small-scale CPU versions of Wang et al. (2024)
(ANCHORS §2): |E| = 100, phi = 7.2, a 4-layer pre-LN transformer with tied embeddings,
AdamW with weight decay and clipped gradients, minibatches of 128. `two-hop` runs 30k steps
(~35 min on one idle core): test-ID first reaches 95 % at ~14k and stays >= 95 % over
25k-30k (docs/entity_tasks.md); at 10k it is ~85 %. Its 10 % OOD atomic facts (Wang et al.
use 5 % at 20x the entities) give 95 test-OOD examples instead of 19, enough for a 95 %
interval of at most +-5 points at the near-chance accuracy OOD stays at.
"""

from __future__ import annotations

from dataclasses import replace

from interp.config import ModelConfig, RunConfig, TaskConfig, TrainConfig

PRESETS: dict[str, RunConfig] = {
    "mod-add": RunConfig(
        name="mod-add",
        task=TaskConfig(operation="add", p=113, train_frac=0.3, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, act_fn="relu",
                          normalization="none", seed=999),
        train=TrainConfig(steps=40_000, lr=1e-3, weight_decay=1.0, beta1=0.9, beta2=0.98,
                          warmup_steps=10, batch_size=0, ckpt_every=100, ckpt_log_until=1000),
    ),
    "demo": RunConfig(
        name="demo",
        task=TaskConfig(operation="add", p=59, train_frac=0.4, split_seed=598),
        model=ModelConfig(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512, act_fn="relu",
                          normalization="none", seed=999),
        train=TrainConfig(steps=1_500, lr=3e-3, weight_decay=1.0, beta1=0.9, beta2=0.98,
                          warmup_steps=10, batch_size=0, ckpt_every=25, ckpt_log_until=200),
    ),
}
PRESETS["mod-add-fast"] = RunConfig(
    name="mod-add-fast",
    task=replace(PRESETS["mod-add"].task, val_frac=0.1),
    model=PRESETS["mod-add"].model,
    train=TrainConfig(steps=1_500, lr=3e-3, weight_decay=1.0, beta1=0.9, beta2=0.98,
                      warmup_steps=10, batch_size=0, grad_filter="ema", grokfast_alpha=0.98,
                      grokfast_lamb=2.0, loss="cross_entropy", orthogonal_grad=True,
                      weight_norm_floor=1.25, ckpt_every=25, ckpt_log_until=100,
                      stop_at_val_acc=0.99, stop_patience=4),
)
PRESETS["demo-memorize"] = RunConfig(
    name="demo-memorize",
    task=replace(PRESETS["demo"].task, shuffle_labels=True),
    model=PRESETS["demo"].model,
    train=replace(PRESETS["demo"].train, weight_decay=0.0),
)


_ENTITY_MODEL = ModelConfig(n_layers=4, d_model=128, n_heads=4, d_head=32, d_mlp=512, act_fn="gelu",
                            normalization="LN", tied_embeddings=True, seed=0)
PRESETS["two-hop"] = RunConfig(
    name="two-hop",
    task=TaskConfig(kind="two_hop", n_entities=100, n_relations=20, out_degree=10, ood_frac=0.1,
                    phi=7.2, test_id_frac=0.1, split_seed=0),
    model=_ENTITY_MODEL,
    train=TrainConfig(steps=30_000, lr=1e-3, weight_decay=1.0, beta1=0.9, beta2=0.98, warmup_steps=100,
                      batch_size=128, grad_clip=1.0, ckpt_every=200, ckpt_log_until=1000),
)
# Comparison: the same optimizer, weaker weight decay, 10k steps, denser checkpoints.
PRESETS["comparison"] = RunConfig(
    name="comparison",
    task=TaskConfig(kind="comparison", n_entities=100, n_attributes=10, n_values=20, ood_frac=0.1,
                    phi=7.2, test_id_frac=0.1, split_seed=0),
    model=_ENTITY_MODEL,
    train=replace(PRESETS["two-hop"].train, steps=10_000, weight_decay=0.3, ckpt_every=100),
)


def preset_names() -> list[str]:
    return sorted(PRESETS)
