"""Fourier analysis of modular-arithmetic models (Nanda et al. 2023; ANCHORS §1).

Conventions (fixed, tested):
- Fourier basis over Z_p: row 0 is the constant 1/sqrt(p); for k = 1 … (p-1)//2, row 2k-1 is
  cos(2πkx/p) and row 2k is sin(2πkx/p), each of unit L2 norm (cos before sin). For even p a
  final row holds cos(πx) = (-1)^x. The matrix is orthonormal, shape [p, p].
- "Frequency k" means the pair of rows (2k-1, 2k); frequency 0 is the constant row.
- Inputs are enumerated a-major: example a*p + b, so a [p*p, ...] tensor reshapes to [p, p, ...].

The restricted / excluded losses project the logit table onto directions that depend on
the inputs only through the answer: cos(2πk·φ(answer)/m) and sin(...), normalized over the
p² inputs. For addition φ is the identity, m = p, and these are exactly Nanda's
u_k = (c_k⊗c_k − s_k⊗s_k)/√2 and v_k = (s_k⊗c_k + c_k⊗s_k)/√2. For subtraction the same
with a−b. For x·y and x/y with prime p, φ is the discrete logarithm (the multiplicative
group is cyclic of order m = p−1, so the circuit is a Fourier circuit over the logs); inputs
whose answer is 0 get no direction. For the polynomial operations no group structure is
known: φ is the identity, and these measures are heuristics there (see docs/metrics.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.metrics import per_example_cross_entropy

#: Operations whose answer-space Fourier circuit is over Z_p with φ = identity.
ADDITIVE_OPS = frozenset({"add", "sub"})
#: Operations whose circuit lives on the multiplicative group (needs prime p).
MULTIPLICATIVE_OPS = frozenset({"mul", "div"})


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> Float[Tensor, "basis x"]:
    """The orthonormal real Fourier basis over Z_p (rows), constant first, then cos/sin pairs."""
    x = torch.arange(p, dtype=dtype)
    rows = [torch.ones(p, dtype=dtype)]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(torch.cos(2 * math.pi * k * x / p))
        rows.append(torch.sin(2 * math.pi * k * x / p))
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * x))
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def basis_names(p: int) -> list[str]:
    names = ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        names += [f"cos {k}", f"sin {k}"]
    if p % 2 == 0:
        names.append(f"cos {p // 2}")
    return names


def n_frequencies(p: int) -> int:
    """Number of non-constant frequencies: k = 1 … floor(p/2)."""
    return p // 2


def frequency_rows(k: int, p: int) -> list[int]:
    """Basis rows belonging to frequency k (the constant row for k = 0)."""
    if k == 0:
        return [0]
    if p % 2 == 0 and k == p // 2:
        return [p - 1]
    return [2 * k - 1, 2 * k]


def fft2d(
    x: Float[Tensor, "a b ..."], basis: Float[Tensor, "basis x"]
) -> Float[Tensor, "basis_a basis_b ..."]:
    """F · X · Fᵀ over the two leading input axes (any trailing axes are carried along)."""
    basis = basis.to(x.dtype)
    return einops.einsum(basis, basis, x, "fa a, fb b, a b ... -> fa fb ...")


def per_frequency_norms(in_basis: Float[Tensor, "basis ..."], p: int) -> Float[Tensor, " freq"]:
    """L2 norm per frequency (cos and sin rows pooled), index 0 = constant; length floor(p/2)+1."""
    sq = in_basis.pow(2).reshape(in_basis.shape[0], -1).sum(-1)
    return sq.new_zeros(n_frequencies(p) + 1).index_add_(0, _frequency_of_row(p), sq).sqrt()


@functools.lru_cache(maxsize=16)
def _frequency_of_row(p: int) -> Int[Tensor, " basis"]:
    """The frequency each basis row belongs to (the inverse of `frequency_rows`)."""
    of_row = torch.zeros(p, dtype=torch.long)
    for k in range(1, n_frequencies(p) + 1):
        of_row[frequency_rows(k, p)] = k
    return of_row


def gini(values: Float[Tensor, " n"]) -> float:
    """Gini coefficient of non-negative values: 0 = all equal, → 1 = all mass in one entry."""
    x = values.detach().double().flatten().sort().values
    n = x.numel()
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


# --------------------------------------------------------------------------------------
# Answer-space group structure
# --------------------------------------------------------------------------------------


def primitive_root(p: int) -> int:
    """Smallest generator of the multiplicative group mod prime p."""
    phi = p - 1
    factors = {
        d
        for d in range(2, phi + 1)
        if phi % d == 0 and all(d % q for q in range(2, math.isqrt(d) + 1))
    }
    for g in range(2, p):
        if all(pow(g, phi // q, p) != 1 for q in factors):
            return g
    return 1  # p = 2


@dataclass(frozen=True)
class AnswerGroup:
    """How answers embed in a cyclic group Z_m: answer c ↦ position φ(c) (−1 = outside the
    group)."""

    m: int
    position: Int[Tensor, " answer"]
    kind: str  # "additive", "multiplicative" or "heuristic"


def answer_group(operation: str, p: int) -> AnswerGroup:
    from interp.config_base import is_prime

    if operation in MULTIPLICATIVE_OPS and is_prime(p):
        g = primitive_root(p)
        position = torch.full((p,), -1, dtype=torch.long)
        value = 1
        for exponent in range(p - 1):
            position[value] = exponent
            value = value * g % p
        return AnswerGroup(m=p - 1, position=position, kind="multiplicative")
    kind = "additive" if operation in ADDITIVE_OPS else "heuristic"
    return AnswerGroup(m=p, position=torch.arange(p), kind=kind)


def answer_directions(
    labels: Int[Tensor, " example"], group: AnswerGroup, frequencies: list[int]
) -> Float[Tensor, "direction example"]:
    """Unit vectors cos(2πk·φ(y)/m), sin(2πk·φ(y)/m) over examples, two per frequency k.

    Examples without an answer (label −1) or outside the group get 0. For addition over the
    full grid these are exactly Nanda's u_k and v_k.
    """
    safe = labels.clamp(min=0)
    pos = torch.where(labels >= 0, group.position[safe], torch.full_like(labels, -1))
    inside = (pos >= 0).double()
    angle = 2 * math.pi * pos.double() / group.m
    rows = []
    for k in frequencies:
        for fn in (torch.cos, torch.sin):
            vec = fn(k * angle) * inside
            norm = vec.norm()
            rows.append(vec / norm if norm > 1e-9 else vec)
    if not rows:
        return torch.zeros(0, labels.numel(), dtype=torch.float64)
    return torch.stack(rows)


# --------------------------------------------------------------------------------------
# Embeddings, neurons, losses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronClusters:
    """Each neuron's dominant frequency and the fraction of its variance that frequency explains."""

    frequency: Int[Tensor, " d_mlp"]  # −1 = unclustered (best fraction < threshold) or dead
    fraction_explained: Float[Tensor, " d_mlp"]
    threshold: float

    def counts(self, n_freq: int) -> Int[Tensor, " freq"]:
        """Neurons per frequency, index 0 unused (frequency 0 is never a cluster)."""
        valid = self.frequency[self.frequency > 0]
        return torch.bincount(valid, minlength=n_freq + 1)

    @property
    def frac_clustered(self) -> float:
        return float((self.frequency > 0).double().mean())


