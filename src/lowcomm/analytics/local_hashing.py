"""Local hashing: OLH (optimal local hashing) and BLH (binary local hashing).

Wang, Blocki, Li, Jha, "Locally Differentially Private Protocols for Frequency Estimation",
USENIX Security 2017.

Notation map (paper -> code): ε -> `epsilon`; d (domain size) -> `k`; g (hash range) -> `g`;
the user's hash H -> the seed `(a, b)` in arrays `<name>/a`, `<name>/b`; the perturbed hashed
value y -> `<name>/y`; p = e^ε/(e^ε+g-1) -> `p_star`; q* -> `q_star` (exact for the family below).

Each user draws a hash h from a pinned universal family, computes x = h(v), reports x with
probability p and otherwise one of the g-1 other hashed values uniformly, and sends (y, seed).
A report supports every item v' with h(v') = y. OLH uses g = round(e^ε) + 1 (the paper's optimum
is e^ε + 1; rounding to an integer as pure-ldp and multi-freq-ldpy do), BLH uses g = 2.

The hash family (pinned; changing it changes every report): with the Mersenne prime
P = 2^31 - 1, a seed is a pair (a, b) with a uniform in [1, P) and b uniform in [0, P), and

    h_{a,b}(x) = ((a x + b) mod P) mod g,     x in [0, k), k <= P.

This is the Carter-Wegman family: for x != x', the pair ((a x + b) mod P, (a x' + b) mod P) is
uniform over ordered pairs of distinct residues, so the collision probability is exactly
c = sum_j n_j (n_j - 1) / (P (P - 1)) with n_j = #{r in [0, P): r mod g = j} (about 1/g, off
by O(1/P)). Hence p* = p and q* = p c + (1 - p)(1 - c)/(g - 1), exactly; with c = 1/g this is
the paper's q* = 1/g. The estimator and `variance` use the exact q*, so they are exact for this
family, not only for an idealised random hash.

    Var[f̂_v] = q*(1-q*)/(n (p-q*)^2) + f_v (1-p-q*)/(n (p-q*))    (with q* = 1/g: OLH at
    g = e^ε+1 gives [4 e^ε/(e^ε-1)^2 + f_v]/n; BLH gives [(e^ε+1)^2/(e^ε-1)^2 - f_v]/n)

Bits: analytic ceil(log2 g) + 62 seed bits (ceil(log2((P-1) P)), the information in (a, b)).
The payload stores a and b as uint32 (64 bits: 2 padding bits) and y in the narrowest unsigned
integer (uint8 for g <= 256), so the data bits are 64 + 8 x itemsize(y), never equal to the
analytic bits. With public coins (a seed derived from a shared key and the user id) the seed
need not be sent; that variant is not implemented here.

The server's support counting costs O(n k) hash evaluations; `count_matches` does them with no
modulo or division inside its loop. For one user, consecutive items' residues differ by a:
(a (v+1) + b) mod P = r_v + a, less P when that reaches P, which in uint32 arithmetic is
min(s, s - P) for s = r_v + a < 2P (s - P wraps above s when s < P). So a tile of T items x
the users is computed once (T = 1 unless the batch is small) and moved along the domain by
adding (a T) mod P. The test r mod g = y is a mask for g a power of two ((r ^ y) & (g - 1) = 0)
and otherwise exact float64 arithmetic: for r < 2^31 and g <= 2^16, floor((r + 1/2) / g)
computed in float64 is the true quotient (the rounding error, below 2^-21, is less than the
distance 1/(2g) >= 2^-17 to the next integer). The tests check the counts against a plain loop
and against `hash_values` over every (user, item) pair.
"""

from __future__ import annotations

import math

import numpy as np

from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ReportField,
    ceil_log2,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
    value_dtype,
)
from lowcomm.core import Payload

PRIME = (1 << 31) - 1  # P of the pinned hash family
SEED_BITS = ceil_log2((PRIME - 1) * PRIME)  # 62: the information in one (a, b) seed
_BLOCK_USERS = 1 << 16  # users whose residues the server keeps at once (256 KiB of uint32)
_TILE_ENTRIES = 1 << 16  # users x items tested at once, so that small batches still vectorize


def hash_values(a: np.ndarray, b: np.ndarray, x: np.ndarray, g: int) -> np.ndarray:
    """h_{a,b}(x) = ((a x + b) mod P) mod g, broadcasting; exact in uint64 (a x + b < 2^63)."""
    a64, b64, x64 = (np.asarray(t, dtype=np.uint64) for t in (a, b, x))
    return ((a64 * x64 + b64) % np.uint64(PRIME)) % np.uint64(g)


