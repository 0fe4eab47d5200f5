"""Hadamard frequency oracles: HR (Hadamard Response, general ε) and HM (one-bit Hadamard).

HR: Acharya, Sun, Zhang, "Hadamard Response: Estimating Distributions Privately, Efficiently,
and with Little Communication", AISTATS 2019. HM: the one-bit Hadamard randomized response as
described by Cormode, Maddock, Maple, "Frequency Estimation under Local Differential Privacy",
PVLDB 14(11), 2021 (pure-ldp's `hadamard_mechanism` with t = 1; Apple's HCMS without the sketch).

The Hadamard matrix is Sylvester's, H[i, j] = (-1)^popcount(i & j); entries are computed from
the parity of i & j (`hadamard_entries`) and the server transforms histograms with a fast
Walsh-Hadamard transform (`fwht`), so no k x k matrix is ever held.

HM. Notation map: ε -> `epsilon`; the domain rounded up to a power of two K -> `width`; the
sampled column j -> array `hm/index`; the reported bit -> `hm/bit`. A user holding v draws
j ~ U[0, K), takes the bit [H[v, j] = +1] and flips it with probability 1/(e^ε+1). A report
(j, bit) supports item x when its bit equals [H[x, j] = +1]. Distinct rows agree on exactly half
of the columns, so this is a pure protocol: p* = e^ε/(e^ε+1), q* = 1/2, and

    Var[f̂_v] = [(e^ε+1)^2/(e^ε-1)^2 - f_v] / n      (as BLH, and HR with one block)

Support counts are C = (n + FWHT(A)) / 2 with A_j = sum of the ±1 bits of reports at column j.
Bits: ceil(log2 K) + 1 analytic; the payload holds the column in the narrowest unsigned integer
and the bit as one uint8.

HR. Notation map: ε -> `epsilon`; B -> `blocks`; b -> `block_size`; the output y in
[0, B b) -> array `hr/value`. Parameters: B0 = the largest power of two strictly below
min(e^ε, 2k) (1 when that minimum is at most 2), b = the smallest power of two with
b - 1 >= ceil(k / B0), and B = ceil(k / (b - 1)) <= B0 blocks, the ones that hold items (the
paper sizes b from floor(k/B0), which can leave items without a block, and keeps empty blocks,
which only lowers p*). Item x lives in block x // (b-1) at row r = x % (b-1) + 1 of H_b (row 0
is never used); its set C_x = {block(x) * b + u : H_b[r, u] = +1} has b/2 outputs. The client
outputs each element of C_x with weight e^ε and every other of the B b outputs with weight 1:

    Pr[y in C_x] = e^ε / Z,  Pr[y in block(x) \\ C_x] = 1 / Z,  Pr[y elsewhere] = 2(B-1) / Z,
    Z = e^ε - 1 + 2B.

HR is NOT pure in the sense of `oracle.py` for B > 1: with support "y in C_x", another item of
x's block supports x with probability (e^ε+1)/(2Z) and an item of another block with 1/Z. Its
estimator uses the *signed* support s_x(y) = H_b[r, u] if y = (block(x), u), else 0, whose mean
is (e^ε-1)/Z for a holder of x and exactly 0 for anyone else. So `support_counts` returns the
signed counts S_x = #(y in C_x) - #(y in block(x) \\ C_x) (one FWHT per block; they can be
negative and still add over chunks), and the oracle carries p* = (e^ε-1)/Z, q* = 0, which makes
the inherited `estimate` the unbiased f̂_x = S_x / (n p*) of the paper. Its variance is not the
pure one: with F_x the total frequency of x's block,

    Var[f̂_x] = [Z (2 + F_x (e^ε-1)) / (e^ε-1)^2 - f_x] / n,

which depends on the data through F_x (items are mapped to blocks in order, not permuted).
`HadamardResponseOracle` overrides `variance` with it; nothing else changes. With B = 1 (small
ε) F_x = 1 and it is the HM/BLH formula. Bits: ceil(log2(B b)) analytic; the payload holds y in
the narrowest unsigned integer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

MAX_K = 1 << 24  # the server's transform holds O(k) int64 entries


def parity(x: np.ndarray) -> np.ndarray:
    """popcount(x) mod 2, elementwise, for non-negative integers (as uint8 0/1)."""
    x = np.asarray(x).astype(np.uint64)
    return (np.bitwise_count(x) & np.uint8(1)).astype(np.uint8)


def hadamard_entries(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Sylvester Hadamard entries H[i, j] = (-1)^popcount(i & j) as int8 ±1, broadcasting."""
    i64, j64 = np.asarray(i, dtype=np.uint64), np.asarray(j, dtype=np.uint64)
    return (1 - 2 * parity(i64 & j64).astype(np.int8)).astype(np.int8)


