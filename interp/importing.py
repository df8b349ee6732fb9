"""`interp import`: bring TransformerLens checkpoints trained elsewhere into a run folder.

Input: a folder of state dicts in the older `HookedTransformer` naming

    embed.W_E [d_vocab, d_model]           pos_embed.W_pos [n_ctx, d_model]
    blocks.L.attn.W_Q/W_K/W_V [n_heads, d_model, d_head]   b_Q/b_K/b_V [n_heads, d_head]
    blocks.L.attn.W_O [n_heads, d_head, d_model]           b_O [d_model]
    blocks.L.mlp.W_in [d_model, d_mlp]  b_in [d_mlp]       W_out [d_mlp, d_model]  b_out [d_model]
    blocks.L.ln1.w/b, blocks.L.ln2.w/b, ln_final.w/b       (normalization_type "LN" only)
    unembed.W_U [d_model, d_vocab_out]  b_U [d_vocab_out]

one file per step (`step_1200.safetensors`, `checkpoint_1200.pt`: the last number in the
name is the step), a TransformerLens-style config JSON (d_model, n_layers, n_heads, d_head,
d_mlp, d_vocab, d_vocab_out, n_ctx, act_fn, normalization_type) and a task spec JSON
(operation, p, and the train split as `train_indices`, `train_pairs`, `split_seed` +
`train_frac`, or `shuffle_seed` + `train_frac` for Nanda et al.'s trainer). Or one file
holding a whole run, such as the published `full_run_data.pth` (`interp.import_original`:
its layout, p and split come from the file). Output: a normal run folder (config, split,
checkpoints, manifest, metrics computed with `interp.metrics.evaluate`, import.json naming the
source), so `interp analyze` works; `interp.import_cache` imports once per unchanged source.

Names and layouts are converted by `interp.model` (`tl_name`, `from_tl_layout`: W_Q [h, m, d]
becomes q.weight [(h d), m], W_in/W_out/W_U are transposed, LN w/b are LayerNorm weight/bias).
`LNPre` (TL's folded, parameter-free LN) is imported as LN with weight 1 and bias 0, which
computes the same function. The folder is written by `interp.run_writer`, as `interp train` does.

Not convertible, and refused with a message: a non-zero `b_U` (our unembedding has no
bias; a constant per-class bias cannot be folded into W_U because the final residual has
no constant direction), attention-only models, rotary or other positional embeddings,
gated MLPs, other norms, and any config whose vocabulary does not match the task
(d_vocab = p + 1 with `=` as token p, d_vocab_out = p, n_ctx = 3).

Safety: `.safetensors` is read with safetensors; `.pt`/`.pth` only with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects. The run folder is
written beside the target and appears by a single rename, so a failed import leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp import provenance, run_writer, runs
from interp.config import RunConfig, TrainConfig
from interp.import_original import SingleFileRun, read_single_file, safe_load
from interp.import_specs import (
    ImportCheckpointError,
    model_config_from_tl,
    read_json_file,
    task_from_spec,
)
from interp.model import (
    answer_activations,
    build_model,
    from_tl_layout,
    load_state,
    parameters,
    state_dict,
    supports_answer_activations,
    tl_name,
    tl_named_parameters,
    to_tl_layout,
)

#: File names looked for in the source folder when no config path is given.
TL_CONFIG_NAMES = ("config.json", "cfg.json", "tl_config.json")
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
IMPORT_FILE = "import.json"

#: TL state-dict entries that are buffers, not weights: ignored.
_IGNORED_SUFFIXES = (".attn.mask", ".attn.IGNORE")


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    steps: list[int]
    config: RunConfig


# -- reading the inputs -------------------------------------------------------------------------


def checkpoint_files(src_dir: Path) -> list[tuple[int, Path]]:
    """(step, file) for every checkpoint in `src_dir`, by the last number in its name."""
    found: dict[int, Path] = {}
    for path in sorted(src_dir.iterdir()):
        if not path.is_file() or path.suffix not in CHECKPOINT_SUFFIXES:
            continue
        numbers = re.findall(r"\d+", path.stem)
        if not numbers:
            raise ImportCheckpointError(
                f"{path}: no step number in the file name (expected e.g. step_1200{path.suffix})"
            )
        step = int(numbers[-1])
        if step in found:
            raise ImportCheckpointError(f"{path}: step {step} also comes from {found[step].name}")
        found[step] = path
    if not found:
        raise ImportCheckpointError(
            f"{src_dir}: no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    return sorted(found.items())


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of one checkpoint file; never unpickles anything but plain tensors and containers."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load

        try:
            return load(path.read_bytes())
        except Exception as exc:  # safetensors raises its own error types
            raise ImportCheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    data = safe_load(path, "a plain tensor state dict")
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ImportCheckpointError(f"{path}: expected a dict of tensors (a state_dict)")
    return dict(data)


# -- converting ------------------------------------------------------------------------------------


def tl_to_native(tl: dict[str, Tensor], model, norm: str, where: str) -> dict[str, Tensor]:
    """TL HookedTransformer weights under `model`'s native parameter names, in its layouts.

    Each parameter is looked for under its TL name (`interp.model.tl_name`) in TL's shape
    (`interp.model.to_tl_layout`); the LN weights of an `LNPre` model are not in the file
    (TL folds them away) and become weight 1, bias 0.
    """
    params = {name: p.detach() for name, p in parameters(model).items()}
    native_of = {tl_name(name): name for name in params}
    folded = {k for k in native_of if norm == "LNPre" and k.endswith((".w", ".b"))}
    expected = {
        k: tuple(to_tl_layout(k, params[n], model.cfg.n_heads).shape)
        for k, n in native_of.items()
        if k not in folded
    }
    optional = {"unembed.b_U": expected["unembed.W_U"][-1:]}

    weights = {k: v for k, v in tl.items() if not k.endswith(_IGNORED_SUFFIXES)}
    unexpected = sorted(set(weights) - set(expected) - set(optional))
    if unexpected:
        raise ImportCheckpointError(f"{where}: unexpected tensor {unexpected[0]!r} for this config")
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ImportCheckpointError(f"{where}: missing tensor {missing[0]!r}")
    for key, shape in {**expected, **optional}.items():
        if key in weights and tuple(weights[key].shape) != shape:
            raise ImportCheckpointError(
                f"{where}: {key} has shape {tuple(weights[key].shape)}, the config needs {shape}"
            )
        if key in weights and not weights[key].is_floating_point():
            raise ImportCheckpointError(
                f"{where}: {key} has dtype {weights[key].dtype}, expected floating point"
            )
    if "unembed.b_U" in weights and weights["unembed.b_U"].abs().max() > 0:
        raise ImportCheckpointError(
            f"{where}: unembed.b_U is non-zero (max |b_U| = "
            f"{weights['unembed.b_U'].abs().max():.3g}); "
            "our unembedding has no bias and a per-class bias cannot be folded into W_U"
        )
    native = {
        native_of[k]: from_tl_layout(k, weights[k].detach().float()).contiguous() for k in expected
    }
    for k in folded:
        param = params[native_of[k]]
        native[native_of[k]] = (
            torch.ones_like(param) if k.endswith(".w") else torch.zeros_like(param)
        )
    return native


# -- the import
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """What an import reads: the TL config, the steps, and checkpoint i in TL's layout."""

    tl_config: dict[str, Any]
    where: str
    steps: list[int]
    load: Callable[[int], tuple[dict[str, Tensor], str]]
    record: Callable[[], dict[str, Any]]  # for import.json, called once after a full read
    single: SingleFileRun | None = None