def neuron_clusters(
    mlp_post: Float[Tensor, "a b d_mlp"], basis: Float[Tensor, "basis x"], threshold: float = 0.85
) -> NeuronClusters:
    """Cluster neurons by frequency (ANCHORS §1), testing every k including (p−1)/2.

    Each neuron's final-position activation over the p² inputs is centered and 2-D
    transformed; for each k the fraction of its squared norm in the 3×3 block
    {const, cos k, sin k}² is computed; the argmax is its frequency if ≥ `threshold`.
    """
    if is_fourier_basis(basis):
        block, total = _block_energies_fft(mlp_post)
    else:
        as_f64 = mlp_post.double()
        block, total = _block_energies_einsum(as_f64 - as_f64.mean(dim=(0, 1), keepdim=True), basis)
    frac = block / total.clamp(min=1e-30)  # [freq, d_mlp]
    best, arg = frac.max(dim=0)
    alive = total > 1e-12
    frequency = torch.where((best >= threshold) & alive, arg + 1, torch.full_like(arg, -1))
    return NeuronClusters(
        frequency=frequency, fraction_explained=torch.where(alive, best, 0.0), threshold=threshold
    )


def _block_energies_einsum(
    centered: Float[Tensor, "a b d_mlp"], basis: Float[Tensor, "basis x"]
) -> tuple[Float[Tensor, "freq d_mlp"], Float[Tensor, " d_mlp"]]:
    """Squared norm in each {const, cos k, sin k}² block, from the full 2-D transform."""
    p = basis.shape[0]
    spectrum = fft2d(centered, basis).pow(2)  # [fa, fb, d_mlp]
    total = spectrum.sum(dim=(0, 1))
    fractions = []
    for k in range(1, n_frequencies(p) + 1):
        rows = [0, *frequency_rows(k, p)]
        fractions.append(spectrum[rows][:, rows].sum(dim=(0, 1)))
    return torch.stack(fractions), total


