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

The server's support counting costs O(n k) hash evaluations, vectorized in blocks of users.
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
_BLOCK_ENTRIES = 1 << 21  # users x items hashed at once by the server (about 16 MiB of uint64)


def hash_values(a: np.ndarray, b: np.ndarray, x: np.ndarray, g: int) -> np.ndarray:
    """h_{a,b}(x) = ((a x + b) mod P) mod g, broadcasting; exact in uint64 (a x + b < 2^63)."""
    a64, b64, x64 = (np.asarray(t, dtype=np.uint64) for t in (a, b, x))
    return ((a64 * x64 + b64) % np.uint64(PRIME)) % np.uint64(g)


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
    items = np.arange(k, dtype=np.uint64)
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
        rows = max(1, _BLOCK_ENTRIES // k)
        for start in range(0, a.shape[0], rows):
            end = start + rows
            hashed = hash_values(a[start:end, None], b[start:end, None], items[None, :], g)
            counts += (hashed == y[start:end, None]).sum(axis=0, dtype=np.int64)  # [rows, k]
        return counts

    analytic_bits = SEED_BITS + ceil_log2(g)
    return FrequencyOracle(name, epsilon, k, p, q_star, analytic_bits, encode, support_counts,
                           g=g, fields=fields)
