"""Single-file runs for `interp import`: the published mod-113 grokking run (`full_run_data.pth`
of Nanda et al. 2023, which the standard tutorials load) and files shaped like it.

The file is one `torch.save`d dict (read only with `torch.load(weights_only=True)`):

    state_dicts   list, a state dict every `save_every` = 100 epochs (index i = epoch 100·i)
    epochs        optional: the epoch of each state dict (also read: `checkpoint_epochs`)
    train_losses, test_losses, train_accs, test_accs   optional curves, recorded in import.json
    train_data / test_data   optional: the split as (a, b, p) triples, as the original trainer
                  saves it (also read: `train_pairs`, `train_indices` = a·p + b, `test_*`)
    config        optional, only when it is a plain dict (a pickled dataclass is refused by
                  weights_only=True like any other object)

Each state dict is in the original, pre-TransformerLens layout of the paper's `Transformer`
(progress-measures-paper `transformers.py`; ARENA's `load_in_state_dict` transposes it):

    embed.W_E [d_model, d_vocab]            residual = W_E[:, tokens] (einsum 'dbp -> bpd')
    pos_embed.W_pos [n_ctx, d_model]
    blocks.L.attn.W_Q/W_K/W_V [n_heads, d_head, d_model]   q = einsum('ihd,bpd->biph', W_Q, x)
    blocks.L.attn.W_O [d_model, n_heads·d_head]    z flattened '(head d_head)', head-major
    blocks.L.attn.mask [n_ctx, n_ctx]       a buffer (causal mask): ignored
    blocks.L.mlp.W_in [d_mlp, d_model], b_in [d_mlp], W_out [d_model, d_mlp], b_out [d_model]
    unembed.W_U [d_model, d_vocab]          logits over all p + 1 tokens, `=` included

no attention biases, no LayerNorm (the modules are commented out), attention scaled by
1/sqrt(d_head) with a causal mask, d_vocab = p + 1 with `=` as token p. The conversion to TL's
layout is exact: W_E, W_Q/W_K/W_V, W_in, W_out are transposed, W_O is split by head, attention
biases are zero, and the `=` column of W_U is dropped (the model never has to predict `=`; the
original analysis code drops it too, `logits[:, -1, :-1]`), so losses recomputed here are over
the p answers, where the original trainer's were over p + 1 logits. State dicts already in TL's
layout (3-d `W_O`) are read as they are, with a d_vocab_out = p + 1 unembedding cut the same way.

Refused with a message naming the file: anything that needs unpickling other than tensors and
plain containers, LayerNorm parameters, unexpected or missing tensors, inconsistent shapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from interp.import_specs import ImportCheckpointError

#: The interval the published run saved at (its Config.save_every).
DEFAULT_EVERY = 100
_CHECKPOINT_LISTS = ("state_dicts", "checkpoints")
_EPOCH_LISTS = ("epochs", "checkpoint_epochs")
_CURVES = ("train_losses", "test_losses", "train_accs", "test_accs")
_CURVES += ("train_accuracies", "test_accuracies")
_IGNORED = (".attn.mask", ".attn.IGNORE")
#: The original layout by leaf name: axes in the file (named) and in TL's layout.
_TOP = ("embed.W_E", "pos_embed.W_pos", "unembed.W_U")
_ORIGINAL = {
    "embed.W_E": "d_model d_vocab -> d_vocab d_model",
    "pos_embed.W_pos": "n_ctx d_model -> n_ctx d_model",
    "unembed.W_U": "d_model d_vocab -> d_model d_vocab",
    "attn.W_Q": "head d_head d_model -> head d_model d_head",
    "attn.W_K": "head d_head d_model -> head d_model d_head",
    "attn.W_V": "head d_head d_model -> head d_model d_head",
    "attn.W_O": "d_model (head d_head) -> head d_head d_model",
    "mlp.W_in": "d_mlp d_model -> d_model d_mlp",
    "mlp.b_in": "d_mlp -> d_mlp",
    "mlp.W_out": "d_model d_mlp -> d_mlp d_model",
    "mlp.b_out": "d_model -> d_model",
}


@dataclass(frozen=True)
class SingleFileRun:
    """What a single-file run holds, with checkpoints still in the file's layout until
    `to_tl(i)` converts one (so a 500-checkpoint file is not held twice in memory)."""

    path: Path
    layout: str  # "original" or "transformer_lens"
    tl_config: dict[str, Any]
    steps: list[int]
    raw: list[dict[str, Tensor]]
    train_indices: list[int] | None  # the split stored in the file, as a·p + b
    notes: dict[str, Any] = field(default_factory=dict)  # for import.json

    @property
    def p(self) -> int:
        return self.tl_config["d_vocab"] - 1

    def where(self, i: int) -> str:
        return f"{self.path}: state_dicts[{i}] (step {self.steps[i]})"

    def to_tl(self, i: int) -> dict[str, Tensor]:
        """Checkpoint i in TransformerLens names and layouts, d_vocab_out = p."""
        sd, where = self.raw[i], self.where(i)
        dims = _dims(sd, self.layout, where)
        if (dims["d_vocab"], dims["n_ctx"]) != (self.tl_config["d_vocab"], self.tl_config["n_ctx"]):
            raise ImportCheckpointError(f"{where}: its shapes differ from state_dicts[0]")
        if self.layout == "transformer_lens":
            return _cut_equals_logit(dict(sd), self.p, where)
        return original_to_tl(sd, dims, where)


def safe_load(path: Path, what: str) -> Any:
    """`torch.load(weights_only=True)` on CPU; anything else is refused, naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything that is not plain tensors
        # Quote only torch's diagnosis (e.g. "Unsupported global: GLOBAL posix.system"), never
        # its suggestion to retry with weights_only=False: that would run the file's code.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        lines = [line for line in lines if "weights_only" not in line]
        blocked = [line for line in lines if re.search(r"unsupported|GLOBAL", line, re.I)]
        # (by name: the packages never import a pickle library, tests/interp/test_reliability.py)
        if type(exc).__name__ == "UnpicklingError" and blocked:
            raise ImportCheckpointError(
                f"{path}: refused: not {what}; loading it would run code from the file "
                f"(torch.load weights_only=True: {blocked[0][:200]})"
            ) from None
        detail = f": {lines[0][:160]}" if lines else ""  # a damaged or foreign file
        raise ImportCheckpointError(
            f"{path}: cannot be read as a torch.save file ({type(exc).__name__}{detail})"
        ) from None


