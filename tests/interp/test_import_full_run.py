"""Issue 25: any checkpoint source in one command.

`interp import` / `interp analyze SRC --task …` read the single-file format of the published
mod-113 grokking run (`full_run_data.pth`: a dict whose `state_dicts` list holds the paper's
original, pre-TransformerLens layout). The file is built here from a tiny run of this project by
an inverse conversion written from the published layout (progress-measures-paper
`transformers.py`: `W_E [d_model, d_vocab]`, `W_Q [heads, d_head, d_model]`,
`W_O [d_model, heads·d_head]`, `W_in [d_mlp, d_model]`, `W_out [d_model, d_mlp]`,
`W_U [d_model, p + 1]`), not by calling the importer's conversion, and checked against an
independent forward written from the same code.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
from einops import rearrange
from safetensors.torch import save_file

from interp.cli import main
from interp.import_specs import original_split, task_from_spec
from interp.model import answer_logits, tl_named_parameters, to_tl_layout
from interp.runs import load_run
from tests.conftest import handbuilt_fourier_model

STEPS = [0, 20, 40, 60, 80]  # the tiny run's checkpoints every 20 steps, then a grokked one
GROKKED_FREQUENCIES = [2, 4]
ATTN_BIASES = ("attn.b_Q", "attn.b_K", "attn.b_V", "attn.b_O")


def tl_weights(run, step: int) -> dict[str, torch.Tensor]:
    """The run's weights in TL names and layouts, attention biases zeroed (the original
    architecture has none)."""
    model = run.model_at(step)
    tl = {
        name: to_tl_layout(name, p.detach().clone(), model.cfg.n_heads)
        for name, p in tl_named_parameters(model).items()
    }
    return {k: torch.zeros_like(v) if k.endswith(ATTN_BIASES) else v for k, v in tl.items()}


def grokked_weights(p: int, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The hand-built Fourier model (conftest) in the tiny run's shapes: its one head of
    d_head 4 becomes the first 4 dimensions of head 0, every other head weight is zero."""
    model = handbuilt_fourier_model(p, GROKKED_FREQUENCIES, d_model=16, d_mlp=32)
    out = {k: torch.zeros_like(v) for k, v in like.items()}
    for name, param in tl_named_parameters(model).items():
        value = to_tl_layout(name, param.detach().clone(), 1)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("W_Q", "W_K", "W_V"):  # [head, d_model, d_head]
            out[name][0, :, :4] = value[0]
        elif leaf == "W_O":  # [head, d_head, d_model]
            out[name][0, :4] = value[0]
        elif leaf in ("b_Q", "b_K", "b_V"):  # [head, d_head]
            out[name][0, :4] = value[0]
        else:
            out[name] = value
    return out


def to_original(tl: dict[str, torch.Tensor], equals_logit: torch.Tensor) -> dict[str, torch.Tensor]:
    """TL layout -> the published original layout (module docstring); `equals_logit` is the
    unembedding column of the `=` token, which the original model also outputs."""
    sd = {
        "embed.W_E": tl["embed.W_E"].T.contiguous(),  # [d_model, d_vocab]
        "pos_embed.W_pos": tl["pos_embed.W_pos"],  # [n_ctx, d_model]
        "unembed.W_U": torch.cat([tl["unembed.W_U"], equals_logit[:, None]], 1),  # [d_model, p+1]
    }
    layers = {k.split(".")[1] for k in tl if k.startswith("blocks.")}
    for layer in sorted(layers):
        b = f"blocks.{layer}."
        for x in "QKV":  # TL [head, d_model, d_head] -> [head, d_head, d_model]
            sd[b + f"attn.W_{x}"] = tl[b + f"attn.W_{x}"].transpose(1, 2).contiguous()
        w_o = tl[b + "attn.W_O"]  # TL [head, d_head, d_model] -> [d_model, head * d_head]
        sd[b + "attn.W_O"] = w_o.permute(2, 0, 1).reshape(w_o.shape[2], -1).contiguous()
        sd[b + "attn.mask"] = torch.tril(torch.ones(3, 3))  # the original's causal-mask buffer
        sd[b + "mlp.W_in"] = tl[b + "mlp.W_in"].T.contiguous()  # [d_mlp, d_model]
        sd[b + "mlp.b_in"] = tl[b + "mlp.b_in"]
        sd[b + "mlp.W_out"] = tl[b + "mlp.W_out"].T.contiguous()  # [d_model, d_mlp]
        sd[b + "mlp.b_out"] = tl[b + "mlp.b_out"]
    return sd


