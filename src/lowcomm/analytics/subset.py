"""SS (Subset Selection): each user reports a set of ω items out of the domain.

S. Wang, L. Huang, P. Wang, Y. Nie, H. Xu, W. Yang, X.-Y. Li, C. Qiao, "Mutual Information
Optimally Local Private Discrete Distribution Estimation", arXiv 1607.08025, 2016 (the
"k-subset mechanism"); Ye and Barg, "Optimal Schemes for Discrete Distribution Estimation under
Locally Differential Privacy", IEEE Trans. Inf. Theory 64(8), 2018.

Notation map (paper -> code): ε -> `epsilon`; the domain size (d in Wang et al., k in Ye and
Barg) -> `k`; the subset size (k in Wang et al., d in Ye and Barg, ω in ldp.md) ->
`subset_size` / `subset_size_of(oracle)`; the reported subset Z -> the row `ss/items`;
p* = Pr[v ∈ Z | user holds v] -> `p_star`; q* = Pr[u ∈ Z | user holds v ≠ u] -> `q_star`.

Mechanism. A user holding v outputs a subset Z of [k] with |Z| = ω and Pr[Z] proportional to
e^ε when v ∈ Z and to 1 otherwise. Sampled in two steps: with probability
p = ω e^ε / (ω e^ε + k − ω) the set is v plus ω − 1 items drawn uniformly without replacement
from the k − 1 others; otherwise it is ω items drawn uniformly from the k − 1 others. Any two
inputs give one set probabilities in ratio at most e^ε (exactly e^ε for sets holding one input
and not the other). A report supports each of its ω items, so

    p* = ω e^ε / (ω e^ε + k − ω),
    q* = [ω (ω − 1) e^ε + ω (k − ω)] / [(k − 1)(ω e^ε + k − ω)],

and the estimator and variance are those of a pure protocol (`oracle.py`). The default
ω = max(1, rint(k / (e^ε + 1))) (the multi-freq-ldpy rounding; the PGR code takes the ceiling),
capped at k − 1; near it, n·Var of the f = 0 term is about 4 e^ε/(e^ε − 1)² for large k (k = 1024,
ε = 1: ω = 275, n·Var = 3.674). ω = 1 is GRR exactly.

Sampling is vectorized over users in row blocks (no per-user Python loop). Each user draws a
uniform ω-subset of the k − 1 "other" items: if ω² > k − 1, from k − 1 uniform float64 keys per
user whose ω smallest `argpartition` finds (O(k) per user; blocks of about 2^22 keys, 32 MiB);
if ω² <= k − 1, by Floyd's algorithm run column by column over the whole block (O(ω²) per user).
The positions are shifted past v; for the users who keep v, a uniformly chosen slot is replaced
by v (what remains of a uniform ω-subset is a uniform (ω − 1)-subset). Each row is then sorted,
so the report is the set alone: where v sits in the row reveals nothing.

Bits: two analytic counts. `analytic_bits` = ω ⌈log2 k⌉, the ω item ids as sent; the
information-theoretic size of a report is ⌈log2 C(k, ω)⌉ (`ideal_bits`; 855 at k = 1024,
ε = 1, against 2750). The payload stores the ids in the narrowest unsigned integer type, so the
data bits equal ω ⌈log2 k⌉ when k is 2^8, 2^16 or 2^32 and are padded to the integer width
otherwise (k = 1024: 16 bits per id).
"""

from __future__ import annotations

import math

import numpy as np

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
from lowcomm.core import Payload

# Users are sampled in row blocks of about this many float64 keys (32 MiB), whatever n is.
_BLOCK_KEYS = 1 << 22