def is_single_file_run(data: Any) -> bool:
    return isinstance(data, dict) and any(isinstance(data.get(k), list) for k in _CHECKPOINT_LISTS)


def read_single_file(path: Path, every: int | None = None) -> SingleFileRun:
    """Read and check a single-file run; `every` is its save interval when it lists no epochs."""
    where = str(path)
    data = safe_load(path, "plain tensors and containers")
    if not is_single_file_run(data):
        raise ImportCheckpointError(
            f"{where}: not a single-file run (a dict with a 'state_dicts' list of state dicts)"
        )
    key = next(k for k in _CHECKPOINT_LISTS if isinstance(data.get(k), list))
    raw = data[key]
    if not raw or not all(
        isinstance(sd, dict) and all(isinstance(v, Tensor) for v in sd.values()) for sd in raw
    ):
        raise ImportCheckpointError(f"{where}: '{key}' must be a non-empty list of state dicts")
    w_o = raw[0].get("blocks.0.attn.W_O")
    if w_o is None or w_o.ndim not in (2, 3):
        raise ImportCheckpointError(
            f"{where}: state_dicts[0] has no blocks.0.attn.W_O of 2 (original layout) or 3 "
            "(TransformerLens layout) dimensions"
        )
    layout = "original" if w_o.ndim == 2 else "transformer_lens"
    dims = _dims(raw[0], layout, f"{where}: state_dicts[0]")
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    act = str(config.get("act_type", config.get("act_fn", "relu"))).lower()
    tl_config = {
        **{k: dims[k] for k in ("d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx")},
        "n_layers": dims["n_layers"],
        "d_vocab_out": dims["d_vocab"] - 1,
        "act_fn": act,
        "normalization_type": "LN" if "ln_final.w" in raw[0] else None,
    }
    steps = _steps(data, len(raw), every, where)
    p = dims["d_vocab"] - 1
    notes = {
        "format": "single file",
        "layout": layout,
        "checkpoints_key": key,
        "keys": sorted(map(str, data)),
        "act_fn": act if config else f"{act} (assumed: no config dict in the file)",
        "source_curves": _curves(data, steps),
    }
    return SingleFileRun(path, layout, tl_config, steps, raw, _split(data, p, where), notes)


