"""MSS (ModularSubsetSelection): Subset Selection on one residue of the value, decoded by LSMR.

H. H. Arcolezi, "Private Frequency Estimation via Residue Number Systems", AAAI 2026
(arXiv 2511.11569). Only the abstract could be read: the details below that the abstract does
not state are this module's choices, marked as such, and the paper's own formulas are unchecked.

Notation map (paper -> code): ε -> `epsilon`; the universe size k -> `k`; the pairwise coprime
moduli m_0..m_{ℓ-1} -> `moduli` (ℓ = `len(moduli)`); the block index j -> column 0 of the row
`mss/report`; the SS subset size of block j, ω_j -> `subset_sizes[j]`; the perturbed residue
subset -> the next ω_j entries of that row; A (rows (j, r), A[(j, r), x] = [x mod m_j = r]) ->
`residues()`; p_j, q_j -> `block_p`, `block_q`.

Client (as in the abstract). A user holding v draws j uniformly from [0, ℓ), independently of
v, and runs SS (`subset.ss`) at the full ε on the residue v mod m_j over [0, m_j), with the
default ω_j = max(1, rint(m_j/(e^ε+1))). j reveals nothing and the SS report is ε-LDP, so the
report (j, Z) is ε-LDP. Vectorized: one SS encode per block over that block's users.

Server (this module's decoder, not the paper's). A report (j, Z) supports item x when
x mod m_j ∈ Z; `support_counts` returns those [k] counts S (chunks add, as for every oracle).
With p_j, q_j the SS probabilities of block j, for n users

    E[S] = n M f,   M = (1/ℓ) [(Σ_j q_j) 1 1ᵀ + Σ_j (p_j − q_j) A_jᵀ A_j],

so f̂ = M⁻¹ S / n is unbiased; `estimate` solves M f = S/n with LSMR (Fong and Saunders 2011,
`scipy.sparse.linalg.lsmr`) on a matrix-free M (O(kℓ) a product). The paper instead debiases
each block's residue histogram and solves a weighted least-squares problem with "variance-
optimal" row weights; that needs the per-block histograms, which a [k] count cannot carry. The
two decoders differ only in the block weights (p_j − q_j against about (p_j − q_j)²/(q_j(1 − q_j))),
nearly proportional since q_j ≈ 1/(e^ε+1) in every block; a test implements the weighted decode
from the raw reports and finds the MSEs equal within a few per cent.

MSS is not pure: a holder of v supports x ≠ v with probability (1/ℓ) Σ_j (q_j + (p_j − q_j)
[x ≡ v mod m_j]), larger when x and v share residues. `p_star` = (1/ℓ) Σ p_j is the support of
the own item, `q_star` = (1/ℓ) Σ q_j that of an item sharing no residue; `estimate` and
`variance` are overridden. Variance (derived here, exact for fixed users): with s the support
indicator of one report, Cov(f̂) = (M⁻¹ G M⁻¹ − diag f) / n, G = Σ_v f_v E[s sᵀ | v], whose
entries follow from SS's pair-inclusion probabilities (`_second_moment`). Dense: O(k³).

Moduli (this module's choice; the paper's search could not be read). Default: up to 6 pairwise
coprime moduli spread over [ceil(k/2), k − 1] (`default_moduli`). Conditioning check, with
F = (1/ℓ) Σ_j W_j A_jᵀ A_j the information of one report (W_j = (p_j − q_j)²/(q_j(1 − q_j))):
`condition` = cond₂(F), and κ = mean(1/λ_i(F)) / (q(1 − q)/(p − q)²), the variance of the
weighted least-squares decode over that of SS on [0, k) at the same ε (the f = 0 term). The
abstract bounds MSS's MSE by a constant factor of SS's and the secondary notes call the factor
κ (≲ 1.3 in practice); that this κ is the paper's is unverified. Refused: Π m_j < k (no CRT
coverage), a singular F (cond₂ > 10¹²), or κ > `max_kappa` (default 2: no set that doubles SS's
error). Moduli near k/ℓ are hopeless (k = 256, ten primes from 29: κ ≈ 7·10⁴, cond₂ ≈ 10⁸). The
default gives κ ≈ 1.10 (cond₂ ≈ 4.5) at k = 256 and 1024, with subset indices ≈ 80 % of SS's;
seven moduli in [467, 600] at k = 1024 give κ ≈ 1.29 (cond₂ ≈ 92) with 52 %. κ tracks the exact
variance ratio within 1 % at k >= 256 (smaller domains: within a factor 2). The dense check
limits k to `MAX_K`.

Bits (`mss_bits`): the abstract counts ⌈log2 ℓ⌉ + ⌈log2 m_j⌉ (one residue, true only when
ω_j = 1); a subset index needs ⌈log2 ℓ⌉ + ⌈log2 C(m_j, ω_j)⌉; the ids as sent take
⌈log2 ℓ⌉ + ω_j ⌈log2 m_j⌉, and `analytic_bits` is the largest of these over blocks. The payload
is one row per user, `mss/report` = [j, ω_j ascending residues, the sentinel m_max in the
ω_max − ω_j remaining slots] in the narrowest unsigned integer for m_max + 1 values (all rows of
a batch share one shape, ω_max = max ω_j); its declared rules reject any other row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsmr

from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ReportField,
    ReportRule,
    ceil_log2,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
    value_dtype,
)
from lowcomm.analytics.subset import ideal_bits, ss, subset_size_of
from lowcomm.core import Payload

MAX_K = 1 << 12  # the conditioning check and the variance are dense k x k computations
DEFAULT_MAX_KAPPA = 2.0
SINGULAR_CONDITION = 1e12


@dataclass(frozen=True)
class MSSOracle(FrequencyOracle):
    """MSS's oracle: `FrequencyOracle` with the LSMR decode and MSS's own variance."""

    moduli: tuple[int, ...] = ()
    subset_sizes: tuple[int, ...] = ()
    block_p: tuple[float, ...] = ()  # p_j of SS over [0, m_j)
    block_q: tuple[float, ...] = ()
    condition: float = 1.0  # cond₂ of the information matrix F
    kappa: float = 1.0  # variance amplification over SS (module docstring)

    def residues(self) -> np.ndarray:
        """`[ℓ, k]`: x mod m_j for every block and item."""
        return np.arange(self.k)[None, :] % np.array(self.moduli)[:, None]

    def support_matrix(self) -> np.ndarray:
        """M `[k, k]` dense: E[S] = n M f (for tests and the variance)."""
        res = self.residues()
        m = np.full((self.k, self.k), sum(self.block_q) / len(self.moduli))
        for r, p, q in zip(res, self.block_p, self.block_q, strict=True):
            m += (p - q) / len(self.moduli) * (r[:, None] == r[None, :])
        return m

    def estimate(self, counts: np.ndarray, n: int) -> np.ndarray:
        """The unbiased f̂ = M⁻¹ S / n, solved with LSMR."""
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != (self.k,):
            raise ValueError(f"mss: counts must have shape ({self.k},); got {counts.shape}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"mss: n must be a positive integer; got {n!r}")
        res, ell = self.residues(), len(self.moduli)
        gaps = np.array(self.block_p) - np.array(self.block_q)

        def product(f):
            f = np.ravel(f)
            out = np.full(self.k, sum(self.block_q) * f.sum())
            for r, m, gap in zip(res, self.moduli, gaps, strict=True):
                out += gap * np.bincount(r, weights=f, minlength=m)[r]
            return out / ell

        operator = LinearOperator((self.k, self.k), matvec=product, rmatvec=product,
                                  dtype=np.float64)
        solution, stop, iterations = lsmr(operator, counts / n, atol=1e-12, btol=1e-12,
                                          maxiter=20 * self.k)[:3]
        if stop not in (1, 2):
            raise RuntimeError(f"mss: LSMR did not converge (istop {stop} after {iterations} "
                               f"iterations); the moduli may be ill-conditioned")
        return solution

    def variance(self, n: int, f: np.ndarray | float) -> np.ndarray:
        """Var[f̂_x] = [(M⁻¹ G M⁻¹)_xx − f_x] / n for n users with frequencies `f` (a `[k]`
        vector summing to 1; module docstring). Dense, O(k³)."""
        f = np.asarray(f, dtype=np.float64)
        if f.shape != (self.k,) or not math.isclose(float(f.sum()), 1.0, abs_tol=1e-9):
            raise ValueError(f"mss: variance needs the [k] = [{self.k}] frequency vector "
                             f"(summing to 1); got shape {f.shape}")
        inverse = np.linalg.inv(self.support_matrix())
        g = _second_moment(self, f)
        return (np.einsum("ij,ji->i", inverse @ g, inverse) - f) / n


def _second_moment(oracle: MSSOracle, f: np.ndarray) -> np.ndarray:
    """G = Σ_v f_v E[s sᵀ | v] `[k, k]`, s the [k] support indicator of one report. Within
    block j (SS over m residues, ω of them, own residue u): Pr[r ∈ Z] = p if r = u else q;
    Pr[r, r' ∈ Z] = t1 = p (ω−1)/(m−1) if one of them is u, else t0 = [p (ω−1)(ω−2) +
    (1−p) ω (ω−1)] / ((m−1)(m−2))."""
    ell = len(oracle.moduli)
    g = np.zeros((oracle.k, oracle.k))
    for r, m, w, p, q in zip(oracle.residues(), oracle.moduli, oracle.subset_sizes,
                             oracle.block_p, oracle.block_q, strict=True):
        t1 = p * (w - 1) / (m - 1)
        t0 = (p * (w - 1) * (w - 2) + (1 - p) * w * (w - 1)) / ((m - 1) * (m - 2)) if m > 2 else 0.0
        mass = np.bincount(r, weights=f, minlength=m)[r]  # [k] F_j of x's residue
        same = r[:, None] == r[None, :]
        g += (t0 + (t1 - t0) * (mass[:, None] + mass[None, :])
              + same * ((q - t0) + (p - q - 2 * (t1 - t0)) * mass[:, None])) / ell
    return g


@dataclass(frozen=True)
class MSSBits:
    """Bits of one report in block j, three ways (index j of each tuple), and their means over
    the uniform block: `abstract` ⌈log2 ℓ⌉ + ⌈log2 m_j⌉, `subset_index` ⌈log2 ℓ⌉ +
    ⌈log2 C(m_j, ω_j)⌉, `ids` ⌈log2 ℓ⌉ + ω_j ⌈log2 m_j⌉ (what the payload holds, unpadded)."""

    abstract: tuple[int, ...]
    subset_index: tuple[int, ...]
    ids: tuple[int, ...]

    @staticmethod
    def mean(bits: tuple[int, ...]) -> float:
        return sum(bits) / len(bits)


def mss_bits(oracle: MSSOracle) -> MSSBits:
    """The three bit counts of an MSS oracle's reports, per block."""
    head = ceil_log2(len(oracle.moduli))
    pairs = list(zip(oracle.moduli, oracle.subset_sizes, strict=True))
    return MSSBits(tuple(head + ceil_log2(m) for m, _ in pairs),
                   tuple(head + ideal_bits(m, w) for m, w in pairs),
                   tuple(head + w * ceil_log2(m) for m, w in pairs))


