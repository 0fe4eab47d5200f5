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

Memoization. The paper memoizes B' per (user, value) on the device. Here B' is a pure function
of an explicit secret `prr_seed`, the user id and the value, evaluated by a counter-based hash
(vectorized, nothing stored): the same user reporting the same value again reuses its B', in any
batch and any order; only the IRR draws from the `rng` passed to `encode`. With splitmix64's
finalizer `mix` (S. Vigna's splitmix64.c; Steele, Lea, Flood, OOPSLA 2014) and γ = 0x9E37...7C15,
all arithmetic mod 2^64:

    s = mix(prr_seed + γ);  key(u) = mix(s ^ mix(u + γ));  key(u, v) = mix(key(u) ^ mix(v + 2γ))
    cohort(u) = ((mix(key(u) ^ 0xC0) >> 32) · m) >> 32            (uniform up to m / 2^32)
    U_i = (mix(key(u, v) + (i + 1) γ) >> 11) / 2^53:   B'_i = 1 if U_i < f/2, 0 if U_i < f, else B_i.

Bloom hashes (pinned, public, seeded per cohort j and hash t): with P = 2^31 - 1 and x = 2^16 j + t,
a_{j,t} = 1 + mix(0xB100 + (2x + 1) γ) mod (P - 1), b_{j,t} = mix(0xB100 + (2x + 2) γ) mod P, and
H_{j,t}(v) = ((a v + b) mod P) mod num_bits (the Carter-Wegman family of OLH). Two hashes may hit
one bit; the filter then has fewer than h ones, which only lowers the privacy loss.

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
    ceil_log2,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
    num_reports,
    value_dtype,
)
from lowcomm.analytics.rappor_decode import RapporDecoding, decode, least_squares
from lowcomm.analytics.unary import bernoulli
from lowcomm.core import Payload

_U64 = (1 << 64) - 1
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment
_TWO_GAMMA = np.uint64((2 * 0x9E3779B97F4A7C15) & _U64)
_BLOCK_ENTRIES = 1 << 20  # users x bits per block: the PRR's uint64 uniforms stay near 8 MiB
_MIN_HALF_F = 2.0**-30  # f/2 must be far above the 2^-53 resolution of the PRR's uniforms


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def bloom_hash_seeds(cohorts: int, num_hashes: int) -> np.ndarray:
    """The pinned (a, b) of every cohort and hash, `[cohorts, num_hashes, 2]` uint32."""
    x = (np.arange(cohorts, dtype=np.uint64)[:, None] << np.uint64(16)) \
        + np.arange(num_hashes, dtype=np.uint64)[None, :]  # [c, h]
    a = np.uint64(1) + mix64(np.uint64(0xB100) + (np.uint64(2) * x + np.uint64(1)) * _GAMMA) \
        % np.uint64(PRIME - 1)
    b = mix64(np.uint64(0xB100) + (np.uint64(2) * x + np.uint64(2)) * _GAMMA) % np.uint64(PRIME)
    return np.stack([a, b], axis=-1).astype(np.uint32)


@dataclass(frozen=True)
class RapporTally:
    """What the server keeps while streaming: c_ij = `counts[j, i]`, the reports of cohort j
    with bit i set, and N_j = `cohort_n[j]`, the reports of cohort j. Chunks add up."""

    counts: np.ndarray  # [cohorts, num_bits] int64
    cohort_n: np.ndarray  # [cohorts] int64

    @property
    def n(self) -> int:
        return int(self.cohort_n.sum())

    def merged(self, other: RapporTally) -> RapporTally:
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge RAPPOR tallies of shapes {self.counts.shape} and "
                             f"{other.counts.shape}")
        return RapporTally(self.counts + other.counts, self.cohort_n + other.cohort_n)


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


def check_tally(oracle: RapporOracle, tally: RapporTally) -> tuple[np.ndarray, np.ndarray]:
    shape = (oracle.cohorts, oracle.num_bits)
    if not isinstance(tally, RapporTally) or tally.counts.shape != shape \
            or tally.cohort_n.shape != (oracle.cohorts,):
        got = (tally.counts.shape, tally.cohort_n.shape) if isinstance(tally, RapporTally) \
            else type(tally).__name__
        raise ValueError(f"rappor: need a RapporTally of counts {shape} and cohort_n "
                         f"({oracle.cohorts},); got {got}")
    return tally.counts.astype(np.float64), tally.cohort_n.astype(np.float64)