def _block_energies_fft(
    x: Float[Tensor, "a b d_mlp"],
) -> tuple[Float[Tensor, "freq d_mlp"], Float[Tensor, " d_mlp"]]:
    """The same block energies of the *centered* x, from four 1-D DFTs per neuron.

    span{const, cos k, sin k} = span{e^0, e^{+ik}, e^{-ik}} (both orthonormal bases of it, the
    complex one after dividing by √p), so the block's squared norm is Σ |X̂[k1, k2]|² / p² over
    k1, k2 ∈ {0, k, −k}. Those nine coefficients need no full 2-D transform: X̂[k, 0] is the
    DFT of the row sums over b, X̂[0, k] of the column sums, X̂[k, k] of the sums along
    a + b ≡ s and X̂[k, −k] of the sums along a − b ≡ d; the other four are their conjugates.
    Centering only changes X̂[0, 0], which is left out; the total is Σ (x − mean)².
    Cost: a few passes over the p² × d_mlp activations instead of an O(p³) transform. The
    passes run in x's own dtype (float32 activations: the sums have ~1e-7 relative error,
    far below anything the 0.85 cluster threshold can see); the DFTs and powers in float64.
    """
    p, d_mlp = x.shape[0], x.shape[-1]
    flat = x.reshape(p * p, d_mlp)
    grid = torch.arange(p)
    a, b = grid.repeat_interleave(p), grid.repeat(p)
    sums = torch.stack(
        [
            flat.view(p, p, d_mlp).sum(1),  # over b: X̂[k, 0]
            flat.view(p, p, d_mlp).sum(0),  # over a: X̂[0, k]
            flat.new_zeros(p, d_mlp).index_add_(0, (a + b) % p, flat),  # X̂[k, k]
            flat.new_zeros(p, d_mlp).index_add_(0, (a - b) % p, flat),  # X̂[k, −k]
        ]
    ).double()  # [4, x, d_mlp]
    spectrum = torch.fft.rfft(sums, dim=1)[:, 1:]  # [4, freq, d_mlp], k = 1 … p//2
    power = (spectrum.real.square() + spectrum.imag.square()) / (p * p)
    # Each coefficient's conjugate (at −k) has the same power, except at a Nyquist k = p/2
    # (even p), where −k ≡ k, and the a − b sum there is the same coefficient as the a + b one.
    weight = torch.full((4, power.shape[1], 1), 2.0, dtype=power.dtype)
    if p % 2 == 0:
        weight[:, -1] = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=power.dtype)[:, None]
    block = (power * weight).sum(0)
    mean = sums[0].sum(0) / (p * p)
    total = (flat - mean.to(flat.dtype)).square_().sum(0).double()
    return block, total


@functools.lru_cache(maxsize=8)
def _cached_basis(p: int) -> Tensor:
    return fourier_basis(p)


