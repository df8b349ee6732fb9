"""Named starting points for `interp train PRESET`.

`mod-add` is the Nanda et al. (2023) mainline recipe exactly (ANCHORS §1). `demo` is a
smaller, faster variant that groks on 2 CPU cores in a few minutes. `demo-memorize` is
the memorization control: the demo with every answer replaced by a random one and no
weight decay, so a lookup table is the only solution and `circuit_score` must stay low.
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
PRESETS["demo-memorize"] = RunConfig(
    name="demo-memorize",
    task=replace(PRESETS["demo"].task, shuffle_labels=True),
    model=PRESETS["demo"].model,
    train=replace(PRESETS["demo"].train, weight_decay=0.0),
)


def preset_names() -> list[str]:
    return sorted(PRESETS)
