"""Attention patterns through circuitsvis, offline.

`checkpoint_attention_view(steps, patterns, labels)` draws circuitsvis's `AttentionHeads`
(a thumbnail per head, click to enlarge) for several checkpoints behind a range slider:
the patterns of every checkpoint are embedded, each drawn on first view.
`analysis_attention_view(result)` is that view of the mean patterns a `RunAnalysis`
computed in its pass (the report's view). For notebooks, `attention_patterns(model,
tokens)` and `attention_over_checkpoints(run)` compute patterns first
(`circuits.analyses.attention.mean_attention_pattern`). The circuitsvis bundle is never part of
these
fragments (see `circuits.viz.page`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.attention import MAX_PATTERN_EXAMPLES, mean_attention_pattern, pattern_sample
from circuits.viz.page import HtmlView, json_for_script, new_id


def _heads_props(pattern: Tensor, token_labels: list[str]) -> dict:
    n_layers, n_heads = pattern.shape[:2]
    return {
        "attention": [
            [[round(float(v), 4) for v in row] for row in pattern[layer, h]]
            for layer in range(n_layers)
            for h in range(n_heads)
        ],
        "tokens": token_labels,
        "attentionHeadNames": [
            f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)
        ],
        "maxValue": 1.0,
        "minValue": 0.0,
        "maskUpperTri": True,
    }


def attention_patterns(
    model,
    tokens: Int[Tensor, "batch pos"],
    token_labels: list[str] | None = None,
    title: str = "Attention patterns",
) -> HtmlView:
    """circuitsvis `AttentionHeads` for one input `[1, pos]` or the mean over a batch."""
    if tokens.ndim == 1:
        tokens = tokens[None]
    pattern = mean_attention_pattern(model, tokens)
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
        f'<div id="{root}-{i}" class="interp-cv-panel" data-step="{s}" '
        f'style="display:{"block" if i == last else "none"}"></div>'
        for i, s in enumerate(steps)
    )
    control = (
        f'<div class="interp-slider"><label>checkpoint step '
        f'<input type="range" id="{root}-slider" min="0" '
        f'max="{last}" value="{last}" step="1" aria-label="checkpoint"></label> '
        f'<b id="{root}-label">{steps[last]}</b> ({len(steps)} checkpoints)</div>'
        if slider and len(steps) > 1
        else ""
    )
    js = f"""
(function() {{
  var steps = {json_for_script(steps)}, props = {json_for_script(props)}, drawn = {{}};
  function show(i) {{
    for (var j = 0; j < steps.length; j++) {{
      document.getElementById("{root}-" + j).style.display = (j === i) ? "block" : "none";
    }}
    if (!drawn[i]) {{ CircuitsVis.render("{root}-" + i, CircuitsVis.AttentionHeads, props[i]);
    drawn[i] = true; }}
    var label = document.getElementById("{root}-label");
    if (label) label.textContent = steps[i];
  }}
  var slider = document.getElementById("{root}-slider");
  if (slider) slider.addEventListener("input", function() {{ show(parseInt(slider.value, 10)); }});
  show({last});
}})();"""
    body = (
        f'<div class="interp-attention" id="{root}">'
        f"{f'<p class=note>{caption}</p>' if caption else ''}"
        f"{control}{panels}</div><script>{js}</script>"
    )
    return HtmlView(body=body, title=title)


def analysis_attention_view(result, checkpoints=None) -> HtmlView:
    """The mean attention patterns a `circuits.pipeline.analyze.RunAnalysis` computed, one slider
    step per
    checkpoint (default: every checkpoint that has one)."""
    checkpoints = [
        c for c in (checkpoints or result.checkpoints) if c.attention_pattern is not None
    ]
    patterns = torch.stack([c.attention_pattern for c in checkpoints])
    title = f"Attention patterns per head (mean over {result.pattern_examples} inputs)"
    return checkpoint_attention_view(
        [c.step for c in checkpoints], patterns, list(result.position_labels), title=title
    )


def attention_over_checkpoints(
    run,
    steps: list[int] | None = None,
    tokens: Int[Tensor, "batch pos"] | None = None,
    token_labels: list[str] | None = None,
    max_examples: int = MAX_PATTERN_EXAMPLES,
) -> HtmlView:
    """The run's attention patterns at each checkpoint, computed here (a notebook helper; an
    analysis has them already: `analysis_attention_view`). Default: the mean over up to
    `max_examples` inputs, labelled by position; pass `tokens` of shape [1, pos] for one input."""
    task = run.task
    tokens = pattern_sample(task.tokens, max_examples) if tokens is None else tokens
    steps = list(run.steps if steps is None else steps)
    patterns = torch.stack(
        [mean_attention_pattern(model, tokens) for _, model in run.iter_models(steps)]
    )
    if token_labels is None:
        token_labels = _default_labels(run, tokens)
    what = "one input" if tokens.shape[0] == 1 else f"mean over {tokens.shape[0]} inputs"
    return checkpoint_attention_view(
        steps, patterns, token_labels, title=f"Attention patterns per head ({what})"
    )


def _default_labels(run, tokens: Tensor) -> list[str]:
    names = run.task.token_names
    if tokens.shape[0] == 1 and names:
        return [names[int(t)] for t in tokens[0]]
    from interp.registry import family_of

    names = getattr(family_of(run.config), "position_names", ())  # the family's, if it names them
    return (
        list(names)
        if len(names) == tokens.shape[1]
        else [f"pos {i}" for i in range(tokens.shape[1])]
    )