# -- inside ---------------------------------------------------------------------------------------


def _dims(sd: dict[str, Tensor], layout: str, where: str) -> dict[str, int]:
    for key in ("embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.mlp.W_in"):
        if key not in sd:
            raise ImportCheckpointError(f"{where}: missing tensor {key!r}")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    w_e, w_q, w_in = sd["embed.W_E"], sd["blocks.0.attn.W_Q"], sd["blocks.0.mlp.W_in"]
    if w_e.ndim != 2 or w_q.ndim != 3 or w_in.ndim != 2 or sd["pos_embed.W_pos"].ndim != 2:
        raise ImportCheckpointError(f"{where}: embed.W_E, W_Q, W_in or W_pos has the wrong rank")
    original = layout == "original"
    d_model, d_vocab = w_e.shape if original else reversed(w_e.shape)
    n_heads, d_head = w_q.shape[0], w_q.shape[1 if original else 2]
    return {
        "d_model": d_model,
        "d_vocab": d_vocab,
        "n_heads": n_heads,
        "d_head": d_head,
        "d_mlp": w_in.shape[0] if original else w_in.shape[1],
        "n_ctx": sd["pos_embed.W_pos"].shape[0],
        "n_layers": max(layers) + 1 if layers == set(range(max(layers) + 1)) else -1,
    }


def original_to_tl(sd: dict[str, Tensor], dims: dict[str, int], where: str) -> dict[str, Tensor]:
    """One state dict of the original layout in TL names and layouts (module docstring)."""
    if dims["n_layers"] < 1:
        raise ImportCheckpointError(f"{where}: blocks are not numbered 0, 1, …")
    sizes = {"head": dims["n_heads"], **dims}
    expected = {k: v for k, v in _ORIGINAL.items() if k in _TOP}
    for layer in range(dims["n_layers"]):
        expected.update({f"blocks.{layer}.{k}": v for k, v in _ORIGINAL.items() if k not in _TOP})
    weights = {k: v for k, v in sd.items() if not k.endswith(_IGNORED)}
    for key in sorted(set(weights) - set(expected)):
        why = (
            "LayerNorm parameters: the original LayerNorm, (x - mean) / (std + 1e-4), has no "
            "equivalent here"
            if re.search(r"(^|\.)ln|_ln", key)
            else "not a parameter of the original architecture"
        )
        raise ImportCheckpointError(f"{where}: unexpected tensor {key!r} ({why})")
    tl: dict[str, Tensor] = {}
    for key, pattern in expected.items():
        if key not in weights:
            raise ImportCheckpointError(f"{where}: missing tensor {key!r}")
        axes = pattern.split(" -> ")[0]
        shape = tuple(
            math.prod(sizes[name] for name in group.strip("()").split())
            for group in re.findall(r"\([^)]*\)|\S+", axes)
        )
        tensor = weights[key]
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise ImportCheckpointError(
                f"{where}: {key} has shape {tuple(tensor.shape)} ({tensor.dtype}); the original "
                f"layout needs {shape} ({axes}), floating point"
            )
        heads = {"head": dims["n_heads"]} if "(head" in axes else {}
        tl[key] = rearrange(tensor, pattern, **heads)
    for layer in range(dims["n_layers"]):
        attn = f"blocks.{layer}.attn."
        for x in "QKV":
            tl[attn + f"b_{x}"] = torch.zeros(dims["n_heads"], dims["d_head"])
        tl[attn + "b_O"] = torch.zeros(dims["d_model"])
    return _cut_equals_logit(tl, dims["d_vocab"] - 1, where)