def original_forward(sd: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, p + 1] as the paper's `Transformer.forward` computes them (float64)."""
    sd = {k: v.double() for k, v in sd.items()}
    x = torch.einsum("dbp -> bpd", sd["embed.W_E"][:, tokens])
    x = x + sd["pos_embed.W_pos"][: x.shape[-2]]
    n = x.shape[-2]
    for layer in sorted({k.split(".")[1] for k in sd if k.startswith("blocks.")}):
        b = f"blocks.{layer}."
        k, q, v = (torch.einsum("ihd,bpd->biph", sd[b + f"attn.W_{c}"], x) for c in "KQV")
        scores = torch.einsum("biph,biqh->biqp", k, q)
        masked = torch.tril(scores) - 1e10 * (1 - sd[b + "attn.mask"][:n, :n])
        attn = torch.softmax(masked / math.sqrt(k.shape[-1]), dim=-1)
        z = rearrange(torch.einsum("biph,biqp->biqh", v, attn), "b i q h -> b q (i h)")
        x = x + torch.einsum("df,bqf->bqd", sd[b + "attn.W_O"], z)
        pre = torch.einsum("md,bpd->bpm", sd[b + "mlp.W_in"], x) + sd[b + "mlp.b_in"]
        x = x + torch.einsum("dm,bpm->bpd", sd[b + "mlp.W_out"], pre.relu()) + sd[b + "mlp.b_out"]
    return x @ sd["unembed.W_U"]


