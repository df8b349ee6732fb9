"""What `interp import` reads besides the weights: the TransformerLens config (-> our
`ModelConfig`) and the task spec (-> the modular task with the split the checkpoints were
trained on). Errors are `ImportCheckpointError`s naming the file or key."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import torch

from interp.config import ActFn, ConfigError, ModelConfig, RunConfig
from interp.registry import DEFAULT_KIND
from interp.tasks import TaskData, build_task

_TASK_KEYS = {
    "kind",
    "operation",
    "p",
    "train_indices",
    "train_pairs",
    "split_seed",
    "train_frac",
    "shuffle_seed",
}


class ImportCheckpointError(ValueError):
    """The input cannot be imported; the message names the file (or key) and what is wrong,
    and `argument` the argument it is about when it is not a file (`interp.errors.cli_message`)."""

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportCheckpointError(f"{path}: no such {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportCheckpointError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ImportCheckpointError(f"{path}: {what} must be a JSON object")
    return data


def _tl_int(cfg: dict[str, Any], key: str, where: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImportCheckpointError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def model_config_from_tl(
    cfg: dict[str, Any], where: str = "TL config"
) -> tuple[ModelConfig, int, int, int, str]:
    """Our ModelConfig from a TransformerLens config dict; also (d_vocab, d_vocab_out, n_ctx,
    norm)."""
    dims = {
        k: _tl_int(cfg, k, where)
        for k in ("d_model", "n_layers", "n_heads", "d_head", "d_vocab", "n_ctx")
    }
    d_mlp = cfg.get("d_mlp")
    dims["d_mlp"] = _tl_int(cfg, "d_mlp", where) if d_mlp is not None else 4 * dims["d_model"]
    d_vocab_out = cfg.get("d_vocab_out", -1)
    d_vocab_out = (
        dims["d_vocab"] if d_vocab_out in (-1, None) else _tl_int(cfg, "d_vocab_out", where)
    )
    for key, allowed in _MUST_BE.items():
        if key in cfg and cfg[key] not in allowed:
            raise ImportCheckpointError(
                f"{where}: {key}={cfg[key]!r} is not supported; importable: "
                f"{', '.join(map(repr, allowed))}"
            )
    if "attn_scale" in cfg and cfg["attn_scale"] not in (None, -1, -1.0):
        if not math.isclose(float(cfg["attn_scale"]), math.sqrt(dims["d_head"]), rel_tol=1e-6):
            raise ImportCheckpointError(
                f"{where}: attn_scale={cfg['attn_scale']!r} is not supported; only sqrt(d_head)"
            )
    norm = cfg.get("normalization_type")
    if norm not in (None, "LN", "LNPre"):
        raise ImportCheckpointError(
            f"{where}: normalization_type={norm!r} is not supported; importable: null, 'LN', "
            "'LNPre'"
        )
    if norm is not None and not math.isclose(float(cfg.get("eps", 1e-5)), 1e-5):
        raise ImportCheckpointError(f"{where}: eps={cfg['eps']!r} is not supported; only 1e-5")
    act_fn = cfg.get("act_fn")
    if act_fn not in get_args(ActFn):
        raise ImportCheckpointError(
            f"{where}: act_fn={act_fn!r} is not supported; importable: {', '.join(get_args(ActFn))}"
        )
    try:
        model = ModelConfig(
            n_layers=dims["n_layers"],
            d_model=dims["d_model"],
            n_heads=dims["n_heads"],
            d_head=dims["d_head"],
            d_mlp=dims["d_mlp"],
            act_fn=act_fn,
            normalization="none" if norm is None else "LN",
        )
    except ConfigError as exc:
        raise ImportCheckpointError(f"{where}: {exc}") from None
    return model, dims["d_vocab"], d_vocab_out, dims["n_ctx"], "none" if norm is None else norm


def original_split(p: int, train_frac: float, seed: int) -> list[int]:
    """The split of Nanda et al.'s trainer (`gen_train_test`): Python's `random.seed(seed)`, then
    `random.shuffle` of the p² pairs listed a-major, the first int(train_frac·p²) for training.
    A shuffle permutes positions only, so shuffling the indices a·p + b gives the same split."""
    order = list(range(p * p))
    random.Random(seed).shuffle(order)
    return sorted(order[: int(train_frac * p * p)])


def task_from_spec(spec: dict[str, Any], where: str = "task spec") -> TaskData:
    """The modular task with the split the checkpoints were trained on (`shuffle_seed` +
    `train_frac`: the original trainer's split, `original_split`)."""
    unknown = sorted(set(spec) - _TASK_KEYS)
    if unknown:
        raise ImportCheckpointError(
            f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_TASK_KEYS))}"
        )
    if (
        spec.get("kind", DEFAULT_KIND) != DEFAULT_KIND
    ):  # binary operations mod p, as Nanda et al. train
        raise ImportCheckpointError(
            f"{where}: kind={spec['kind']!r}; only {DEFAULT_KIND!r} tasks can be imported"
        )
    for key in ("operation", "p"):
        if key not in spec:
            raise ImportCheckpointError(f"{where}: missing {key!r}")
    explicit = [k for k in ("train_indices", "train_pairs") if k in spec]
    if "shuffle_seed" in spec and (explicit or "split_seed" in spec or "train_frac" not in spec):
        raise ImportCheckpointError(f"{where}: shuffle_seed goes with train_frac and nothing else")
    if len(explicit) > 1 or (explicit and "train_frac" in spec):
        raise ImportCheckpointError(
            f"{where}: give the split once: train_indices, train_pairs or split_seed + train_frac"
        )
    if not explicit and "train_frac" not in spec:
        raise ImportCheckpointError(
            f"{where}: missing the split: train_indices, train_pairs, split_seed + train_frac, "
            "or shuffle_seed + train_frac (Nanda et al.'s trainer: shuffle_seed 0, train_frac 0.3)"
        )
    try:
        base = RunConfig.from_dict(
            {
                "task": {
                    k: spec[k] for k in ("operation", "p", "split_seed", "train_frac") if k in spec
                }
            }
        ).task
    except ConfigError as exc:
        raise ImportCheckpointError(f"{where}: {exc}") from None
    if not explicit and "shuffle_seed" not in spec:
        try:
            return build_task(base)
        except ValueError as exc:
            raise ImportCheckpointError(f"{where}: {exc}") from None

    p = base.p
    full = build_task(replace(base, train_frac=0.5))  # every example; the split is replaced below
    if not explicit:
        seed = spec["shuffle_seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ImportCheckpointError(f"{where}: shuffle_seed must be an integer, got {seed!r}")
        explicit = ["train_indices"]
        spec = {"train_indices": original_split(p, base.train_frac, seed)}
    raw = spec[explicit[0]]
    if not isinstance(raw, list) or not raw:
        raise ImportCheckpointError(f"{where}: {explicit[0]} must be a non-empty list")
    try:
        if explicit[0] == "train_pairs":
            pairs = torch.tensor(raw, dtype=torch.long)
            if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= p:
                raise ValueError
            index = pairs[:, 0] * p + pairs[:, 1]
        else:
            index = torch.tensor(raw, dtype=torch.long)
            if index.ndim != 1 or index.min() < 0 or index.max() >= p * p:
                raise ValueError
    except (ValueError, TypeError, RuntimeError):
        what = (
            "[a, b] pairs with 0 <= a, b < p"
            if explicit[0] == "train_pairs"
            else "integers a*p + b in [0, p^2)"
        )
        raise ImportCheckpointError(
            f"{where}: {explicit[0]} must be a list of {what} (p = {p})"
        ) from None
    if len(index.unique()) != len(index):
        raise ImportCheckpointError(f"{where}: {explicit[0]} lists an example twice")
    if (full.labels[index] < 0).any():
        raise ImportCheckpointError(
            f"{where}: {explicit[0]} contains examples with no answer (e.g. division by 0)"
        )
    valid = torch.nonzero(full.labels >= 0).squeeze(1)
    is_train = torch.zeros(full.n_examples, dtype=torch.bool)
    is_train[index] = True
    train, test = index.sort().values, valid[~is_train[valid]]
    if len(test) == 0:
        raise ImportCheckpointError(
            f"{where}: {explicit[0]} covers every example; nothing is held out"
        )
    return TaskData(
        tokens=full.tokens,
        labels=full.labels,
        splits={"train": train, "test": test},
        train_splits=full.train_splits,
        token_names=full.token_names,
    )


#: TL config keys that change the computation, with the values we can import.
_MUST_BE = {
    "attn_only": (False,),
    "positional_embedding_type": ("standard",),
    "gated_mlp": (False,),
    "final_rms": (False,),
    "parallel_attn_mlp": (False,),
    "use_local_attn": (False,),
    "attention_dir": ("causal",),
    "use_attn_scale": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "use_qk_norm": (False,),
    "n_key_value_heads": (None,),
    "rotary_dim": (None,),
    "use_normalization_before_and_after": (False,),
    "post_embedding_ln": (False,),
    "final_ln": (True,),
    "num_experts": (None,),
    "attn_scores_soft_cap": (-1, -1.0, 0, 0.0),
    "output_logits_soft_cap": (-1, -1.0, 0, 0.0),
}