def is_fourier_basis(basis: Tensor) -> bool:
    """True when `basis` is `fourier_basis(p)` (any float dtype), so the FFT shortcut applies."""
    p = basis.shape[0]
    if basis.ndim != 2 or basis.shape[1] != p:
        return False
    tol = 1e-10 if basis.dtype == torch.float64 else 1e-5
    return bool(torch.allclose(basis.double(), _cached_basis(p), atol=tol, rtol=0))


def key_frequencies_from_clusters(
    clusters: NeuronClusters, p: int, min_frac: float = 0.01
) -> list[int]:
    """Frequencies used by a cluster of at least max(2, min_frac·d_mlp) neurons, largest first."""
    counts = clusters.counts(n_frequencies(p))
    min_size = max(2, math.ceil(min_frac * clusters.frequency.numel()))
    keys = [k for k in range(1, len(counts)) if counts[k] >= min_size]
    return sorted(keys, key=lambda k: -int(counts[k]))


@dataclass(frozen=True)
class FourierLosses:
    restricted_loss: float  # key-frequency part only (+ mean of the rest), test set
    excluded_loss: float  # key-frequency part removed, train set


def restricted_and_excluded_loss(
    logits: Float[Tensor, "example d_vocab_out"],
    labels: Int[Tensor, " example"],
    train_index: Int[Tensor, " index"],
    test_index: Int[Tensor, " index"],
    directions: Float[Tensor, "direction example"],
) -> FourierLosses:
    """Logit-level restricted and excluded loss (ANCHORS §1), float64 cross-entropy.

    With D the (orthonormal) key directions over examples and L the logit table, the key
    part is Dᵀ(D L). The restricted logits are that part plus the per-output mean over
    answered examples of what was removed (bias correction); the excluded logits are L minus
    the key part. Each is formed only on the rows its loss reads (test, resp. train).
    """
    logits = logits.double()
    valid = labels >= 0
    weights = valid.double()
    n_valid = weights.sum()
    coef = directions @ logits  # [direction, d_vocab_out]; no directions: an empty key part
    # mean over answered rows of (L − DᵀDL) = (wᵀL − (D w)ᵀ coef) / n, w = answered indicator
    removed_mean = (weights @ logits - (directions @ weights) @ coef) / n_valid
    restricted = directions[:, test_index].T @ coef + removed_mean
    excluded = logits[train_index] - directions[:, train_index].T @ coef
    return FourierLosses(
        restricted_loss=float(per_example_cross_entropy(restricted, labels[test_index])[0].mean()),
        excluded_loss=float(per_example_cross_entropy(excluded, labels[train_index])[0].mean()),
    )


@dataclass(frozen=True)
class EmbeddingSpectrum:
    embed_norms: Float[Tensor, " basis"]  # ‖F W_E‖ per basis row (number tokens only)
    unembed_norms: Float[Tensor, " basis"]  # ‖W_L Fᵀ‖ per basis row, W_L = W_out W_U
    embed_freq_norms: Float[Tensor, " freq"]
    unembed_freq_norms: Float[Tensor, " freq"]
    gini_embed: float
    gini_unembed: float


def embedding_spectrum(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_L: Float[Tensor, "d_mlp d_vocab_out"] | None,
    basis: Float[Tensor, "basis x"],
) -> EmbeddingSpectrum:
    """Fourier norms of the number-token embedding and of the neuron-to-logit map."""
    p = basis.shape[0]
    embed = basis @ W_E[:p].detach().double()  # [basis, d_model]
    embed_norms = embed.norm(dim=1)
    if W_L is None:
        unembed_norms = torch.zeros(p, dtype=torch.float64)
    else:
        unembed_norms = (W_L[:, :p].detach().double() @ basis.T).norm(dim=0)
    return EmbeddingSpectrum(
        embed_norms=embed_norms,
        unembed_norms=unembed_norms,
        embed_freq_norms=per_frequency_norms(embed, p),
        unembed_freq_norms=per_frequency_norms(unembed_norms[:, None], p),
        gini_embed=gini(embed_norms),
        gini_unembed=gini(unembed_norms),
    )
