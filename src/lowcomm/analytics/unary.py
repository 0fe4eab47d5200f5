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

Bits: k analytic. Each report is a row of ceil(k/8) bytes (the layout of `np.packbits` with
little bit order: bit i of the vector is bit i % 8 of byte i // 8), so data bits equal k exactly
when 8 divides k and add 8*ceil(k/8) - k padding bits otherwise (always 0).

The client draws each row's bytes straight in packed form, 8 Bernoulli(q) bits per byte by an
inverse-CDF table (`bernoulli_bytes`), and then sets the row's own bit to a Bernoulli(p) draw;
the server unpacks blocks of rows and sums their columns in uint16.
"""

from __future__ import annotations

import functools
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

# Users are perturbed in row blocks of about this many bits (the sampler's int64 slots then take
# 1 MiB), and counted in blocks of at most 65535 rows (uint16 column sums of the unpacked bits
# cannot overflow).
_BLOCK_BITS = 1 << 20
_COUNT_BITS = 1 << 20
_SLOTS = 1 << 16  # a byte is drawn from a uniform 16-bit slot


@functools.lru_cache(maxsize=64)
def _byte_law(prob: float) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """The inverse-CDF table of a byte of 8 independent Bernoulli(`prob`) bits over 2^16 equal
    cells of [0, 1): (table [2^16] uint8, pure, straddling [m] cells, edges [255]).

    The byte value b has probability prob^|b| (1-prob)^(8-|b|) (|b| its set bits); `edges` is
    the cumulative sum. A cell whose interval holds no edge maps to one value; the m cells that
    an edge cuts need the rest of U. Slots are the cells reordered, the `pure` whole cells first
    and the straddling ones last (any fixed reordering of a uniform slot is uniform), so that a
    straddling draw is found by one comparison, slot >= pure."""
    ones = np.array([bin(b).count("1") for b in range(256)])
    edges = np.cumsum(prob**ones * (1 - prob) ** (8 - ones))[:-1]  # [255]
    cells = np.arange(_SLOTS)
    low = np.searchsorted(edges, cells / _SLOTS, side="right")  # the value of U = cell / 2^16
    high = np.searchsorted(edges, (cells + 1) / _SLOTS, side="left")  # just below the next cell
    whole = low == high
    order = np.concatenate([cells[whole], cells[~whole]])  # slot -> cell
    return low[order].astype(np.uint8), int(whole.sum()), cells[~whole], edges


def bernoulli_bytes(rng: np.random.Generator, nbytes: int, prob: float) -> np.ndarray:
    """`[nbytes]` uint8 whose 8 bits are independent Bernoulli(`prob`) draws, by inverse CDF.

    Each byte takes a uniform 16-bit slot (four per random 64-bit word) and looks its value up
    in `_byte_law`'s table; the 0.4% or so of slots whose cell an edge of the CDF cuts draw a
    float64 V and take the value of U = (cell + V) / 2^16 (a binary search over the edges).
    So the byte is the inverse CDF of a uniform U known to 16 + 53 bits: each bit is Bernoulli
    (`prob`), independent of the others, up to float64 rounding of the cumulative sums (about
    1e-16), for about 2 random bits per drawn bit."""
    table, pure, straddling, edges = _byte_law(float(prob))
    words = rng.integers(0, 1 << 64, size=-(-nbytes // 4), dtype=np.uint64)
    slots = words.astype("<u8", copy=False).view("<u2")[:nbytes].astype(np.intp)  # [nbytes]
    out = table.take(slots)
    cut = np.flatnonzero(slots >= pure)
    if cut.size:
        u = (straddling[slots[cut] - pure] + rng.random(cut.size)) / _SLOTS
        out[cut] = np.searchsorted(edges, u, side="right")
    return out


def bernoulli(rng: np.random.Generator, shape: tuple[int, ...], prob: float) -> np.ndarray:
    """Independent Bernoulli(`prob`) booleans of `shape`: the bits of `bernoulli_bytes`."""
    size = math.prod(shape)
    bits = np.unpackbits(bernoulli_bytes(rng, -(-size // 8), prob), count=size,
                         bitorder="little")
    return bits.view(np.bool_).reshape(shape)


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
    rows_per_block = max(1, _BLOCK_BITS // (8 * width_nbytes))
    rows_per_count = max(1, min(65535, _COUNT_BITS // k))
    last_byte = np.uint8(0xFF if k % 8 == 0 else (1 << (k % 8)) - 1)  # bits past k - 1: 0
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
            count = rows.shape[0]
            block = bernoulli_bytes(rng, count * width_nbytes, q).reshape(count, width_nbytes)
            block[:, -1] &= last_byte
            own = rng.random(count) < p  # [rows]: the one bit, kept with probability p
            index = (np.arange(count), rows // 8)  # the byte holding each row's own bit
            bit = (1 << (rows % 8)).astype(np.uint8)
            block[index] = (block[index] & ~bit) | np.where(own, bit, np.uint8(0))
            packed[start : start + count] = block
        return Payload({f"{name}/bits": packed})

    def support_counts(reports: Payload) -> np.ndarray:
        (packed,) = expect_reports(reports, name, fields)
        counts = np.zeros(k, dtype=np.int64)
        for start in range(0, packed.shape[0], rows_per_count):
            block = packed[start : start + rows_per_count]
            bits = np.unpackbits(block, axis=1, count=k, bitorder="little")  # [rows, k]
            counts += np.add.reduce(bits, axis=0, dtype=np.uint16)  # rows <= 65535
        return counts

    return FrequencyOracle(name, epsilon, k, p, q, k, encode, support_counts, fields=fields)