def _cut_equals_logit(tl: dict[str, Tensor], p: int, where: str) -> dict[str, Tensor]:
    """Drop the `=` logit of a d_vocab_out = p + 1 unembedding (it is never an answer)."""
    w_u = tl.get("unembed.W_U")
    if w_u is None or w_u.ndim != 2 or w_u.shape[1] not in (p, p + 1):
        raise ImportCheckpointError(f"{where}: unembed.W_U must be [d_model, p or p + 1]")
    tl["unembed.W_U"] = w_u[:, :p]
    if "unembed.b_U" in tl:
        tl["unembed.b_U"] = tl["unembed.b_U"][:p]
    return tl


def _steps(data: dict, n: int, every: int | None, where: str) -> list[int]:
    listed = next((data[k] for k in _EPOCH_LISTS if k in data), None)
    if every is not None and every < 1:
        raise ImportCheckpointError(f"must be a positive integer, got {every}", argument="every")
    spaced = [i * (every or DEFAULT_EVERY) for i in range(n)]
    if listed is None:
        return spaced
    try:
        steps = [int(s) for s in (listed.tolist() if isinstance(listed, Tensor) else listed)]
    except (TypeError, ValueError):
        raise ImportCheckpointError(f"{where}: 'epochs' must be a list of integers") from None
    if len(steps) != n or sorted(set(steps)) != steps:
        raise ImportCheckpointError(
            f"{where}: 'epochs' must list {n} increasing epochs, one per state dict"
        )
    if every is not None and steps != spaced:
        raise ImportCheckpointError(
            f"{where} lists epochs {steps[:3]}…, not every {every}; leave --every out",
            argument="every",
        )
    return steps


def _pairs_to_indices(value: Any, p: int, where: str, key: str) -> list[int]:
    try:
        t = value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.long)
        t = t.long()
        if key.endswith("indices"):
            index = t.reshape(-1)
        else:
            if t.ndim != 2 or t.shape[1] not in (2, 3):
                raise ValueError
            index = t[:, 0] * p + t[:, 1]
        if len(index) == 0 or index.min() < 0 or index.max() >= p * p:
            raise ValueError
    except (ValueError, TypeError, RuntimeError):
        raise ImportCheckpointError(
            f"{where}: '{key}' must list (a, b[, p]) pairs with 0 <= a, b < p = {p}"
            if not key.endswith("indices")
            else f"{where}: '{key}' must list indices a*p + b in [0, {p * p})"
        ) from None
    return sorted(index.tolist())


def _split(data: dict, p: int, where: str) -> list[int] | None:
    found = {}
    for part in ("train", "test"):
        for suffix in ("data", "pairs", "indices"):
            key = f"{part}_{suffix}"
            if key in data:
                found[part] = _pairs_to_indices(data[key], p, where, key)
                break
    if "train" not in found:
        return None
    train = found["train"]
    if len(set(train)) != len(train):
        raise ImportCheckpointError(f"{where}: the stored training split lists an example twice")
    if "test" in found and sorted(set(range(p * p)) - set(train)) != found["test"]:
        raise ImportCheckpointError(
            f"{where}: the stored test split is not every pair outside the training split; "
            "only such splits can be imported"
        )
    return train


def _curves(data: dict, steps: list[int]) -> dict[str, Any]:
    """The file's own curves: their lengths, and their values at the checkpoints when that is
    unambiguous (one value per checkpoint, or one per epoch through the last checkpoint)."""
    out: dict[str, Any] = {}
    for key in _CURVES:
        value = data.get(key)
        if not isinstance(value, (list, Tensor)):
            continue
        try:
            values = [float(v) for v in (value.tolist() if isinstance(value, Tensor) else value)]
        except (TypeError, ValueError):
            continue
        entry: dict[str, Any] = {"length": len(values)}
        gap = steps[-1] - steps[-2] if len(steps) > 1 else 1
        if len(values) == len(steps):
            entry["at_steps"] = values
        elif steps[-1] < len(values) <= steps[-1] + gap:  # one per epoch, as the trainer logs
            entry["at_steps"] = [values[s] for s in steps]
        out[key] = entry
    return out
