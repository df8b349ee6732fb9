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
(operation, p, and the train split as `train_indices`, `train_pairs` or
`split_seed` + `train_frac`). Output: a normal run folder (config, split, checkpoints,
manifest, metrics computed with `interp.metrics.evaluate`), so `interp analyze` works.

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
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects. Nothing is
written until every input has been read and converted, and the run folder appears by a
single rename, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp import provenance, run_writer, runs
from interp.config import RunConfig, TrainConfig
from interp.import_specs import (
    ImportCheckpointError,
    _read_json_file,
    model_config_from_tl,
    task_from_spec,
)
from interp.model import (
    build_model,
    from_tl_layout,
    load_state,
    parameters,
    state_dict,
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
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything that is not plain tensors
        # Quote only torch's diagnosis (e.g. "Unsupported global: GLOBAL posix.system"), never
        # its suggestion to retry with weights_only=False: that would run the file's code.
        lines = [line.strip() for line in str(exc).splitlines()]
        detail = next(
            (line for line in lines if line.startswith("Unsupported")), type(exc).__name__
        )
        raise ImportCheckpointError(
            f"{path}: refused: not a plain tensor state dict; loading it would run code from the "
            "file "
            f"(torch.load weights_only=True: {detail})"
        ) from None
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


def import_tl_checkpoints(
    src_dir: str | Path,
    out_run_dir: str | Path,
    task_spec: str | Path | dict[str, Any],
    *,
    tl_config: str | Path | dict[str, Any] | None = None,
) -> ImportResult:
    """Convert a folder of TL checkpoints into a run folder at `out_run_dir` (which must not
    exist or be empty). `tl_config` defaults to config.json / cfg.json in `src_dir`."""
    from interp.metrics import evaluate, sum_squared_weights

    src_dir, out_run_dir = Path(src_dir), Path(out_run_dir)
    if not src_dir.is_dir():
        raise ImportCheckpointError(f"{src_dir}: no such folder")
    if out_run_dir.exists() and (not out_run_dir.is_dir() or any(out_run_dir.iterdir())):
        raise ImportCheckpointError(
            f"{out_run_dir}: exists and is not an empty folder", argument="out"
        )

    if isinstance(task_spec, dict):
        spec, spec_where = task_spec, "task spec"
    else:
        spec, spec_where = _read_json_file(Path(task_spec), "task spec"), str(task_spec)
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
        cfg, cfg_where = _read_json_file(Path(tl_config), "TL config"), str(tl_config)

    model_config, d_vocab, d_vocab_out, n_ctx, norm = model_config_from_tl(cfg, cfg_where)
    task = task_from_spec(spec, spec_where)
    p = int(spec["p"])
    if (d_vocab, d_vocab_out, n_ctx) != (p + 1, p, 3):
        raise ImportCheckpointError(
            f"{cfg_where}: d_vocab={d_vocab}, d_vocab_out={d_vocab_out}, n_ctx={n_ctx} do not fit "
            "the task "
            f"(p={p} needs d_vocab={p + 1} with '=' as token {p}, d_vocab_out={p}, n_ctx=3)"
        )
    files = checkpoint_files(src_dir)
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
        train=TrainConfig(steps=max(1, files[-1][0])),
        name=f"imported:{src_dir.name}",
    )

    model = build_model(model_config, d_vocab=d_vocab, d_vocab_out=d_vocab_out, n_ctx=n_ctx)
    model.eval()
    converted: list[tuple[int, Path, dict[str, Tensor], dict[str, Any]]] = []
    device = torch.device("cpu")
    for step, path in files:
        load_state(model, tl_to_native(read_state_dict(path), model, norm, str(path)))
        row, _ = evaluate(model, task, device)
        row = {"step": step, **row, **sum_squared_weights(tl_named_parameters(model))}
        # state_dict() aliases the live parameters on CPU: clone before the next load overwrites
        # them.
        converted.append((step, path, {k: v.clone() for k, v in state_dict(model).items()}, row))

    # Everything is read and converted: write a complete folder beside the target, then rename.
    out_run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_run_dir.parent, prefix=f".{out_run_dir.name}.import-"))
    try:
        run_writer.write_header(staging, config, task)
        manifest = [
            run_writer.write_weights(staging, step, weights)
            for step, _path, weights, _row in converted
        ]
        rows = [row for *_, row in converted]
        run_writer.write_metrics(staging, rows)
        runs.atomic_write_json(
            staging / IMPORT_FILE,
            {
                "source": str(src_dir.resolve()),
                "tl_config": cfg,
                "task_spec": {
                    k: v for k, v in spec.items() if k not in ("train_indices", "train_pairs")
                },
                "files": [
                    {
                        "step": s,
                        "file": p.name,
                        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                    }
                    for s, p, *_ in converted
                ],
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
    return ImportResult(run_dir=out_run_dir, steps=[s for s, *_ in converted], config=config)
