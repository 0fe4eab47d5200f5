"""Full RAPPOR: Bloom filter, permanent and instantaneous randomized response, cohorts.

Erlingsson, Pihur, Korolova, "RAPPOR: Randomized Aggregatable Privacy-Preserving Ordinal
Response", CCS 2014. Decoding (regression) is in `rappor_decode.py`; docs/analytics.md has the
whole story.

Notation map (paper -> code; the paper's letters clash with this package's): k (Bloom filter
bits) -> `num_bits`; h (hash functions) -> `num_hashes`; m (cohorts) -> `cohorts`; M (candidate
strings) -> `k`, the domain [0, k); f, p, q -> `f`, `p`, `q`; q* = Pr[S_i = 1 | B_i = 1] ->
`prob_one_if_set`; p* = Pr[S_i = 1 | B_i = 0] -> `prob_one_if_clear`; ε∞ -> `epsilon`; ε_1 ->
`epsilon_one`; B, B', S -> `bloom`, `permanent`, the packed rows `rappor/bits`; c_ij, N_j ->
`RapporTally.counts`, `RapporTally.cohort_n`; t_ij -> `bit_estimates`.

A user u holding v in its permanent cohort j sets the h bits H_{j,t}(v) of an all-zero B; the
permanent randomized response (PRR) sets B'_i = 1 w.p. f/2, 0 w.p. f/2, else B_i; the
instantaneous one (IRR) sends S_i = 1 w.p. q if B'_i = 1 and p if B'_i = 0, fresh per report.
Two values differ in at most 2h bits of B, so (paper, Theorems 1 and 2)

    ε∞ = 2h ln((1 - f/2) / (f/2))              (the PRR: any number of reports of one value)
    ε_1 = h ln(q* (1 - p*) / (p* (1 - q*)))    (one report),
    q* = f(p + q)/2 + (1 - f) q,   p* = f(p + q)/2 + (1 - f) p.

`rappor(epsilon, k)` takes ε∞ and solves f = 2 / (1 + e^{ε∞/(2h)}). Defaults h = 2, p = 1/2,
q = 3/4 (so f = 1/2 at ε∞ = 4 ln 3, ε_1 = 1.0743), 16 bits and 64 cohorts are those of the
authors' client library (google/rappor, client/python/rappor.py `Params`).

The PRR is memoized per (user, value) as a pure function of an explicit secret `prr_seed`, the
user id and the value; the Bloom hashes are pinned and seeded per cohort (`rappor_hash.py`).

Bits: analytic `num_bits` (the report S, as the paper counts it). The payload also carries the
cohort id (⌈log2 m⌉ bits of information, `cohort_bits`) in the narrowest unsigned integer, and S
packed little-endian into ⌈num_bits/8⌉ bytes, so data bits = 8 itemsize + 8 ⌈num_bits/8⌉.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.local_hashing import PRIME, hash_values
from lowcomm.analytics.oracle import (
    ReportField,
    ReportRule,
    ceil_log2,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
    num_reports,
    value_dtype,
)
from lowcomm.analytics.rappor_decode import (
    RapporDecoding,
    RapporTally,
    check_tally,
    decode,
    least_squares,
)
from lowcomm.analytics.rappor_hash import (
    bloom_hash_seeds,
    check_int,
    check_users,
    cohorts_from_keys,
    prr_uniforms,
    user_keys,
)
from lowcomm.analytics.unary import bernoulli
from lowcomm.core import Payload

_BLOCK_ENTRIES = 1 << 20  # users x bits per block: the PRR's uint64 uniforms stay near 8 MiB
_MIN_HALF_F = 2.0**-30  # f/2 must be far above the 2^-53 resolution of the PRR's uniforms


@dataclass(frozen=True)
class RapporOracle:
    """Full RAPPOR over the candidates [0, k) (module docstring). Not a `FrequencyOracle`: a
    report supports no single item with fixed p*/q* (Bloom bits are shared), its counts are per
    (cohort, bit), encoding needs user ids and a PRR secret, and decoding is a regression.

    `encode(values [n], rng, *, users [n], prr_seed) -> Payload`; `tally(reports) ->
    RapporTally`; `aggregate(chunks)`; `bit_estimates(tally) -> [cohorts, num_bits]` (unbiased
    t_ij); `estimate(tally) -> [k]` (least squares over all candidates; unbiased when the design
    has full column rank); `decode(tally, alpha=)` (the paper's Lasso, then least squares)."""

    name: str
    epsilon: float  # ε∞, the PRR's level
    epsilon_one: float  # ε_1, one report's level
    k: int
    num_bits: int
    num_hashes: int
    cohorts: int
    f: float
    p: float
    q: float
    prob_one_if_set: float  # q*
    prob_one_if_clear: float  # p*
    analytic_bits: int
    cohort_bits: int
    hash_seeds: np.ndarray  # [cohorts, num_hashes, 2] uint32
    encode: Callable[..., Payload]
    tally: Callable[[Payload], RapporTally]
    permanent: Callable[..., np.ndarray]
    cohort_of: Callable[..., np.ndarray]
    fields: tuple[ReportField, ...]  # what a valid report is (`oracle.ReportField`)

    def bloom_positions(self, values: np.ndarray, cohorts: np.ndarray) -> np.ndarray:
        """H_{j,t}(v) for each user's (v, j): `[n, num_hashes]` int64."""
        a, b = self.hash_seeds[cohorts, :, 0], self.hash_seeds[cohorts, :, 1]  # [n, h]
        return hash_values(a, b, np.asarray(values)[:, None], self.num_bits).astype(np.int64)

    def bloom(self, values: np.ndarray, cohorts: np.ndarray) -> np.ndarray:
        """The Bloom filters B of values in their cohorts, `[n, num_bits]` bool."""
        pos = self.bloom_positions(values, cohorts)
        out = np.zeros((pos.shape[0], self.num_bits), dtype=bool)
        out[np.arange(pos.shape[0])[:, None], pos] = True
        return out

    def design(self) -> np.ndarray:
        """B_j(v) of every candidate in every cohort, `[cohorts, num_bits, k]` bool."""
        cohort = np.repeat(np.arange(self.cohorts), self.k)
        bits = self.bloom(np.tile(np.arange(self.k), self.cohorts), cohort)  # [c k, m]
        return bits.reshape(self.cohorts, self.k, self.num_bits).transpose(0, 2, 1)

    def aggregate(self, chunks: Iterable[Payload]) -> RapporTally:
        """Counts over report chunks, one chunk in memory at a time."""
        total = RapporTally(np.zeros((self.cohorts, self.num_bits), dtype=np.int64),
                            np.zeros(self.cohorts, dtype=np.int64))
        for chunk in chunks:
            total = total.merged(self.tally(chunk))
        return total

    def bit_estimates(self, tally: RapporTally) -> np.ndarray:
        """t_ij = (c_ij - p* N_j) / (q* - p*), unbiased for the number of users of cohort j whose
        B has bit i set (paper §4, with p* = p + fq/2 - fp/2, q* - p* = (1-f)(q-p))."""
        counts, cohort_n = check_tally(self, tally)
        p1, p0 = self.prob_one_if_set, self.prob_one_if_clear
        return (counts - p0 * cohort_n[:, None]) / (p1 - p0)

    def bit_variance(self, true_counts: np.ndarray, cohort_n: np.ndarray) -> np.ndarray:
        """Var[t_ij] for N_j distinct users, T_ij of them with bit i set: exact, since c_ij is a
        sum of independent Bernoulli(q*) and Bernoulli(p*) draws."""
        p1, p0 = self.prob_one_if_set, self.prob_one_if_clear
        t = np.asarray(true_counts, dtype=np.float64)
        n = np.asarray(cohort_n, dtype=np.float64)[:, None]
        return (t * p1 * (1 - p1) + (n - t) * p0 * (1 - p0)) / (p1 - p0) ** 2

    def estimate(self, tally: RapporTally) -> np.ndarray:
        """Least squares over all k candidates (`rappor_decode.least_squares`), `[k]`."""
        return least_squares(self, tally)

    def decode(self, tally: RapporTally, *, alpha: float = 0.05) -> RapporDecoding:
        """The paper's decoding: Lasso selection, least squares, Bonferroni at alpha / k."""
        return decode(self, tally, alpha=alpha)


def _check_probability(value: object, name: str) -> float:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {value!r}")
    return float(value)


def rappor(epsilon: float, k: int, *, num_bits: int = 16, num_hashes: int = 2,
           cohorts: int = 64, p: float = 0.5, q: float = 0.75) -> RapporOracle:
    """Full RAPPOR at ε∞ = `epsilon` over the candidates [0, k) (module docstring)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=PRIME)
    m = check_int(num_bits, "num_bits (Bloom filter bits)", 1, 1 << 16)
    h = check_int(num_hashes, "num_hashes (Bloom hash functions)", 1, m)
    c = check_int(cohorts, "cohorts", 1, 1 << 16)
    p, q = _check_probability(p, "p (IRR: Pr[S_i = 1 | B'_i = 0])"), _check_probability(q, "q")
    if not p < q:
        raise ValueError(f"the IRR needs p < q (a set bit must be reported as 1 more often); "
                         f"got p = {p}, q = {q}")
    f = 2.0 / (1.0 + math.exp(epsilon / (2 * h)))  # solves ε∞ = 2h ln((1 - f/2) / (f/2))
    if f / 2 < _MIN_HALF_F:
        raise ValueError(f"epsilon = {epsilon} with num_hashes = {h} gives f/2 = {f / 2:.3g}, "
                         f"below {_MIN_HALF_F:.3g}: too small for the PRR's 53-bit draws")
    p1 = f * (p + q) / 2 + (1 - f) * q
    p0 = f * (p + q) / 2 + (1 - f) * p
    epsilon_one = h * math.log(p1 * (1 - p0) / (p0 * (1 - p1)))
    seeds = bloom_hash_seeds(c, h)
    seeds.flags.writeable = False
    set_one = np.uint64(round(f / 2 * 2.0**53))  # U < f/2: B'_i = 1
    set_any = np.uint64(round(f * 2.0**53))  # f/2 <= U < f: B'_i = 0
    rows_per_block = max(1, _BLOCK_ENTRIES // m)
    width_nbytes = -(-m // 8)
    cohort_dtype = value_dtype(max(c, 2))
    spare = 8 * width_nbytes - m  # padding bits at the top of the last byte, always 0
    rules = () if not spare else (ReportRule(
        "padding_bits", f"with the {spare} padding bit(s) above bit {m - 1} clear",
        lambda packed: (packed[:, -1] >> (8 - spare)) == 0),)
    fields = (ReportField("cohort", cohort_dtype, (), 0, c),
              ReportField("bits", np.uint8, (width_nbytes,), rules=rules))

    def permanent_block(v: np.ndarray, u: np.ndarray, seed: int):
        keys = user_keys(u, seed)  # [rows]
        cohort = cohorts_from_keys(keys, c)
        uniform = prr_uniforms(keys, v, m)  # [rows, m] in [0, 2^53)
        prr = np.where(uniform < set_any, uniform < set_one, oracle.bloom(v, cohort))
        return cohort, prr

    def permanent(values: np.ndarray, *, users: np.ndarray, prr_seed: int) -> np.ndarray:
        """Each user's memoized B' for its value, `[n, num_bits]` bool (no IRR, no rng)."""
        v = check_values(values, k, "rappor")
        u, seed = check_users(users, v.shape[0], prr_seed)
        out = np.empty((v.shape[0], m), dtype=bool)
        for start in range(0, v.shape[0], rows_per_block):
            end = start + rows_per_block
            out[start:end] = permanent_block(v[start:end], u[start:end], seed)[1]
        return out

    def cohort_of(users: np.ndarray, *, prr_seed: int) -> np.ndarray:
        """Each user's permanent cohort, `[n]` int64."""
        u, seed = check_users(users, None, prr_seed)
        return cohorts_from_keys(user_keys(u, seed), c)

    def encode(values: np.ndarray, rng: np.random.Generator, *, users: np.ndarray,
               prr_seed: int) -> Payload:
        v = check_values(values, k, "rappor")
        rng = check_rng(rng, "rappor")
        u, seed = check_users(users, v.shape[0], prr_seed)
        n = v.shape[0]
        packed = np.empty((n, width_nbytes), dtype=np.uint8)  # [n, ceil(m/8)]
        cohort_ids = np.empty(n, dtype=cohort_dtype)
        for start in range(0, n, rows_per_block):
            end = min(n, start + rows_per_block)
            cohort, prr = permanent_block(v[start:end], u[start:end], seed)
            shape = (end - start, m)
            irr = np.where(prr, bernoulli(rng, shape, q), bernoulli(rng, shape, p))
            packed[start:end] = np.packbits(irr, axis=1, bitorder="little")
            cohort_ids[start:end] = cohort
        return Payload({"rappor/cohort": cohort_ids, "rappor/bits": packed})

    def tally(reports: Payload) -> RapporTally:
        cohort, packed = expect_reports(reports, "rappor", fields)
        counts = np.zeros(c * m, dtype=np.int64)
        offsets = np.arange(m)[None, :]
        for start in range(0, num_reports(reports), rows_per_block):
            bits = np.unpackbits(packed[start : start + rows_per_block], axis=1, count=m,
                                 bitorder="little").astype(bool)  # [rows, m]
            cells = cohort[start : start + rows_per_block].astype(np.int64)[:, None] * m + offsets
            counts += np.bincount(cells[bits], minlength=c * m)
        return RapporTally(counts.reshape(c, m), np.bincount(cohort, minlength=c).astype(np.int64))

    oracle = RapporOracle("rappor", epsilon, epsilon_one, k, m, h, c, f, p, q, p1, p0, m,
                          ceil_log2(c), seeds, encode, tally, permanent, cohort_of, fields)
    return oracle
