"""Attention patterns of any checkpoint through circuitsvis, offline.

`attention_patterns(model, tokens)` gathers `blocks.L.attn.hook_pattern [batch, head,
query_pos, key_pos]` for one input (or the mean over many) and returns an `HtmlView` that
draws circuitsvis's `AttentionHeads` (a thumbnail per head, click to enlarge).
`attention_over_checkpoints(run, ...)` does the same for several checkpoints behind a
range slider: the patterns of every checkpoint are embedded, each drawn on first view.
The circuitsvis bundle is never part of these fragments (see `circuits.viz.page`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.viz.page import HtmlView, json_for_script, new_id


@torch.inference_mode()
def attention_pattern_tensor(
    model, tokens: Int[Tensor, "batch pos"], batch_size: int = 4096
) -> Float[Tensor, "layer head query_pos key_pos"]:
    """Mean attention pattern over the given inputs (one input: its own pattern)."""
    n_layers = model.cfg.n_layers
    names = {f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)}
    total: Tensor | None = None
    for start in range(0, tokens.shape[0], batch_size):
        _, cache = model.run_with_cache(tokens[start : start + batch_size], names_filter=lambda n: n in names)
        part = torch.stack([cache[f"blocks.{layer}.attn.hook_pattern"].double().sum(0) for layer in range(n_layers)])
        total = part if total is None else total + part
    assert total is not None
    return (total / tokens.shape[0]).float()


def _heads_props(pattern: Tensor, token_labels: list[str]) -> dict:
    n_layers, n_heads = pattern.shape[:2]
    return {
        "attention": [[[round(float(v), 4) for v in row] for row in pattern[l, h]] for l in range(n_layers) for h in range(n_heads)],
        "tokens": token_labels,
        "attentionHeadNames": [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)],
        "maxValue": 1.0,
        "minValue": 0.0,
        "maskUpperTri": True,
    }


def attention_patterns(model, tokens: Int[Tensor, "batch pos"], token_labels: list[str] | None = None,
                       title: str = "Attention patterns") -> HtmlView:
    """circuitsvis `AttentionHeads` for one input `[1, pos]` or the mean over a batch."""
    if tokens.ndim == 1:
        tokens = tokens[None]
    pattern = attention_pattern_tensor(model, tokens)
    labels = token_labels or [str(int(t)) for t in tokens[0]]
    return checkpoint_attention_view([0], pattern[None], labels, title=title, slider=False)


def checkpoint_attention_view(
    steps: list[int],
    patterns: Float[Tensor, "step layer head query_pos key_pos"],
    token_labels: list[str],
    title: str = "Attention patterns",
    slider: bool = True,
    caption: str = "",
) -> HtmlView:
    """Attention heads per checkpoint behind a range slider (drawn lazily, one at a time)."""
    root = new_id("attention")
    props = [_heads_props(p, token_labels) for p in patterns]
    last = len(steps) - 1
    panels = "".join(
        f'<div id="{root}-{i}" class="interp-cv-panel" data-step="{s}" style="display:{"block" if i == last else "none"}"></div>'
        for i, s in enumerate(steps)
    )
    control = (
        f'<div class="interp-slider"><label>checkpoint step <input type="range" id="{root}-slider" min="0" '
        f'max="{last}" value="{last}" step="1" aria-label="checkpoint"></label> '
        f'<b id="{root}-label">{steps[last]}</b> ({len(steps)} checkpoints)</div>'
        if slider and len(steps) > 1 else ""
    )
    js = f"""
(function() {{
  var steps = {json_for_script(steps)}, props = {json_for_script(props)}, drawn = {{}};
  function show(i) {{
    for (var j = 0; j < steps.length; j++) {{
      document.getElementById("{root}-" + j).style.display = (j === i) ? "block" : "none";
    }}
    if (!drawn[i]) {{ CircuitsVis.render("{root}-" + i, CircuitsVis.AttentionHeads, props[i]); drawn[i] = true; }}
    var label = document.getElementById("{root}-label");
    if (label) label.textContent = steps[i];
  }}
  var slider = document.getElementById("{root}-slider");
  if (slider) slider.addEventListener("input", function() {{ show(parseInt(slider.value, 10)); }});
  show({last});
}})();"""
    body = (f'<div class="interp-attention" id="{root}">{f"<p class=note>{caption}</p>" if caption else ""}'
            f"{control}{panels}</div><script>{js}</script>")
    return HtmlView(body=body, title=title)


def attention_over_checkpoints(run, steps: list[int] | None = None, tokens: Int[Tensor, "batch pos"] | None = None,
                               token_labels: list[str] | None = None, max_examples: int = 1024) -> HtmlView:
    """The run's attention patterns at each checkpoint (default: the mean over up to
    `max_examples` inputs, labelled by position; pass `tokens` of shape [1, pos] for one input)."""
    task = run.task
    if tokens is None:
        generator = torch.Generator().manual_seed(0)
        index = torch.randperm(task.n_examples, generator=generator)[:max_examples]
        tokens = task.tokens[index]
    steps = list(run.steps if steps is None else steps)
    patterns = torch.stack([attention_pattern_tensor(model, tokens) for _, model in run.iter_models(steps)])
    if token_labels is None:
        token_labels = _default_labels(run, tokens)
    what = "one input" if tokens.shape[0] == 1 else f"mean over {tokens.shape[0]} inputs"
    return checkpoint_attention_view(steps, patterns, token_labels, title=f"Attention patterns per head ({what})")


def _default_labels(run, tokens: Tensor) -> list[str]:
    names = run.task.token_names
    if tokens.shape[0] == 1 and names:
        return [names[int(t)] for t in tokens[0]]
    if run.config.task.kind == "modular":
        return ["a", "b", "="]
    return [f"pos {i}" for i in range(tokens.shape[1])]