def _check_int(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


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
    m = _check_int(num_bits, "num_bits (Bloom filter bits)", 1, 1 << 16)
    h = _check_int(num_hashes, "num_hashes (Bloom hash functions)", 1, m)
    c = _check_int(cohorts, "cohorts", 1, 1 << 16)
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
    bit_steps = (np.arange(1, m + 1, dtype=np.uint64) * _GAMMA)[None, :]  # [1, m]
    rows_per_block = max(1, _BLOCK_ENTRIES // m)
    width_nbytes = -(-m // 8)
    cohort_dtype = value_dtype(max(c, 2))

    def user_keys(users: np.ndarray, prr_seed: int) -> np.ndarray:
        s = mix64(np.array([(prr_seed + int(_GAMMA)) & _U64], dtype=np.uint64))[0]
        return mix64(s ^ mix64(users + _GAMMA))

    def cohorts_from_keys(keys: np.ndarray) -> np.ndarray:
        hi = mix64(keys ^ np.uint64(0xC0)) >> np.uint64(32)
        return ((hi * np.uint64(c)) >> np.uint64(32)).astype(np.int64)

    def check_users(users: object, n: int | None, prr_seed: object) -> tuple[np.ndarray, int]:
        u = np.asarray(users)
        if u.ndim != 1 or (n is not None and u.shape[0] != n) or u.dtype.kind not in "iu":
            want = "[n]" if n is None else f"[{n}] (one per value)"
            raise ValueError(f"rappor: users must be {want} integer ids; got {u.dtype} "
                             f"{u.shape}")
        if u.size and int(u.min()) < 0:
            raise ValueError(f"rappor: user ids must be >= 0; got {int(u.min())}")
        seed = _check_int(prr_seed, "prr_seed", 0, _U64)
        return u.astype(np.uint64), seed

    def permanent_block(v: np.ndarray, u: np.ndarray, seed: int):
        keys = user_keys(u, seed)  # [rows]
        cohort = cohorts_from_keys(keys)
        value_keys = mix64(keys ^ mix64(v.astype(np.uint64) + _TWO_GAMMA))
        uniform = mix64(value_keys[:, None] + bit_steps) >> np.uint64(11)  # [rows, m] < 2^53
        noise = uniform < set_any
        prr = np.where(noise, uniform < set_one, oracle.bloom(v, cohort))  # [rows, m]
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
        return cohorts_from_keys(user_keys(u, seed))

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
        cohort, packed = expect_reports(reports, "rappor", ("cohort", "bits"))
        if packed.ndim != 2 or packed.shape[1] != width_nbytes or packed.dtype != np.uint8:
            raise ValueError(f"rappor reports must be uint8 [n, {width_nbytes}]; got "
                             f"{packed.dtype} {packed.shape}")
        if cohort.ndim != 1 or cohort.dtype.kind not in "iu":
            raise ValueError(f"rappor cohorts must be an [n] integer array; got {cohort.dtype} "
                             f"{cohort.shape}")
        if cohort.size and (int(cohort.min()) < 0 or int(cohort.max()) >= c):
            bad = cohort[(cohort < 0) | (cohort >= c)][0]
            raise ValueError(f"rappor reports must have cohorts in [0, {c}); got {bad}")
        if m % 8 and packed.size and (packed[:, -1] >> (m % 8)).any():
            raise ValueError(f"rappor reports hold {m} bits: the last byte's high padding bits "
                             f"must be zero")
        counts = np.zeros(c * m, dtype=np.int64)
        offsets = np.arange(m)[None, :]
        for start in range(0, num_reports(reports), rows_per_block):
            bits = np.unpackbits(packed[start : start + rows_per_block], axis=1, count=m,
                                 bitorder="little").astype(bool)  # [rows, m]
            cells = cohort[start : start + rows_per_block].astype(np.int64)[:, None] * m + offsets
            counts += np.bincount(cells[bits], minlength=c * m)
        return RapporTally(counts.reshape(c, m), np.bincount(cohort, minlength=c).astype(np.int64))

    oracle = RapporOracle("rappor", epsilon, epsilon_one, k, m, h, c, f, p, q, p1, p0, m,
                          ceil_log2(c), seeds, encode, tally, permanent, cohort_of)
    return oracle