def default_subset_size(epsilon: float, k: int) -> int:
    """ω = max(1, rint(k / (e^ε + 1))), at most k − 1 (the near-optimal subset size)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k)
    return int(min(k - 1, max(1, round(k / (math.exp(epsilon) + 1.0)))))


def subset_size_of(oracle: FrequencyOracle) -> int:
    """ω of an SS oracle (its reports hold ω item ids of ⌈log2 k⌉ analytic bits each)."""
    if oracle.name != "ss":
        raise ValueError(f"not an ss oracle: {oracle.name!r}")
    return oracle.analytic_bits // ceil_log2(oracle.k)


def ideal_bits(k: int, subset_size: int) -> int:
    """⌈log2 C(k, ω)⌉: the bits that index one ω-subset of [k], exactly (integer arithmetic)."""
    return ceil_log2(math.comb(k, subset_size))


def _keyed_subsets(rng: np.random.Generator, rows: int, m: int, size: int) -> np.ndarray:
    """`rows` uniform `size`-subsets of [0, m) as int64 `[rows, size]`: the positions of the
    `size` smallest of m uniform keys per row (O(m) per row)."""
    keys = rng.random((rows, m))  # [rows, m]
    return np.argpartition(keys, size - 1, axis=1)[:, :size]


def _floyd_subsets(rng: np.random.Generator, rows: int, m: int, size: int) -> np.ndarray:
    """`rows` uniform `size`-subsets of [0, m) as int64 `[rows, size]`, by Floyd's algorithm run
    on all rows at once: for j = m-size, ..., m-1 draw t uniform in [0, j] and add t, or j if t
    was already taken (O(size²) per row)."""
    out = np.empty((rows, size), dtype=np.int64)
    for i, j in enumerate(range(m - size, m)):
        t = rng.integers(0, j + 1, size=rows)
        taken = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(taken, j, t)
    return out


def ss(epsilon: float, k: int, *, subset_size: int | None = None) -> FrequencyOracle:
    """Subset Selection over [0, k) at privacy level `epsilon` with subsets of size
    `subset_size` (ω; default `default_subset_size(epsilon, k)`), 1 <= ω <= k − 1."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=1 << 32)
    if subset_size is None:
        omega = default_subset_size(epsilon, k)
    elif (not isinstance(subset_size, (int, np.integer)) or isinstance(subset_size, bool)
          or not 1 <= subset_size <= k - 1):
        raise ValueError(f"ss: subset_size must be an integer in [1, {k - 1}] (k = {k}); got "
                         f"{subset_size!r}")
    else:
        omega = int(subset_size)
    e = math.exp(epsilon)
    denominator = omega * e + k - omega
    keep = omega * e / denominator  # p = Pr[v ∈ Z] = p*
    q = (omega * (omega - 1) * e + omega * (k - omega)) / ((k - 1) * denominator)
    dtype = value_dtype(k)
    floyd = omega * omega <= k - 1  # small subsets: O(ω²) per user beats O(k)
    rows_per_block = max(1, _BLOCK_KEYS // (omega if floyd else k - 1))
    sorted_set = ReportRule("unsorted_items", "as strictly increasing items (a sorted set of "
                            f"{omega} distinct items)",
                            lambda items: (items[:, 1:] > items[:, :-1]).all(axis=1))
    fields = (ReportField("items", dtype, (omega,), high=k, rules=(sorted_set,)),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "ss")
        rng = check_rng(rng, "ss")
        n = v.shape[0]
        items = np.empty((n, omega), dtype=dtype)  # [n, ω]
        for start in range(0, n, rows_per_block):
            own = v[start : start + rows_per_block, None]  # [rows, 1]
            rows = own.shape[0]
            sample = _floyd_subsets if floyd else _keyed_subsets
            picked = sample(rng, rows, k - 1, omega)  # [rows, ω]: a uniform ω-subset of [0, k-1)
            picked += picked >= own  # position i -> the i-th item other than v
            with_v = np.flatnonzero(rng.random(rows) < keep)
            # dropping a uniform slot of a uniform ω-subset leaves a uniform (ω-1)-subset
            slot = rng.integers(0, omega, size=with_v.size)
            picked[with_v, slot] = own[with_v, 0]
            items[start : start + rows] = np.sort(picked, axis=1)
        return Payload({"ss/items": items})

    def support_counts(reports: Payload) -> np.ndarray:
        (items,) = expect_reports(reports, "ss", fields)
        return np.bincount(items.ravel().astype(np.int64), minlength=k).astype(np.int64)

    return FrequencyOracle("ss", epsilon, k, keep, q, omega * ceil_log2(k), encode,
                           support_counts, fields=fields)