def count_matches(a: np.ndarray, b: np.ndarray, y: np.ndarray, *, k: int, g: int) -> np.ndarray:
    """`[k]` int64: for every item v, how many users i have h_{a_i,b_i}(v) = y_i (module
    docstring: residues stepped along the domain, no modulo inside the loop)."""
    n = a.shape[0]
    counts = np.zeros(k, dtype=np.int64)
    if n == 0:
        return counts
    width = max(1, min(k, _TILE_ENTRIES // n))  # T items per tile (T > 1 only for small n)
    a64, b64 = a.astype(np.uint64)[None, :], b.astype(np.uint64)[None, :]  # [1, n]
    items = np.arange(width, dtype=np.uint64)[:, None]  # [T, 1]
    r = ((a64 * items + b64) % np.uint64(PRIME)).astype(np.uint32)  # [T, n]: (a v + b) mod P
    step = ((a64 * np.uint64(width)) % np.uint64(PRIME)).astype(np.uint32)  # [1, n]: a T mod P
    prime, wrapped = np.uint32(PRIME), np.empty_like(r)
    power_of_two = g & (g - 1) == 0
    if power_of_two:  # the hash is the low bits
        mask, target, differ = np.uint32(g - 1), y.astype(np.uint32)[None, :], np.empty_like(r)
    else:
        inverse, target = 1.0 / g, y.astype(np.float64)[None, :] + 0.5
        shifted, quotient = np.empty(r.shape), np.empty(r.shape)
        equal = np.empty(r.shape, dtype=bool)
    for first in range(0, k, width):
        rows = min(width, k - first)
        if power_of_two:
            np.bitwise_xor(r, target, out=differ)
            np.bitwise_and(differ, mask, out=differ)
            counts[first : first + rows] += n - _nonzero_per_item(differ, rows)
        else:  # (r + 1/2) - g floor((r + 1/2) / g) = (r mod g) + 1/2, exactly
            np.add(r, 0.5, out=shifted)
            np.multiply(shifted, inverse, out=quotient)
            np.floor(quotient, out=quotient)
            np.multiply(quotient, -g, out=quotient)
            np.add(quotient, shifted, out=quotient)
            np.equal(quotient, target, out=equal)
            counts[first : first + rows] += _nonzero_per_item(equal, rows)
        np.add(r, step, out=r)  # < 2P < 2^32
        np.subtract(r, prime, out=wrapped)  # wraps above r unless r >= P
        np.minimum(r, wrapped, out=r)
    return counts


def _nonzero_per_item(x: np.ndarray, rows: int) -> np.ndarray | int:
    """Nonzero entries of each of the first `rows` rows of `x` [T, n] (one row: the fast path)."""
    return np.count_nonzero(x) if x.shape[0] == 1 else np.count_nonzero(x[:rows], axis=1)


def collision_probability(g: int) -> float:
    """Pr[h(x) = h(x')] for x != x' over a uniform seed of the family: exact (integer sums)."""
    base, extra = divmod(PRIME, g)
    pairs = extra * (base + 1) * base + (g - extra) * base * (base - 1)
    return pairs / (PRIME * (PRIME - 1))


def olh(epsilon: float, k: int, *, g: int | None = None) -> FrequencyOracle:
    """Optimal local hashing: g = round(e^ε) + 1 unless `g` is given (Wang et al. 2017)."""
    epsilon = check_epsilon(epsilon)
    if g is None:
        g = max(2, round(math.exp(epsilon)) + 1)
    return local_hashing("olh", epsilon, k, g=g)


def blh(epsilon: float, k: int) -> FrequencyOracle:
    """Binary local hashing: g = 2 (Wang et al. 2017)."""
    return local_hashing("blh", check_epsilon(epsilon), k, g=2)


def local_hashing(name: str, epsilon: float, k: int, *, g: int) -> FrequencyOracle:
    """Local hashing into [0, g) with the pinned family of this module, then GRR over [0, g)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=PRIME)
    if not isinstance(g, (int, np.integer)) or isinstance(g, bool) or not 2 <= g <= 1 << 16:
        raise ValueError(f"hash range g must be an integer in [2, 65536]; got {g!r}")
    g = int(g)
    e = math.exp(epsilon)
    p = e / (e + g - 1)
    c = collision_probability(g)
    q_star = p * c + (1 - p) * (1 - c) / (g - 1)
    y_dtype = value_dtype(g)
    fields = (ReportField("a", np.uint32, low=1, high=PRIME),
              ReportField("b", np.uint32, high=PRIME), ReportField("y", y_dtype, high=g))

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, name)
        rng = check_rng(rng, name)
        n = v.shape[0]
        a = rng.integers(1, PRIME, size=n, dtype=np.uint32)  # [n]
        b = rng.integers(0, PRIME, size=n, dtype=np.uint32)  # [n]
        x = hash_values(a, b, v, g).astype(np.int64)  # [n]
        keep = rng.random(n) < p
        other = rng.integers(0, g - 1, size=n)  # uniform over the g-1 other hashed values
        other += other >= x
        y = np.where(keep, x, other).astype(y_dtype)
        return Payload({f"{name}/a": a, f"{name}/b": b, f"{name}/y": y})

    def support_counts(reports: Payload) -> np.ndarray:
        a, b, y = expect_reports(reports, name, fields)
        counts = np.zeros(k, dtype=np.int64)
        for start in range(0, a.shape[0], _BLOCK_USERS):
            end = start + _BLOCK_USERS
            counts += count_matches(a[start:end], b[start:end], y[start:end], k=k, g=g)
        return counts

    analytic_bits = SEED_BITS + ceil_log2(g)
    return FrequencyOracle(name, epsilon, k, p, q_star, analytic_bits, encode, support_counts,
                           g=g, fields=fields)
