"""Unary encoding: OUE (optimized unary encoding) and SUE (symmetric unary encoding, the basic
one-time RAPPOR).

Wang, Blocki, Li, Jha, "Locally Differentially Private Protocols for Frequency Estimation",
USENIX Security 2017 (OUE, and SUE as the one-time form of RAPPOR); Erlingsson, Pihur, Korolova,
"RAPPOR: Randomized Aggregatable Privacy-Preserving Ordinal Response", CCS 2014.

Notation map (paper -> code): ε -> `epsilon`; d (domain size) -> `k`; the one-hot vector B and
its perturbation B' -> the packed bit rows `<name>/bits`; p = Pr[B'_v = 1 | B_v = 1] -> `p_star`;
q = Pr[B'_i = 1 | B_i = 0] -> `q_star`.

A user holding v sets bit v of a length-k one-hot vector; each bit is then reported as 1 with
probability p if it was 1 and q if it was 0, independently. OUE: p = 1/2, q = 1/(e^ε+1).
SUE: p = e^{ε/2}/(e^{ε/2}+1), q = 1 - p. A report supports every item whose bit is 1.

    OUE: Var[f̂_v] = [4 e^ε/(e^ε-1)^2 + f_v] / n        SUE: Var[f̂_v] = e^{ε/2} / (n (e^{ε/2}-1)^2)

Bits: k analytic. Each report is a row of ceil(k/8) bytes (`np.packbits`, little bit order:
bit i of the vector is bit i % 8 of byte i // 8), so data bits equal k exactly when 8 divides k
and add 8*ceil(k/8) - k padding bits otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ReportField,
    ReportRule,
    check_domain,
    check_epsilon,
    check_rng,
    check_values,
    expect_reports,
)
from lowcomm.core import Payload

# Users are perturbed in row blocks of about this many bits, so that the float64 uniforms drawn
# for one block stay near 32 MiB whatever n is (memory does not grow with the chunk a caller
# passes beyond the packed reports themselves).
_BLOCK_BITS = 1 << 22


def bernoulli(rng: np.random.Generator, shape: tuple[int, ...], prob: float) -> np.ndarray:
    """Independent Bernoulli(`prob`) booleans of `shape`, drawn as U < prob for U uniform in
    [0, 1) but from one random byte per entry: the byte B is U's first 8 bits, which decide
    U < prob unless B = floor(256 prob); only those ties (1 in 256) draw a float64 for the rest
    of U. Same law as `rng.random(shape) < prob`, about 3x faster than it."""
    top = math.floor(prob * 256)
    size = math.prod(shape)
    first = np.frombuffer(rng.bytes(size), dtype=np.uint8).reshape(shape)
    out = first < top
    if top < 256:
        tie = np.flatnonzero(first == top)
        out.flat[tie] = rng.random(tie.size) < prob * 256 - top
    return out


def oue(epsilon: float, k: int) -> FrequencyOracle:
    """Optimized unary encoding: p = 1/2, q = 1/(e^ε+1) (Wang et al. 2017)."""
    epsilon = check_epsilon(epsilon)
    return _unary("oue", epsilon, k, 0.5, 1.0 / (math.exp(epsilon) + 1.0))


def sue(epsilon: float, k: int) -> FrequencyOracle:
    """Symmetric unary encoding, the basic one-time RAPPOR: p = e^{ε/2}/(e^{ε/2}+1), q = 1-p
    (Erlingsson et al. 2014; Wang et al. 2017)."""
    epsilon = check_epsilon(epsilon)
    half = math.exp(epsilon / 2)
    return _unary("sue", epsilon, k, half / (half + 1.0), 1.0 / (half + 1.0))


def _unary(name: str, epsilon: float, k: int, p: float, q: float) -> FrequencyOracle:
    k = check_domain(k, max_k=1 << 31)
    width_nbytes = -(-k // 8)
    rows_per_block = max(1, _BLOCK_BITS // k)
    spare = 8 * width_nbytes - k  # padding bits at the top of the last byte, always 0
    rules = () if not spare else (ReportRule(
        "padding_bits", f"with the {spare} padding bit(s) above bit {k - 1} clear",
        lambda packed: (packed[:, -1] >> (8 - spare)) == 0),)
    fields = (ReportField("bits", np.uint8, (width_nbytes,), rules=rules),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, name)
        rng = check_rng(rng, name)
        n = v.shape[0]
        packed = np.empty((n, width_nbytes), dtype=np.uint8)  # [n, ceil(k/8)]
        for start in range(0, n, rows_per_block):
            rows = v[start : start + rows_per_block]
            bits = bernoulli(rng, (rows.shape[0], k), q)  # [rows, k]: the zeros of the one-hot
            own = rng.random(rows.shape[0]) < p  # [rows]: the one bit, kept with probability p
            bits[np.arange(rows.shape[0]), rows] = own
            packed[start : start + rows.shape[0]] = np.packbits(bits, axis=1, bitorder="little")
        return Payload({f"{name}/bits": packed})

    def support_counts(reports: Payload) -> np.ndarray:
        (packed,) = expect_reports(reports, name, fields)
        counts = np.zeros(k, dtype=np.int64)
        for start in range(0, packed.shape[0], rows_per_block):
            block = packed[start : start + rows_per_block]
            bits = np.unpackbits(block, axis=1, count=k, bitorder="little")  # [rows, k]
            counts += bits.sum(axis=0, dtype=np.int64)
        return counts

    return FrequencyOracle(name, epsilon, k, p, q, k, encode, support_counts, fields=fields)
