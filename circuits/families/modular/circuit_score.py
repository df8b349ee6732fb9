"""The modular family's progress measure: `circuit_score`, from training data alone.

`circuit_score` (modular tasks) — computed from training examples only, no test labels:

1. Take the model's logits on the training examples and center each row over outputs
   (softmax is shift-invariant, so only these centered logits carry the answer signal).
2. Average the rows within each answer value ("fiber"): A[y, c] = mean of logit c over the
   training examples whose answer is y. The model's correct-answer signal on the training
   set, S = (1/m) Σ_y A[y, y] (fibers weighted equally), lives entirely in A: the rest of
   each row varies within a fiber and averages out of the correct-logit signal.
3. Order answers by their position in the task's cyclic group (identity for + and −,
   discrete log for × and ÷) and split S exactly over frequencies:
   S = Σ_k S_k, S_k = (1/m) tr(P_k A), P_k = projector on {cos, sin}(2πk·/m).
   A Fourier circuit A[y, c] = Σ_k α_k cos(2πk(y − c)/m) puts all of S into its few key
   frequencies; a memorizing lookup table A ≈ β·I spreads S evenly, 2/m per frequency.
4. If S is within 5 standard errors of 0 (estimated from the spread of logits inside each
   fiber) the model has no detectable training signal yet and the score is 0. Otherwise,
   with S_k sorted descending, n = number of frequencies and D = max(S, Σ_k |S_k|),
   circuit_score = max over j ≤ min(n/2, 8) of (Σ_{top j} S_k − (j/n)·S) / ((1 − j/n)·D), clipped
   to [0, 1]: the signal in the best j frequencies above what a flat (memorized) spectrum
   would put there, normalized so that all signal in j frequencies scores 1. D equals S
   when every frequency adds to the answer; it is larger when components cancel
   (structure unrelated to the labels, as in a freshly initialized model), which keeps
   such structure from posing as a circuit. j is capped at 8 because a Fourier circuit uses
   a handful of frequencies (3–7 in published runs); a signal spread over half the
   spectrum is not one.
   The members of the maximizing set with at least twice a flat share (S_k ≥ 2S/n) are
   reported as the checkpoint's `train_key_frequencies`.
5. Chance correction by a permutation null: the same concentration computed after
   relabeling the answers by random permutations (rows and columns of A together) keeps
   a lookup table's statistics but destroys any structure tied to the group. With ν the
   mean null value (16 fixed-seed permutations), circuit_score = (raw − ν)/(1 − ν),
   clipped to [0, 1]. This removes the bias of picking the best j of n noisy frequencies,
   which is large when there are few training examples per answer. Call the result the
   *concentration*.
6. The circuit must be in use: circuit_score = concentration × `decided`, the fraction of
   training examples the model answers correctly. The concentration reads fiber *means*,
   which keep the Fourier pattern even when it no longer decides anything: after a collapse
   (⊥Grad with weight decay shrinks the weights until the direct path and the biases
   outweigh the MLP) the means stay 99 % Fourier while train accuracy falls to 5 %. Per-
   example gates based on the key frequencies alone were tried and rejected: with the 2–3
   frequencies a fast run uses, the cut-down logit row has near-ties (cos 2π·7d/113 ≈ 1 at
   d = 16), so grokked checkpoints read 0.77–1.0 from one checkpoint to the next. During
   circuit formation the memorized part keeps train accuracy at 1, so the gate does not
   delay the lead; a grokked model has decided ≈ 1 and the score equals the concentration.

Meaning: 0 = the training signal is spread over frequencies as a lookup table's is (or
there is no signal yet); 1 = all of it is carried by a few answer frequencies, as the
generalizing circuit's is. Caveats: it sees only the answer-space structure, so a
generalizing algorithm that is not Fourier-sparse in the task's group (the polynomial
operations, for which we know no group) is not recognised; with very few training
examples per answer value the fiber means are noisy, which the significance gate and the
chance correction absorb only on average (expect ±0.05 of noise on a memorizing model);
a fiber with no training example (tiny p·train fraction, or a small `train_subset`) makes
the score undefined: NaN in the table, treated as missing (never as a fall to 0) by the
phases, the leads and the sweep's events.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.phases import first_crossing  # noqa: F401 (re-exported: tests and notebooks use it)
from circuits.families.modular.fourier import AnswerGroup, answer_group


@dataclass(frozen=True)
class CircuitScore:
    score: float  # concentration × decided
    key_frequencies: list[int]
    signal: float  # S: fiber-balanced mean centered correct logit on the training set
    frequency_signal: Float[Tensor, " freq"]  # S_k for k = 1 … m//2 (index 0 = k=1)
    #: chance-corrected share of S in the best few frequencies (steps 1-5 of the docstring)
    concentration: float = 0.0
    #: fraction of the training examples the model answers correctly (step 6)
    decided: float = 0.0


def _fiber_stats(
    logits: Float[Tensor, "example d_vocab_out"],
    labels: Int[Tensor, " example"],
    group: AnswerGroup,
) -> tuple[Float[Tensor, "m m"], Float[Tensor, "m m"]] | None:
    """Fiber means A[y, c] and their sampling variances, answers in group order.

    Only answers inside the group are kept (rows and output columns); None if a fiber is empty.
    """
    centered = logits.double() - logits.double().mean(dim=-1, keepdim=True)
    pos = group.position[labels]
    inside = pos >= 0
    pos, centered = pos[inside], centered[inside]
    m = group.m
    counts = torch.bincount(pos, minlength=m).double()
    if (counts == 0).any():
        return None
    sums = torch.zeros(m, centered.shape[1], dtype=torch.float64).index_add_(0, pos, centered)
    squares = torch.zeros_like(sums).index_add_(0, pos, centered.pow(2))
    means = sums / counts[:, None]
    within = (
        (squares / counts[:, None] - means.pow(2)).clamp(min=0)
        * counts[:, None]
        / (counts[:, None] - 1).clamp(min=1)
    )
    variances = within / counts[:, None]
    order = torch.argsort(group.position)
    columns = order[group.position[order] >= 0]
    return means[:, columns], variances[:, columns]


@functools.lru_cache(maxsize=16)
def _frequency_tables(m: int) -> tuple[Tensor, Tensor]:
    """(cyclic diagonal index of each (y, y') cell, weighted cosines [freq, d])."""
    y = torch.arange(m)
    diagonal_of = (y[:, None] - y[None, :]).remainder(m).flatten()
    ks = torch.arange(1, m // 2 + 1, dtype=torch.float64)
    weights = torch.full_like(ks, 2.0 / m)
    weights[ks * 2 == m] = 1.0 / m  # a Nyquist row (even m) is a single cosine
    cosines = torch.cos(2 * math.pi * ks[:, None] * torch.arange(m, dtype=torch.float64)[None] / m)
    return diagonal_of, weights[:, None] * cosines / m


def _frequency_signal(A: Float[Tensor, "... m m"]) -> Float[Tensor, "... freq"]:
    """S_k = tr(P_k A)/m for k = 1 … m//2, with P_k the projector on frequency k over Z_m.

    P_k[y, y'] = (2/m) cos(2πk(y − y')/m) (1/m for a Nyquist row); summing A along its
    cyclic diagonals first (d = y − y' mod m) makes this O(m²). Batched over leading axes.
    """
    m = A.shape[-1]
    diagonal_of, table = _frequency_tables(m)
    flat = A.transpose(-1, -2).reshape(-1, m * m)
    diag_sums = torch.zeros(flat.shape[0], m, dtype=torch.float64).index_add_(1, diagonal_of, flat)
    return (diag_sums @ table.T).reshape(*A.shape[:-2], -1)


def _concentration(freq_signal: Tensor, signal: float, max_keys: int) -> tuple[float, int, Tensor]:
    """max_j (Σ_top-j S_k − (j/n)·S) / ((1 − j/n)·D): excess of the best j frequencies over flat."""
    n_freq = freq_signal.numel()
    # D = max(S, Σ|S_k|) equals S when every frequency adds to the answer and is larger when
    # components cancel (structure unrelated to the labels), which keeps that from scoring.
    denominator = max(signal, float(freq_signal.abs().sum()))
    ordered, order = freq_signal.sort(descending=True)
    cumulative = ordered.cumsum(0)
    best, best_j = 0.0, 0
    for j in range(1, min(n_freq // 2, max_keys) + 1):
        chance = j / n_freq
        value = (float(cumulative[j - 1]) - chance * signal) / ((1 - chance) * denominator)
        if value > best:
            best, best_j = value, j
    return best, best_j, order


def circuit_score(
    logits: Float[Tensor, "example d_vocab_out"],
    labels: Int[Tensor, " example"],
    operation: str,
    p: int,
    *,
    min_z: float = 5.0,
    max_keys: int = 8,
    n_null: int = 16,
) -> CircuitScore:
    """The memorization-vs-circuit share of the training signal (module docstring)."""
    group = answer_group(operation, p)
    stats = _fiber_stats(logits, labels, group)
    m = group.m
    n_freq = m // 2
    if stats is None or n_freq < 2:
        # An answer with no training example (or a group too small for a spectrum): the score
        # is undefined, not 0, so that phases, collapses and sweep events read it as missing.
        nan = float("nan")
        empty = torch.zeros(max(n_freq, 0), dtype=torch.float64)
        return CircuitScore(nan, [], nan, empty, concentration=nan, decided=nan)
    A, var_A = stats
    freq_signal = _frequency_signal(A)
    signal = float(A.diagonal().mean())
    # Sampling noise of S (fiber means are averages of a few examples each): below `min_z`
    # standard errors the model has no clear training signal yet, and shares are noise.
    signal_se = float(var_A.diagonal().sum().sqrt()) / m
    if signal <= min_z * signal_se:
        return CircuitScore(0.0, [], signal, freq_signal)
    raw, best_j, order = _concentration(freq_signal, signal, max_keys)
    # Permutation null: relabel answers by a random permutation (rows and columns together).
    # A lookup table's statistics do not change, a circuit ordered by the group is destroyed;
    # the mean null score is the concentration that noise alone produces at this sample size.
    generator = torch.Generator().manual_seed(0)
    perms = torch.stack([torch.randperm(m, generator=generator) for _ in range(n_null)])
    permuted = A[perms[:, :, None], perms[:, None, :]]  # [n_null, m, m]
    null = (
        sum(_concentration(fs, signal, max_keys)[0] for fs in _frequency_signal(permuted)) / n_null
    )
    concentration = min(max((raw - null) / (1 - null) if null < 1 else 0.0, 0.0), 1.0)
    shares = freq_signal[order[:best_j]] / signal
    # Key frequencies: members of the best set carrying at least twice a flat share.
    keys = sorted(int(k) + 1 for k, share in zip(order[:best_j], shares) if share >= 2 / n_freq)
    # The circuit must decide the training answers, not just shape their averages.
    decided = float((logits.argmax(dim=-1) == labels).double().mean())
    return CircuitScore(concentration * decided, keys, signal, freq_signal, concentration, decided)


def make_modular_evaluator(operation: str, p: int):
    """Training-time evaluator: the progress measures, from logits the trainer already has.

    During training the final key frequencies are not known yet, so the restricted and
    excluded losses here use the checkpoint's own `train_key_frequencies` (the answer
    frequencies that carry its training signal); `interp analyze` recomputes them with the
    final checkpoint's key frequencies, as Nanda et al. do.
    """
    from circuits.families.modular import fourier

    basis = fourier.fourier_basis(p)
    group = fourier.answer_group(operation, p)

    def evaluate(
        model: Any, task: Any, by_split: dict[str, tuple[Tensor, Tensor]]
    ) -> dict[str, Any]:
        logits, labels = by_split["train"]
        result = circuit_score(logits.cpu(), labels.cpu(), operation, p)
        row: dict[str, Any] = {
            "circuit_score": result.score,
            "train_key_frequencies": result.key_frequencies,
        }
        W_L = model.blocks[-1].mlp.W_out @ model.W_U
        spectrum = fourier.embedding_spectrum(model.W_E.cpu(), W_L.cpu(), basis)
        row["gini_embed"], row["gini_unembed"] = spectrum.gini_embed, spectrum.gini_unembed
        if result.key_frequencies:
            full = torch.zeros(task.n_examples, logits.shape[1], dtype=torch.float64)
            for name, (split_logits, _) in by_split.items():
                full[task.splits[name]] = split_logits.cpu().double()
            directions = fourier.answer_directions(task.labels, group, result.key_frequencies)
            losses = fourier.restricted_and_excluded_loss(
                full, task.labels, task.splits["train"], task.splits["test"], directions
            )
            row["restricted_loss"], row["excluded_loss"] = (
                losses.restricted_loss,
                losses.excluded_loss,
            )
        return row

    return evaluate
