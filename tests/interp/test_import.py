"""`interp import` (issue 6): TransformerLens checkpoints written by an independent minimal
HookedTransformer-style implementation (plain tensors and einsum, below) become a run folder
whose models compute the same logits."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from interp.config import task_config
from interp.importing import ImportCheckpointError, import_tl_checkpoints
from interp.model import answer_logits
from interp.runs import load_run
from interp.tasks import build_task
from tests.reliability_helpers import check_listed_checkpoints  # noqa: F401  (also sets 1 thread)

# -- an independent HookedTransformer (older TL naming), written from the TL docs
# ---------------------


def tl_init(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in TL's names and layouts, every bias and LN parameter non-trivial."""
    g = torch.Generator().manual_seed(seed)
    m, h, d, mlp = cfg["d_model"], cfg["n_heads"], cfg["d_head"], cfg["d_mlp"]
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    sd = {
        "embed.W_E": r(cfg["d_vocab"], m),
        "pos_embed.W_pos": r(cfg["n_ctx"], m),
        "unembed.W_U": r(m, cfg["d_vocab_out"]),
        "unembed.b_U": torch.zeros(cfg["d_vocab_out"]),
    }
    for layer in range(cfg["n_layers"]):
        a, f = f"blocks.{layer}.attn.", f"blocks.{layer}.mlp."
        for x in "QKV":
            sd[a + f"W_{x}"], sd[a + f"b_{x}"] = r(h, m, d), r(h, d)
        sd[a + "W_O"], sd[a + "b_O"] = r(h, d, m), r(m)
        sd[a + "mask"] = torch.tril(torch.ones(cfg["n_ctx"], cfg["n_ctx"])).bool()  # a TL buffer
        sd[a + "IGNORE"] = torch.tensor(-1e5)
        sd[f + "W_in"], sd[f + "b_in"], sd[f + "W_out"], sd[f + "b_out"] = (
            r(m, mlp),
            r(mlp),
            r(mlp, m),
            r(m),
        )
        if cfg["normalization_type"] == "LN":
            for ln in ("ln1", "ln2"):
                sd[f"blocks.{layer}.{ln}.w"], sd[f"blocks.{layer}.{ln}.b"] = 1 + r(m), r(m)
    if cfg["normalization_type"] == "LN":
        sd["ln_final.w"], sd["ln_final.b"] = 1 + r(m), r(m)
    return sd


