"""Plain references for the oracles' fast paths: OLH's stepped residues against the hash family's
definition, the inverse-CDF byte sampler and the packed OUE rows against per-byte and per-bit
loops that consume the same random stream (and the sampler's table against the exact law), and
the blocked unary counts against unpacked sums."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np
import pytest

from lowcomm.analytics import oue, sue
from lowcomm.analytics.local_hashing import PRIME, count_matches, hash_values
from lowcomm.analytics.unary import _byte_law, bernoulli_bytes
from lowcomm.core import numpy_rng


def _seeds(n: int, g: int, seed: int):
    rng = numpy_rng(seed, purpose="analytics-test-fast-olh")
    a = rng.integers(1, PRIME, size=n, dtype=np.uint32)
    b = rng.integers(0, PRIME, size=n, dtype=np.uint32)
    a[:2], b[0] = PRIME - 1, PRIME - 1  # the largest residues: every step wraps
    return a, b, rng.integers(0, g, size=n).astype(np.uint16)


@pytest.mark.parametrize(("n", "k", "g"), [
    (70_000, 5, 4),  # more users than one tile holds: one item per tile, flat arrays
    (70_000, 3, 21),
    (1_000, 300, 2),  # 65 items per tile: several tiles and a partial last one
    (1_000, 300, 5),
    (3, 2_000, 65_536),  # the largest g, few users: one tile holds many items
    (40, 257, 65_535),
    (1, 2, 3),
])
def test_olh_counts_match_the_hash_definition(n, k, g):
    a, b, y = _seeds(n, g, seed=n + k + g)
    hashed = hash_values(a[:, None], b[:, None], np.arange(k)[None, :], g)  # [n, k]
    np.testing.assert_array_equal(count_matches(a, b, y, k=k, g=g),
                                  (hashed == y[:, None]).sum(axis=0))


def _law(prob):
    """Pr[byte = b] for 8 independent Bernoulli(prob) bits, and its cumulative edges [255]."""
    law = [prob ** bin(b).count("1") * (1 - prob) ** (8 - bin(b).count("1")) for b in range(256)]
    return law, list(itertools.accumulate(law))[:-1]


def _plain_bernoulli_bytes(rng, nbytes, prob):
    """The sampler's definition, one byte at a time: four 16-bit slots per random word (low
    bits first); slots number the cells of width 2^-16, whole cells (no CDF edge strictly
    inside) first, cut cells last; a whole cell gives the value of U = cell / 2^16, a cut cell
    the value of U = (cell + V) / 2^16 with V the next of one batch of floats, in byte order."""
    _, edges = _law(prob)
    cells = range(1 << 16)
    whole = [bisect.bisect_right(edges, c / 2**16) == bisect.bisect_left(edges, (c + 1) / 2**16)
             for c in cells]
    order = [c for c in cells if whole[c]] + [c for c in cells if not whole[c]]
    words = rng.integers(0, 1 << 64, size=-(-nbytes // 4), dtype=np.uint64)
    slots = [(int(words[i // 4]) >> (16 * (i % 4))) & 0xFFFF for i in range(nbytes)]
    cut = [i for i in range(nbytes) if not whole[order[slots[i]]]]
    floats = dict(zip(cut, rng.random(len(cut)), strict=True))
    return np.array([bisect.bisect_right(edges, (order[slots[i]] + floats.get(i, 0.0)) / 2**16)
                     for i in range(nbytes)], dtype=np.uint8)


PROBS = [0.0, 1 / (math.e + 1), 1 / 3, 0.5 / 256, 0.5, 255.5 / 256, 1.0]


@pytest.mark.parametrize("prob", PROBS)
def test_bernoulli_bytes_is_its_per_byte_definition(prob):
    nbytes = 3_001  # with a straddling draw or more for every prob below but 0, 1/2 and 1
    fast = bernoulli_bytes(numpy_rng(3, purpose="analytics-test-fast-bytes"), nbytes, prob)
    plain = _plain_bernoulli_bytes(numpy_rng(3, purpose="analytics-test-fast-bytes"), nbytes,
                                   prob)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize("prob", PROBS)
def test_the_byte_table_has_the_exact_law(prob):
    """The mass the table gives each byte value (whole cells, plus the parts of cut cells up to
    each edge) is prob^|b| (1-prob)^(8-|b|)."""
    table, whole, straddling, _ = _byte_law(prob)
    law, edges = _law(prob)
    mass = np.bincount(table[:whole], minlength=256) / 2**16
    bounds = [0.0, *edges, 1.0]
    for cell in straddling:
        low, high = cell / 2**16, (cell + 1) / 2**16
        for b in range(256):
            mass[b] += max(0.0, min(high, bounds[b + 1]) - max(low, bounds[b]))
    np.testing.assert_allclose(mass, law, rtol=0, atol=1e-14)  # float64 sums of the edges
    assert straddling.size <= 255 and table.size == 2**16


@pytest.mark.parametrize(("factory", "k"), [(oue, 70), (sue, 64), (oue, 1001)])
def test_packed_rows_are_the_per_bit_rows(factory, k):
    """Each row: the sampler's bytes (padding bits past k cleared), the own bit replaced by a
    Bernoulli(p) draw; bit i of the vector is bit i % 8 of byte i // 8."""
    oracle = factory(1.0, k)
    values = numpy_rng(4, purpose="analytics-test-fast-values").integers(0, k, size=9)
    fast = oracle.encode(values, numpy_rng(5, purpose="analytics-test-fast-rows"))
    rng = numpy_rng(5, purpose="analytics-test-fast-rows")
    width = -(-k // 8)
    drawn = bernoulli_bytes(rng, values.size * width, oracle.q_star)
    own = rng.random(values.size) < oracle.p_star
    rows = np.zeros((values.size, width), dtype=np.uint8)
    for i, v in enumerate(values):
        for item in range(k):
            byte = int(drawn[i * width + item // 8])
            bit = bool(own[i]) if item == v else bool((byte >> (item % 8)) & 1)
            rows[i, item // 8] |= bit << (item % 8)
    np.testing.assert_array_equal(fast[f"{oracle.name}/bits"], rows)


def test_unary_counts_over_many_count_blocks_equal_the_unpacked_sum():
    k, n = 1024, 3_000  # 1,024 rows per count block: three blocks, the last one partial
    oracle = oue(1.0, k)
    reports = oracle.encode(np.arange(n) % k, numpy_rng(6, purpose="analytics-test-fast-count"))
    bits = np.unpackbits(reports["oue/bits"], axis=1, count=k, bitorder="little")
    np.testing.assert_array_equal(oracle.support_counts(reports), bits.sum(axis=0))
