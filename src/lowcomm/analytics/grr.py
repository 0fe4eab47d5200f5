"""GRR (generalized randomized response, k-RR, direct encoding).

Warner, "Randomized Response", JASA 1965 (k = 2); Kairouz, Bonawitz, Ramage, "Discrete
Distribution Estimation under Local Privacy", ICML 2016 (k-RR); analysed as "direct encoding" in
Wang et al., USENIX Security 2017.

Notation map (paper -> code): ε -> `epsilon`; d or k (domain size) -> `k`; p = e^ε/(e^ε+k-1)
-> `p_star`; q = 1/(e^ε+k-1) -> `q_star`; the report y -> array `grr/value`.

A user holding v reports v with probability p and otherwise one of the k-1 other values
uniformly. A report supports exactly the value it names, so p* = p and q* = q, and

    Var[f̂_v] = [(k-2+e^ε)/(e^ε-1)^2 + f_v (k-2)/(e^ε-1)] / n

(the pure-protocol variance with these p*, q*). Bits: ceil(log2 k) analytic; the payload stores
each value in the narrowest of uint8/16/32, so the data bits equal the analytic bits exactly
when k is 2^8, 2^16 or 2^32, and are padded to the integer width otherwise.
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


def grr(epsilon: float, k: int) -> FrequencyOracle:
    """Generalized randomized response over [0, k) at privacy level `epsilon`."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=1 << 32)
    e = math.exp(epsilon)
    p, q = e / (e + k - 1), 1.0 / (e + k - 1)
    dtype = value_dtype(k)
    fields = (ReportField("value", dtype, high=k),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "grr")
        rng = check_rng(rng, "grr")
        keep = rng.random(v.shape[0]) < p  # [n]
        other = rng.integers(0, k - 1, size=v.shape[0])  # [n] uniform over the k-1 others
        other += other >= v  # skip the true value
        return Payload({"grr/value": np.where(keep, v, other).astype(dtype)})

    def support_counts(reports: Payload) -> np.ndarray:
        (y,) = expect_reports(reports, "grr", fields)
        return np.bincount(y, minlength=k).astype(np.int64)

    return FrequencyOracle("grr", epsilon, k, p, q, ceil_log2(k), encode, support_counts,
                           fields=fields)