def tl_forward(sd: dict[str, torch.Tensor], cfg: dict, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, d_vocab_out], computed in float64 the way HookedTransformer does."""
    sd = {k: v.double() for k, v in sd.items() if v.is_floating_point()}
    norm = cfg["normalization_type"]

    def ln(x, name):
        if norm is None:
            return x
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        return x if norm == "LNPre" else x * sd[f"{name}.w"] + sd[f"{name}.b"]

    act = {"relu": F.relu, "gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}[
        cfg["act_fn"]
    ]
    n_pos = tokens.shape[1]
    resid = sd["embed.W_E"][tokens] + sd["pos_embed.W_pos"][:n_pos]
    causal = torch.ones(n_pos, n_pos).tril().bool()
    for layer in range(cfg["n_layers"]):
        a, f = f"blocks.{layer}.attn.", f"blocks.{layer}.mlp."
        x = ln(resid, f"blocks.{layer}.ln1")
        q = torch.einsum("bpm,hmd->bphd", x, sd[a + "W_Q"]) + sd[a + "b_Q"]
        k = torch.einsum("bpm,hmd->bphd", x, sd[a + "W_K"]) + sd[a + "b_K"]
        v = torch.einsum("bpm,hmd->bphd", x, sd[a + "W_V"]) + sd[a + "b_V"]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(cfg["d_head"])
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        resid = resid + torch.einsum("bqhd,hdm->bqm", z, sd[a + "W_O"]) + sd[a + "b_O"]
        x = ln(resid, f"blocks.{layer}.ln2")
        resid = resid + act(x @ sd[f + "W_in"] + sd[f + "b_in"]) @ sd[f + "W_out"] + sd[f + "b_out"]
    return ln(resid, "ln_final") @ sd["unembed.W_U"] + sd["unembed.b_U"]


def tl_config(p: int, **overrides) -> dict:
    cfg = dict(
        d_model=16,
        n_layers=1,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        d_vocab=p + 1,
        d_vocab_out=p,
        n_ctx=3,
        act_fn="relu",
        normalization_type=None,
        model_name="independent",
        seed=1,
    )
    cfg.update(overrides)
    # What HookedTransformerConfig.to_dict() also writes: harmless keys are ignored,
    # computation-changing ones are checked against the values we can import.
    cfg = {
        "attn_only": False,
        "positional_embedding_type": "standard",
        "use_attn_scale": True,
        "attn_scale": math.sqrt(cfg["d_head"]),
        "eps": 1e-5,
        "n_key_value_heads": None,
        "final_rms": False,
        "gated_mlp": False,
        "parallel_attn_mlp": False,
        "original_architecture": None,
        "dtype": "torch.float32",
        "tokenizer_name": None,
        "init_weights": True,
        "attention_dir": "causal",
        **cfg,
    }
    return cfg


def write_source(folder: Path, cfg: dict, steps: list[int], *, fmt: str) -> dict[int, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    weights = {}
    for step in steps:
        sd = tl_init(cfg, seed=step)
        weights[step] = sd
        if fmt == "safetensors":
            save_file(
                {k: v.contiguous() for k, v in sd.items()}, folder / f"step_{step}.safetensors"
            )
        else:
            torch.save(sd, folder / f"checkpoint_{step}.pt")
    return weights


# -- the import gives the same function
# ----------------------------------------------------------------


CASES = {
    "2-layer-LN-gelu-safetensors-pairs": (
        dict(n_layers=2, normalization_type="LN", act_fn="gelu"),
        "safetensors",
    ),
    "1-layer-no-norm-relu-pt-seed": (dict(), "pt"),
    "LNPre-gelu_new-pt-indices": (
        dict(normalization_type="LNPre", act_fn="gelu_new", n_heads=4, d_head=4),
        "pt",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_imported_models_compute_the_independent_logits(tmp_path, case):
    overrides, fmt = CASES[case]
    p = 11
    cfg = tl_config(p, **overrides)
    weights = write_source(tmp_path / "src", cfg, [0, 100, 1200], fmt=fmt)
    if "pairs" in case:
        pairs = [[a, b] for a in range(p) for b in range(p) if (a * 7 + b * 3) % 5 < 2]
        spec, train_index = (
            {"operation": "add", "p": p, "train_pairs": pairs},
            sorted(a * p + b for a, b in pairs),
        )
    elif "indices" in case:
        train_index = list(range(0, p * p, 3))
        spec = {"operation": "sub", "p": p, "train_indices": train_index}
    else:
        spec = {"operation": "add", "p": p, "split_seed": 4, "train_frac": 0.4}
        train_index = (
            build_task(task_config(operation="add", p=p, split_seed=4, train_frac=0.4))
            .splits["train"]
            .tolist()
        )
    (tmp_path / "task.json").write_text(json.dumps(spec))

    result = import_tl_checkpoints(tmp_path / "src", tmp_path / "run", tmp_path / "task.json")

    assert result.steps == [0, 100, 1200]
    run = load_run(tmp_path / "run")
    assert run.steps == [0, 100, 1200]
    assert check_listed_checkpoints(tmp_path / "run") == [0, 100, 1200]
    assert run.task.splits["train"].tolist() == sorted(train_index)
    assert set(run.task.splits["train"].tolist()).isdisjoint(run.task.splits["test"].tolist())
    tokens = run.task.tokens
    for step in run.steps:
        expected = tl_forward(weights[step], cfg, tokens)
        model = run.model_at(step)
        with torch.inference_mode():
            full = model(tokens)
            fast = answer_logits(model, tokens)
        torch.testing.assert_close(full.double(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast.double(), expected[:, -1], rtol=1e-5, atol=1e-5)
        # The metrics row was computed from the same model.
        row = next(r for r in run.metrics if r["step"] == step)
        train_rows = run.task.splits["train"]
        acc = (
            (expected[train_rows, -1].argmax(-1) == run.task.labels[train_rows])
            .double()
            .mean()
            .item()
        )
        assert row["train_acc"] == pytest.approx(acc)
        loss = F.cross_entropy(expected[train_rows, -1], run.task.labels[train_rows]).item()
        assert row["train_loss"] == pytest.approx(loss, rel=1e-4)
    assert json.loads((tmp_path / "run" / "import.json").read_text())["files"][0]["step"] == 0


# -- refusals: clear message, nothing written
# ------------------------------------------------------------


def _setup(tmp_path: Path, **overrides) -> tuple[Path, dict, dict]:
    cfg = tl_config(7, **overrides)
    weights = write_source(tmp_path / "src", cfg, [5], fmt="safetensors")
    return tmp_path / "src", cfg, weights[5]


def _resave(src: Path, sd: dict) -> None:
    save_file({k: v.contiguous() for k, v in sd.items()}, src / "step_5.safetensors")


SPEC = {"operation": "add", "p": 7, "split_seed": 1, "train_frac": 0.5}


def _nonzero_b_u(src, cfg, sd):
    sd["unembed.b_U"] = torch.full_like(sd["unembed.b_U"], 0.5)
    _resave(src, sd)
    return SPEC, r"step_5\.safetensors: unembed\.b_U is non-zero \(max \|b_U\| = 0\.5\)"


def _missing_tensor(src, cfg, sd):
    del sd["blocks.0.mlp.W_in"]
    _resave(src, sd)
    return SPEC, r"step_5\.safetensors: missing tensor 'blocks\.0\.mlp\.W_in'"


def _wrong_shape(src, cfg, sd):
    sd["blocks.0.attn.W_Q"] = sd["blocks.0.attn.W_Q"].transpose(1, 2).contiguous()
    _resave(src, sd)
    return (
        SPEC,
        r"step_5\.safetensors: blocks\.0\.attn\.W_Q has shape \(2, 8, 16\), the config needs \(2, "
        r"16, 8\)",
    )


def _unexpected_tensor(src, cfg, sd):
    sd["blocks.0.attn.W_extra"] = torch.zeros(3)
    _resave(src, sd)
    return SPEC, r"unexpected tensor 'blocks\.0\.attn\.W_extra'"


def _vocab_mismatch(src, cfg, sd):
    return (
        {**SPEC, "p": 11},
        r"config\.json: d_vocab=8, d_vocab_out=7, n_ctx=3 do not fit the task \(p=11 needs "
        r"d_vocab=12",
    )


def _rotary(src, cfg, sd):
    (src / "config.json").write_text(json.dumps({**cfg, "positional_embedding_type": "rotary"}))
    return SPEC, r"config\.json: positional_embedding_type='rotary' is not supported"


def _parallel(src, cfg, sd):
    (src / "config.json").write_text(json.dumps({**cfg, "parallel_attn_mlp": True}))
    return SPEC, r"config\.json: parallel_attn_mlp=True is not supported; importable: False"


def _bad_act(src, cfg, sd):
    (src / "config.json").write_text(json.dumps({**cfg, "act_fn": "solu_ln"}))
    return (
        SPEC,
        r"config\.json: act_fn='solu_ln' is not supported; importable: relu, gelu, gelu_new, silu",
    )


def _div_not_prime(src, cfg, sd):
    (src / "config.json").write_text(json.dumps({**cfg, "d_vocab": 10, "d_vocab_out": 9}))
    return {
        **SPEC,
        "operation": "div",
        "p": 9,
    }, r"task\.json: task\.p: operation 'div' needs a prime modulus"


def _spec_unknown_key(src, cfg, sd):
    return {**SPEC, "modulus": 7}, r"task\.json: unknown key 'modulus'"


def _spec_bad_pairs(src, cfg, sd):
    return {
        "operation": "add",
        "p": 7,
        "train_pairs": [[1, 9]],
    }, r"train_pairs must be a list of \[a, b\] pairs"


def _spec_no_split(src, cfg, sd):
    return {"operation": "add", "p": 7}, r"task\.json: missing the split"


def _no_step_number(src, cfg, sd):
    (src / "step_5.safetensors").rename(src / "final.safetensors")
    return SPEC, r"final\.safetensors: no step number in the file name"


def _malicious_pt(src, cfg, sd):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {src.parent / 'PWNED'}",))

    (src / "step_7.pt").write_bytes(pickle.dumps({"embed.W_E": Payload()}))
    return (
        SPEC,
        r"step_7\.pt: refused: not a plain tensor state dict; loading it would run code from the "
        r"file \(torch\.load weights_only=True: Unsupported [^)]*\)$",
    )


def _truncated(src, cfg, sd):
    data = (src / "step_5.safetensors").read_bytes()
    (src / "step_5.safetensors").write_bytes(data[:100])
    return SPEC, r"step_5\.safetensors: not a valid safetensors file"


REFUSALS = [
    _nonzero_b_u,
    _missing_tensor,
    _wrong_shape,
    _unexpected_tensor,
    _vocab_mismatch,
    _rotary,
    _parallel,
    _bad_act,
    _div_not_prime,
    _spec_unknown_key,
    _spec_bad_pairs,
    _spec_no_split,
    _no_step_number,
    _malicious_pt,
    _truncated,
]


@pytest.mark.parametrize("damage", REFUSALS, ids=[f.__name__.strip("_") for f in REFUSALS])
def test_import_refuses_with_a_message_naming_the_file_and_writes_nothing(tmp_path, damage):
    src, cfg, sd = _setup(tmp_path)
    spec, pattern = damage(src, cfg, sd)
    (tmp_path / "task.json").write_text(json.dumps(spec))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ImportCheckpointError, match=pattern) as info:
        import_tl_checkpoints(src, tmp_path / "run", tmp_path / "task.json")
    assert "\n" not in str(info.value)
    assert "weights_only=False" not in str(info.value)  # never advise the unsafe loader
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, no staging folder
    assert not (tmp_path / "PWNED").exists()


def test_import_refuses_a_non_empty_output_folder(tmp_path):
    src, _, _ = _setup(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    with pytest.raises(ImportCheckpointError, match=r"^/.*run: exists and is not an empty folder"):
        import_tl_checkpoints(src, tmp_path / "run", SPEC)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]