def fwht(a: np.ndarray) -> np.ndarray:
    """Fast Walsh-Hadamard transform along the last axis (a power of two long): out[..., i] =
    sum_j H[i, j] a[..., j], with H in Sylvester (popcount parity) order. Exact in int64."""
    a = np.array(a, dtype=np.int64)
    lead, m = a.shape[:-1], a.shape[-1]
    if m < 1 or m & (m - 1):
        raise ValueError(f"fwht needs a power-of-two length; got {m}")
    h = 1
    while h < m:
        pairs = a.reshape(*lead, m // (2 * h), 2, h)
        a = np.stack((pairs[..., 0, :] + pairs[..., 1, :], pairs[..., 0, :] - pairs[..., 1, :]),
                     axis=-2).reshape(*lead, m)
        h *= 2
    return a


def _lowest_set_bit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    return x & -x


# ----------------------------------------------------------------------------------------- HM


def hm(epsilon: float, k: int) -> FrequencyOracle:
    """The one-bit Hadamard mechanism over [0, k) at privacy level `epsilon` (a pure protocol)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=MAX_K)
    width = 1 << ceil_log2(k)  # K: rows 0..k-1 of H_K are the items
    e = math.exp(epsilon)
    keep = e / (e + 1)  # Pr[the bit is sent unflipped]
    index_dtype = value_dtype(width)
    fields = (ReportField("index", index_dtype, high=width), ReportField("bit", np.uint8, high=2))

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "hm")
        rng = check_rng(rng, "hm")
        n = v.shape[0]
        j = rng.integers(0, width, size=n)  # [n]
        true_bit = 1 - parity(v & j)  # [n] 1 where H[v, j] = +1
        flip = rng.random(n) >= keep
        bit = (true_bit ^ flip).astype(np.uint8)
        return Payload({"hm/index": j.astype(index_dtype), "hm/bit": bit})

    def support_counts(reports: Payload) -> np.ndarray:
        j, bit = expect_reports(reports, "hm", fields)
        j = j.astype(np.int64)
        plus = np.bincount(j[bit == 1], minlength=width)
        minus = np.bincount(j[bit != 1], minlength=width)
        signed = fwht(plus - minus)[:k]  # [k] sum_i s_i H[x, j_i]
        return (j.shape[0] + signed) // 2  # exact: n + signed is even

    return FrequencyOracle("hm", epsilon, k, keep, 0.5, ceil_log2(width) + 1, encode,
                           support_counts, fields=fields)


# ----------------------------------------------------------------------------------------- HR


@dataclass(frozen=True)
class HadamardResponseOracle(FrequencyOracle):
    """HR's oracle: `FrequencyOracle` with HR's data-dependent variance (module docstring).
    Support counts are signed, p* = (e^ε-1)/Z and q* = 0, so `estimate` is the inherited one."""

    blocks: int = 1
    block_size: int = 2

    def block_of(self) -> np.ndarray:
        """The block of every item, `[k]`."""
        return np.arange(self.k) // (self.block_size - 1)

    def variance(self, n: int, f: np.ndarray | float) -> np.ndarray:
        """Var[f̂_x] = [Z (2 + F_x (e^ε-1)) / (e^ε-1)^2 - f_x] / n with F_x the frequency of x's
        block. `f` is a `[k]` frequency vector (exact), or a scalar: every item's own frequency,
        the other 1 - f of the users spread evenly over the other k - 1 items (exact for B = 1,
        where F_x = 1)."""
        f = np.asarray(f, dtype=np.float64)
        block = self.block_of()
        if f.ndim == 0:
            members = np.bincount(block, minlength=self.blocks)[block]  # [k] items in x's block
            mass = f + (1 - f) * (members - 1) / (self.k - 1)
            f = np.full(self.k, float(f))
        elif f.shape == (self.k,):
            mass = np.bincount(block, weights=f, minlength=self.blocks)[block]  # [k] F_x
        else:
            raise ValueError(f"{self.name}: f must be a scalar or have shape ({self.k},); got "
                             f"{f.shape}")
        em1 = math.expm1(self.epsilon)
        z = em1 + 2 * self.blocks
        return (z * (2 + mass * em1) / em1**2 - f) / n


def hr_parameters(epsilon: float, k: int) -> tuple[int, int]:
    """(B, b): the number of blocks holding items and the block size (module docstring)."""
    target = min(math.exp(epsilon), 2.0 * k)
    mantissa, exponent = math.frexp(target)  # target = mantissa 2^exponent, mantissa in [.5, 1)
    below = exponent - 2 if mantissa == 0.5 else exponent - 1  # largest 2^t strictly < target
    paper_blocks = 1 << max(0, below)
    per_block = -(-k // paper_blocks)  # ceil(k / B0) items per block at least
    block_size = 1 << ceil_log2(per_block + 1)
    blocks = -(-k // (block_size - 1))
    return blocks, block_size


def hr(epsilon: float, k: int) -> HadamardResponseOracle:
    """Hadamard Response over [0, k) at privacy level `epsilon` (Acharya, Sun, Zhang 2019)."""
    epsilon = check_epsilon(epsilon)
    k = check_domain(k, max_k=MAX_K)
    blocks, b = hr_parameters(epsilon, k)
    e = math.exp(epsilon)
    z = e + (2 * blocks - 1)  # e^ε - 1 + 2B; exactly e^ε + 1 for one block, so in_block = 1
    in_set, in_block = e / z, (e + 1) / z  # cumulative: C_x, then the rest of x's block
    outputs = blocks * b
    y_dtype = value_dtype(outputs)
    fields = (ReportField("value", y_dtype, high=outputs),)

    def encode(values: np.ndarray, rng: np.random.Generator) -> Payload:
        v = check_values(values, k, "hr")
        rng = check_rng(rng, "hr")
        n = v.shape[0]
        block, row = v // (b - 1), v % (b - 1) + 1  # [n]
        u = rng.integers(0, b, size=n)  # [n] a position, fixed up to the wanted parity below
        draw = rng.random(n)
        other = rng.integers(0, max(blocks - 1, 1), size=n)  # [n] among the B-1 other blocks
        other += other >= block
        own = draw < in_block
        want_odd = (draw >= in_set) & own  # the rest of x's block: H_b[r, u] = -1
        wrong = parity(row & u).astype(bool) != want_odd
        u = np.where(own & wrong, u ^ _lowest_set_bit(row), u)  # a bijection odd <-> even
        y = np.where(own, block, other) * b + u
        return Payload({"hr/value": y.astype(y_dtype)})

    def support_counts(reports: Payload) -> np.ndarray:
        (y,) = expect_reports(reports, "hr", fields)
        histogram = np.bincount(y.astype(np.int64), minlength=outputs).reshape(blocks, b)
        signed = fwht(histogram)  # [B, b]: row r of block β is S for item β (b-1) + r - 1
        items = np.arange(k)
        return signed[items // (b - 1), items % (b - 1) + 1]

    return HadamardResponseOracle("hr", epsilon, k, math.expm1(epsilon) / z, 0.0,
                                  ceil_log2(outputs), encode, support_counts,
                                  fields=fields, blocks=blocks, block_size=b)