def default_moduli(k: int, count: int = 6, *, band: tuple[int, int] | None = None
                   ) -> tuple[int, ...]:
    """Up to `count` pairwise coprime moduli in `band` = [low, high], by default
    [max(2, ceil(k/2)), k - 1] (m_j < k as in the paper; up to k itself for k < 8, which has too
    few coprime moduli below k): for targets evenly spaced over the band from the top, the
    largest unused integer at most the target that is coprime with those already taken.
    k = 10: (9, 8, 7, 5); k = 256: (255, 229, 203, 178, 151); k = 1024: (1023, 920, 817, 709,
    613); k = 1024, count 8, band (450, 600): (600, 577, 557, 533, 511, 491, 467)."""
    if band is None:
        low, high = max(2, -(-k // 2)), (k - 1 if k >= 8 else k)
    else:
        low, high = max(2, int(band[0])), min(k, int(band[1]))
    picked: list[int] = []
    for target in np.linspace(high, low, count):
        c = math.floor(target)
        while c >= low and (c in picked or any(math.gcd(c, m) != 1 for m in picked)):
            c -= 1
        if c >= low:
            picked.append(c)
    return tuple(picked)


def _check_moduli(moduli, k: int) -> tuple[int, ...]:
    out = tuple(moduli) if isinstance(moduli, (tuple, list)) else None
    if not out or any(not isinstance(m, (int, np.integer)) or isinstance(m, bool)
                      or not 2 <= m <= k for m in out):
        raise ValueError(f"mss: moduli must be a non-empty sequence of integers in [2, {k}] "
                         f"(k = {k}); got {moduli!r}")
    out = tuple(int(m) for m in out)
    for i, a in enumerate(out):
        for b in out[i + 1 :]:
            if math.gcd(a, b) != 1:
                raise ValueError(f"mss: moduli must be pairwise coprime; {a} and {b} share "
                                 f"the factor {math.gcd(a, b)} in {out}")
    if math.prod(out) < k:
        raise ValueError(f"mss: the product of the moduli {out} is {math.prod(out)} < k = {k}: "
                         f"residues cannot tell all items apart (no CRT coverage)")
    return out


def _report_rules(moduli: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[ReportRule, ...]:
    """A row [j, r_1..r_ω_j, m_max...]: j < ℓ, then ω_j strictly increasing residues below m_j,
    then the sentinel m_max in every remaining slot."""
    ell, width, sentinel = len(moduli), max(sizes), max(moduli)
    m_of, w_of = np.array(moduli), np.array(sizes)
    slots = np.arange(width)

    def residues_ok(rows: np.ndarray) -> np.ndarray:
        j = np.minimum(rows[:, 0].astype(np.int64), ell - 1)
        body, w = rows[:, 1:].astype(np.int64), w_of[j][:, None]  # [n, ω_max], [n, 1]
        used = slots[None, :] < w
        in_range = np.where(used, body < m_of[j][:, None], body == sentinel).all(axis=1)
        rising = (np.diff(body, axis=1) > 0) | ~used[:, 1:]
        return in_range & rising.all(axis=1)

    block = ReportRule("bad_block", f"start with a block index in [0, {ell})",
                       lambda rows: rows[:, 0] < ell)
    residues = ReportRule("bad_residues", f"as [j, ω_j strictly increasing residues below m_j, "
                          f"then {sentinel} in the other slots] (moduli {moduli}, ω {sizes})",
                          residues_ok)
    return block, residues


def conditioning(epsilon: float, k: int, moduli: tuple[int, ...], p: tuple[float, ...],
                 q: tuple[float, ...]) -> tuple[float, float]:
    """(cond₂(F), κ) of the moduli (module docstring); dense, O(k³)."""
    res = np.arange(k)[None, :] % np.array(moduli)[:, None]  # [ℓ, k]
    information = np.zeros((k, k))  # F
    for r, pj, qj in zip(res, p, q, strict=True):
        information += (pj - qj) ** 2 / (qj * (1 - qj)) / len(moduli) * (r[:, None] == r[None, :])
    eig = np.linalg.eigvalsh(information)
    if eig[0] <= eig[-1] / SINGULAR_CONDITION:
        return math.inf, math.inf
    plain = ss(epsilon, k)
    ss_variance = plain.q_star * (1 - plain.q_star) / (plain.p_star - plain.q_star) ** 2
    return float(eig[-1] / eig[0]), float(np.mean(1 / eig) / ss_variance)


def mss(epsilon: float, k: int, *, moduli=None,
        max_kappa: float = DEFAULT_MAX_KAPPA) -> MSSOracle:
    """ModularSubsetSelection over [0, k) at privacy level `epsilon` with pairwise coprime
    `moduli` (default `default_moduli(k)`); refuses moduli whose κ exceeds `max_kappa`."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=MAX_K)
    moduli = _check_moduli(default_moduli(k) if moduli is None else moduli, k)
    if (not isinstance(max_kappa, (int, float)) or isinstance(max_kappa, bool)
            or not max_kappa >= 1):
        raise ValueError(f"mss: max_kappa must be a number >= 1; got {max_kappa!r}")
    blocks = [ss(epsilon, m) for m in moduli]
    sizes = tuple(subset_size_of(b) for b in blocks)  # ω_j
    p, q = tuple(b.p_star for b in blocks), tuple(b.q_star for b in blocks)
    condition, kappa = conditioning(epsilon, k, moduli, p, q)
    if math.isinf(condition):
        raise ValueError(f"mss: moduli {moduli} cannot tell the k = {k} items apart: the "
                         f"information matrix AᵀWA is singular; use more or larger moduli")
    if kappa > max_kappa:
        raise ValueError(f"mss: moduli {moduli} are ill-conditioned for k = {k}: κ = {kappa:.3g} "
                         f"(the decode's variance over SS's; cond₂(AᵀWA) = {condition:.3g}) > "
                         f"max_kappa = {max_kappa}; use more moduli, or larger ones (most in "
                         f"[k/2, k])")
    res = np.arange(k)[None, :] % np.array(moduli)[:, None]  # [ℓ, k]
    ell, width, sentinel = len(moduli), max(sizes), max(moduli)
    dtype = value_dtype(sentinel + 1)  # holds j < ℓ <= m_max too
    fields = (ReportField("report", dtype, (1 + width,), high=sentinel + 1,
                          rules=_report_rules(moduli, sizes)),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "mss")
        rng = check_rng(rng, "mss")
        block = rng.integers(0, ell, size=v.shape[0])  # [n] j, independent of v
        rows = np.full((v.shape[0], 1 + width), sentinel, dtype=dtype)  # [n, 1 + ω_max]
        rows[:, 0] = block
        for j, (m, w, oracle) in enumerate(zip(moduli, sizes, blocks, strict=True)):
            users = np.flatnonzero(block == j)
            rows[users, 1 : 1 + w] = oracle.encode(v[users] % m, rng)["ss/items"]
        return Payload({"mss/report": rows})

    def support_counts(reports: Payload) -> np.ndarray:
        (rows,) = expect_reports(reports, "mss", fields)
        counts = np.zeros(k, dtype=np.int64)
        for j, (m, w) in enumerate(zip(moduli, sizes, strict=True)):
            residues = rows[rows[:, 0] == j, 1 : 1 + w].astype(np.int64)  # [n_j, ω_j]
            counts += np.bincount(residues.ravel(), minlength=m)[res[j]]
        return counts

    analytic = max(ceil_log2(ell) + w * ceil_log2(m) for m, w in zip(moduli, sizes, strict=True))
    return MSSOracle("mss", epsilon, k, sum(p) / ell, sum(q) / ell, analytic, encode,
                     support_counts, fields=fields, moduli=moduli, subset_sizes=sizes,
                     block_p=p, block_q=q, condition=condition, kappa=kappa)