def _folder_source(src_dir: Path, tl_config: str | Path | dict[str, Any] | None) -> _Source:
    if tl_config is None:
        candidates = [src_dir / name for name in TL_CONFIG_NAMES if (src_dir / name).is_file()]
        if not candidates:
            raise ImportCheckpointError(
                f"{src_dir}: no TL config ({' or '.join(TL_CONFIG_NAMES)}); pass one"
            )
        tl_config = candidates[0]
    if isinstance(tl_config, dict):
        cfg, cfg_where = tl_config, "TL config"
    else:
        cfg, cfg_where = read_json_file(Path(tl_config), "TL config"), str(tl_config)
    files = checkpoint_files(src_dir)
    return _Source(
        cfg,
        cfg_where,
        [step for step, _ in files],
        lambda i: (read_state_dict(files[i][1]), str(files[i][1])),
        lambda: {
            "files": [
                {"step": s, "file": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
                for s, f in files
            ]
        },
    )


def _file_source(path: Path, every: int | None, tl_config: Any) -> _Source:
    if tl_config is not None:
        raise ImportCheckpointError(
            f"only for a folder of checkpoints; {path} is one file whose shapes give the config",
            argument="tl-config",
        )
    run = read_single_file(path, every)
    return _Source(
        run.tl_config,
        str(path),
        run.steps,
        lambda i: (run.to_tl(i), run.where(i)),
        lambda: {
            **run.notes,
            "files": [
                {
                    "file": path.name,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "steps": run.steps,
                }
            ],
        },
        run,
    )


def _with_file_split(spec: dict[str, Any], where: str, run: SingleFileRun) -> dict[str, Any]:
    """The spec, with p and the split from the file where it leaves them out."""
    if "p" in spec and spec["p"] != run.p:
        raise ImportCheckpointError(
            f"{where}: p={spec['p']!r}, but {run.path} holds a model for p = {run.p} "
            f"(d_vocab = {run.p + 1})"
        )
    spec = {**spec, "p": run.p}
    has_split = any(k in spec for k in ("train_indices", "train_pairs", "train_frac"))
    if run.train_indices is not None and not has_split:
        spec["train_indices"] = run.train_indices
    return spec


def import_tl_checkpoints(
    src_dir: str | Path,
    out_run_dir: str | Path,
    task_spec: str | Path | dict[str, Any],
    *,
    tl_config: str | Path | dict[str, Any] | None = None,
    every: int | None = None,
    record: dict[str, Any] | None = None,
) -> ImportResult:
    """Convert checkpoints into a run folder at `out_run_dir` (which must not exist or be empty).

    `src_dir` is a folder of TL checkpoints (`tl_config` defaults to its config.json / cfg.json)
    or a single-file run (`interp.import_original`: the published `full_run_data.pth`; `every`
    is its save interval when the file lists no epochs, default 100; p and the split come from
    the file when the spec leaves them out). `record` is added to import.json."""
    from interp.metrics import evaluate, sum_squared_weights

    src_dir, out_run_dir = Path(src_dir), Path(out_run_dir)
    if not src_dir.exists():
        raise ImportCheckpointError(f"{src_dir}: no such file or folder")
    if out_run_dir.exists() and (not out_run_dir.is_dir() or any(out_run_dir.iterdir())):
        raise ImportCheckpointError(
            f"{out_run_dir}: exists and is not an empty folder", argument="out"
        )
    if isinstance(task_spec, dict):
        spec, spec_where = task_spec, "task spec"
    else:
        spec, spec_where = read_json_file(Path(task_spec), "task spec"), str(task_spec)
    if src_dir.is_file():
        source = _file_source(src_dir, every, tl_config)
    elif every is not None:
        raise ImportCheckpointError(
            f"only for a single-file run; {src_dir} is a folder, whose file names give the steps",
            argument="every",
        )
    else:
        source = _folder_source(src_dir, tl_config)
    cfg, cfg_where = source.tl_config, source.where

    model_config, d_vocab, d_vocab_out, n_ctx, norm = model_config_from_tl(cfg, cfg_where)
    if source.single is not None:
        spec = _with_file_split(spec, spec_where, source.single)
    task = task_from_spec(spec, spec_where)
    p = int(spec["p"])
    stored = source.single.train_indices if source.single is not None else None
    if stored is not None and task.splits["train"].tolist() != stored:
        raise ImportCheckpointError(
            f"{spec_where}: its split differs from the one stored in {source.where} "
            f"({len(stored)} training pairs); leave the split out of the spec to use the file's"
        )
    if (d_vocab, d_vocab_out, n_ctx) != (p + 1, p, 3):
        raise ImportCheckpointError(
            f"{cfg_where}: d_vocab={d_vocab}, d_vocab_out={d_vocab_out}, n_ctx={n_ctx} do not fit "
            "the task "
            f"(p={p} needs d_vocab={p + 1} with '=' as token {p}, d_vocab_out={p}, n_ctx=3)"
        )
    n_valid = int((task.labels >= 0).sum())
    n_train = sum(len(task.splits[s]) for s in task.train_splits)
    task_config = RunConfig.from_dict(
        {
            "task": {
                "operation": spec["operation"],
                "p": p,
                "split_seed": spec.get("split_seed", 0),
                "train_frac": spec.get("train_frac", n_train / n_valid),
            }
        }
    ).task
    config = RunConfig(
        task=task_config,
        model=model_config,
        train=TrainConfig(steps=max(1, source.steps[-1])),
        name=f"imported:{src_dir.name}",
    )

    model = build_model(model_config, d_vocab=d_vocab, d_vocab_out=d_vocab_out, n_ctx=n_ctx)
    model.eval()
    device = torch.device("cpu")
    # The metrics need only the logits: the analysis's shortcut forward (tables for a 1-layer
    # model) computes them ~2x faster than the training forward, the import's main cost.
    fast = supports_answer_activations(model)
    forward = (lambda m, t: answer_activations(m, t, attribution=False)["logits"]) if fast else None
    # Checkpoints are converted and written one at a time into a folder beside the target
    # (a 500-checkpoint file is not held twice in memory), which appears by one rename when
    # everything was read; a failure removes it, so nothing is left behind.
    out_run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_run_dir.parent, prefix=f".{out_run_dir.name}.import-"))
    try:
        run_writer.write_header(staging, config, task)
        manifest, rows = [], []
        for i, step in enumerate(source.steps):
            tl, where = source.load(i)
            load_state(model, tl_to_native(tl, model, norm, where))
            row, _ = evaluate(model, task, device, **({"forward": forward} if fast else {}))
            rows.append({"step": step, **row, **sum_squared_weights(tl_named_parameters(model))})
            manifest.append(run_writer.write_weights(staging, step, state_dict(model)))
        run_writer.write_metrics(staging, rows)
        runs.atomic_write_json(
            staging / IMPORT_FILE,
            {
                "source": str(src_dir.resolve()),
                "tl_config": cfg,
                "task_spec": {
                    k: v for k, v in spec.items() if k not in ("train_indices", "train_pairs")
                },
                **source.record(),
                **(record or {}),
            },
        )
        run_writer.write_manifest(staging, manifest, rows, task)
        provenance.record(staging, provenance.collect(config, "cpu", step=manifest[0]["step"]))
        if out_run_dir.exists():
            out_run_dir.rmdir()  # empty, checked above
        os.replace(staging, out_run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ImportResult(run_dir=out_run_dir, steps=list(source.steps), config=config)