@pytest.fixture(scope="module")
def sources(tiny_run, tmp_path_factory) -> dict:
    """The tiny run's checkpoints every 20 steps, written as a single original-layout file and as
    a TL folder (the existing format), each imported and analyzed through the CLI."""
    root = tmp_path_factory.mktemp("full_run")
    run = load_run(tiny_run)
    p = run.config.task.p
    g = torch.Generator().manual_seed(5)
    tl = {step: tl_weights(run, step) for step in STEPS[:-1]}
    tl[STEPS[-1]] = grokked_weights(p, tl[0])
    original = [to_original(tl[s], torch.randn(16, generator=g)) for s in STEPS]
    train = run.task.splits["train"].tolist()
    test = run.task.splits["test"].tolist()
    torch.save(
        {
            "state_dicts": original,
            "train_losses": [float(i) for i in range(81)],  # one per epoch, as the trainer logs
            "test_losses": [0.5] * 7,
            "train_data": [(i // p, i % p, p) for i in train],  # as the original trainer saves
            "test_data": [(i // p, i % p, p) for i in test],
        },
        root / "full_run_data.pth",
    )
    folder = root / "tl"
    folder.mkdir()
    cfg = dict(d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32, d_vocab=p + 1)
    cfg.update(d_vocab_out=p, n_ctx=3, act_fn="relu", normalization_type=None)
    (folder / "config.json").write_text(json.dumps(cfg))
    for step in STEPS:
        save_file(
            {k: v.contiguous() for k, v in tl[step].items()}, folder / f"step_{step}.safetensors"
        )
    (root / "file_task.json").write_text(json.dumps({"operation": "add"}))
    (root / "tl_task.json").write_text(
        json.dumps({"operation": "add", "p": p, "train_indices": train})
    )
    file_run, tl_run = root / "from_file", root / "from_tl"
    file_import = ["import", str(root / "full_run_data.pth"), "--out", str(file_run)]
    assert main([*file_import, "--task", str(root / "file_task.json"), "--every", "20"]) == 0
    tl_import = ["import", str(folder), "--out", str(tl_run), "--task", str(root / "tl_task.json")]
    assert main(tl_import) == 0
    for run_dir in (file_run, tl_run):
        assert main(["analyze", str(run_dir), "--fourier", "--no-figures", "-q", "--json"]) == 0
    return {
        "file": root / "full_run_data.pth",
        "file_run": file_run,
        "tl_run": tl_run,
        "task": root / "file_task.json",
        "original": original,
        "train": train,
    }


def table(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "analysis" / "table.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_single_file_import_equals_the_tl_folder_import(sources):
    file_rows, tl_rows = table(sources["file_run"]), table(sources["tl_run"])
    assert [r["step"] for r in file_rows] == [str(s) for s in STEPS]
    assert file_rows[-1]["neuron_key_frequencies"] == "2 4", file_rows[-1]  # the grokked one
    assert float(file_rows[-1]["test_acc"]) == 1.0
    fourier = [c for c in file_rows[0] if "gini" in c or "restricted" in c or "excluded" in c]
    assert fourier, list(file_rows[0])
    assert file_rows == tl_rows  # every column, the --fourier ones included, to the digit
    run = load_run(sources["file_run"])
    assert run.task.splits["train"].tolist() == sources["train"]  # the split stored in the file
    record = json.loads((sources["file_run"] / "import.json").read_text())
    assert record["layout"] == "original"
    assert record["source_curves"]["train_losses"]["at_steps"] == [float(s) for s in STEPS]
    assert "at_steps" not in record["source_curves"]["test_losses"]  # 7 values: ambiguous


def test_the_conversion_is_exact_against_the_original_forward(sources):
    run = load_run(sources["file_run"])
    tokens = run.task.tokens
    for step, sd in zip(STEPS, sources["original"]):
        expected = original_forward(sd, tokens)[:, -1, :-1]  # the `=` logit dropped
        with torch.inference_mode():
            got = answer_logits(run.model_at(step), tokens).double()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_analyze_in_one_command_equals_import_then_analyze(sources, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["analyze", str(sources["file"]), "--task", str(sources["task"]), "--every", "20"]
    argv += ["--fourier", "--no-figures", "-q", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    run_dir = Path(err.strip().splitlines()[-1].split(" into ")[-1])
    assert run_dir.parent == tmp_path / "cache" / "imports"
    assert run_dir.name.startswith("full_run_data-")
    json.loads(out)  # stdout stays pure JSON: the import is announced on stderr
    assert table(run_dir) == table(sources["file_run"])
    stamp = (run_dir / "import.json").stat().st_mtime_ns

    assert main(argv) == 0  # the same source again: the import is reused
    _, err = capsys.readouterr()
    assert f"reusing the import of {sources['file']} in {run_dir}" in err
    assert (run_dir / "import.json").stat().st_mtime_ns == stamp

    os.utime(sources["file"])  # a changed source is imported again, into its own folder
    assert main(argv) == 0
    _, err = capsys.readouterr()
    again = Path(err.strip().splitlines()[-1].split(" into ")[-1])
    assert again != run_dir and table(again) == table(run_dir)

    chosen = tmp_path / "chosen"  # --out chooses the folder; a second run reuses it
    assert main([*argv, "--out", str(chosen)]) == 0
    assert main([*argv, "--out", str(chosen)]) == 0
    assert "reusing" in capsys.readouterr().err and table(chosen) == table(run_dir)


def test_a_run_folder_is_analyzed_as_before(sources, capsys):
    assert main(["analyze", str(sources["tl_run"]), "--fourier", "--no-figures", "-q"]) == 0
    assert "import" not in capsys.readouterr().err
    bad = ["analyze", str(sources["tl_run"]), "--task", str(sources["task"])]
    assert main(bad) == 2
    assert "--task: only for checkpoints to import" in capsys.readouterr().err


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["import", "analyze"])
def test_a_file_that_needs_unpickling_is_refused_in_one_line(sources, tmp_path, capsys, command):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "full_run_data.pth"
    torch.save({"state_dicts": sources["original"], "config": Payload(marker)}, bad)
    argv = [command, str(bad), "--task", str(sources["task"]), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weights_only=False" not in err
    assert err.startswith(f"error: {bad}: refused: not plain tensors and containers; loading it")
    assert not marker.exists() and not (tmp_path / "run").exists()


def _spec(tmp_path: Path, spec: dict, name: str = "task") -> str:
    (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    return str(tmp_path / f"{name}.json")


def test_missing_or_mismatched_task_specs_are_clear_errors(sources, tmp_path, capsys):
    file, out = str(sources["file"]), ["--out", str(tmp_path / "run"), "--every", "20"]
    train = sources["train"]
    cases = [
        ([], "error: --task: required to import"),
        (["--task", str(tmp_path / "nope.json")], "nope.json: no such task spec file"),
        (["--task", _spec(tmp_path, {"p": 11}, "a")], "a.json: missing 'operation'"),
        (
            ["--task", _spec(tmp_path, {"operation": "add", "p": 13}, "b")],
            "b.json: p=13, but " + file + " holds a model for p = 11 (d_vocab = 12)",
        ),
        (
            ["--task", _spec(tmp_path, {"operation": "add", "train_indices": train[1:]}, "c")],
            "c.json: its split differs from the one stored in " + file,
        ),
    ]
    for extra, message in cases:
        assert main(["analyze", file, *out, *extra]) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    assert not (tmp_path / "run").exists()

    data = torch.load(sources["file"], weights_only=True)  # no split in the file, none in the spec
    del data["train_data"], data["test_data"]
    torch.save(data, tmp_path / "nosplit.pth")
    spec = _spec(tmp_path, {"operation": "add"})
    assert main(["import", str(tmp_path / "nosplit.pth"), *out, "--task", spec]) == 2
    missing = "missing the split: train_indices, train_pairs, split_seed + train_frac, or shuffle"
    assert missing in capsys.readouterr().err


def test_layout_problems_are_refused_naming_the_checkpoint(sources, tmp_path, capsys):
    spec = _spec(tmp_path, {"operation": "add"})

    def refused(data: dict, message: str, *extra: str) -> None:
        torch.save(data, tmp_path / "run.pth")
        argv = ["import", str(tmp_path / "run.pth"), "--out", str(tmp_path / "o"), "--task", spec]
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err, err

    base = torch.load(sources["file"], weights_only=True)
    with_ln = [dict(sd) for sd in base["state_dicts"]]
    with_ln[1]["blocks.0.ln1.w_ln"] = torch.ones(16)
    message = "state_dicts[1] (step 100): unexpected tensor 'blocks.0.ln1.w_ln' (LayerNorm"
    refused({**base, "state_dicts": with_ln}, message)
    wrong = [dict(sd) for sd in base["state_dicts"]]
    wrong[2]["blocks.0.mlp.W_in"] = wrong[2]["blocks.0.mlp.W_in"].T
    refused(
        {**base, "state_dicts": wrong}, "state_dicts[2] (step 200): blocks.0.mlp.W_in has shape"
    )
    message = "--every " + str(tmp_path / "run.pth") + " lists epochs [0, 10, 20]…, not every 20"
    refused({**base, "epochs": [0, 10, 20, 30, 40]}, message, "--every", "20")
    refused({"weights": 1}, "not a single-file run")
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(sources["file"].read_bytes()[:5000])
    assert main(["import", str(damaged), "--out", str(tmp_path / "o"), "--task", spec]) == 2
    assert f"error: {damaged}: cannot be read as a torch.save file (" in capsys.readouterr().err


def test_original_split_is_the_original_trainers_split():
    # gen_train_test of the published code: Python's random over (i, j, p) triples, seed 0, 30 %.
    p, frac, seed = 113, 0.3, 0
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(seed)
    random.shuffle(pairs)
    expected = sorted(i * p + j for i, j, _ in pairs[: int(frac * len(pairs))])
    assert original_split(p, frac, seed) == expected and len(expected) == 3830
    task = task_from_spec({"operation": "add", "p": p, "shuffle_seed": seed, "train_frac": frac})
    assert task.splits["train"].tolist() == expected and len(task.splits["test"]) == 8939
