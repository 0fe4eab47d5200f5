"""What the prefix-tree heavy-hitter protocols (PEM, TAPS) share: the tree, and one level of it.

Every user holds an item, a `bits`-bit integer v in [0, 2^bits). Its prefix of length s is
v >> (bits - s). A `PrefixTree` fixes the schedule of prefix lengths s_1 < s_2 < ... < s_L = bits:
s_l = min(bits, start_bits + l * step_bits), as in PEM (Wang, Li, Jha, arXiv 1708.06674: the first
level enumerates every prefix of length gamma + eta, with gamma = ceil(log2 k), and each later
level extends the kept prefixes by eta bits).

One level (`run_level`): a group of users receives the level's public candidate list C (sorted
prefixes of length s), maps its own prefix to its index in C, or to the extra index |C| ("not a
candidate", bottom) when it is absent, and reports that index through an epsilon-LDP frequency
oracle over the domain [0, |C| + 1). The candidate list is computed from other users' reports
only, so each user's one report is epsilon-LDP. Reports travel as real bytes: every chunk of
reports is serialized and the server counts what it parses back (`lowcomm.core.serialize`); one
user's report is measured with `report_bits`. The estimate of each candidate is the oracle's
unbiased normalised frequency among the group, an unbiased estimate of the prefix's frequency in
the population the group was drawn from.

This is PEM in its interactive form: the paper's users report their prefix over the whole
2^s-value domain, and the server queries only the candidates. With OLH (the default) the
estimator's variance does not depend on the domain size, so the two forms are equally accurate;
the candidate form lets any `FrequencyOracle` plug in (GRR, OUE, ... over a small domain) and
costs a downlink: the candidate list each user receives, measured here as a serialized payload.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.local_hashing import olh
from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ceil_log2,
    check_epsilon,
    check_values,
    report_bits,
    value_dtype,
)
from lowcomm.core import Payload, deserialize, serialize

OracleFactory = Callable[[float, int], FrequencyOracle]
MAX_BITS = 62  # items and prefixes are int64; shifts stay exact
MAX_STEP_BITS = 12  # a level holds at most keep * 2^step candidates


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low \
            or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PrefixTree:
    """The task and the tree: find the top `k` of `bits`-bit items at privacy `epsilon`, with the
    frequency oracle `oracle(epsilon, domain)` at every level, prefixes extended `step_bits` bits
    a level from `start_bits`, users encoded `chunk_size` at a time. Build with `prefix_tree`."""

    bits: int
    k: int
    epsilon: float
    oracle: OracleFactory
    step_bits: int
    start_bits: int
    chunk_size: int

    @property
    def lengths(self) -> tuple[int, ...]:
        """The prefix length s_l of each level l = 1..L; the last is `bits`."""
        span = self.bits - self.start_bits
        levels = math.ceil(span / self.step_bits)
        return tuple(self.start_bits + math.ceil(level * span / levels)
                     for level in range(1, levels + 1))

    @property
    def levels(self) -> int:
        return len(self.lengths)


def prefix_tree(*, bits: int, k: int, epsilon: float, oracle: OracleFactory = olh,
                step_bits: int = 3, start_bits: int | None = None,
                chunk_size: int = 1 << 16) -> PrefixTree:
    """A validated `PrefixTree`. `start_bits` defaults to PEM's gamma = ceil(log2 k) (at most
    bits - 1), so the first level holds 2^(gamma + step) candidates and later ones about
    k * 2^step."""
    bits = _check_int(bits, "bits", 1, MAX_BITS)
    k = _check_int(k, "k", 1)
    if k > 1 << bits:
        raise ValueError(f"k must be at most the domain size 2^bits = {1 << bits}; got {k}")
    epsilon = check_epsilon(epsilon)
    step_bits = _check_int(step_bits, "step_bits", 1, MAX_STEP_BITS)
    if start_bits is None:
        start_bits = min(ceil_log2(k), bits - 1)
    start_bits = _check_int(start_bits, "start_bits", 0, bits - 1)
    if start_bits + step_bits > 20:
        raise ValueError(f"start_bits + step_bits must be at most 20 (the first level lists all "
                         f"2^(start_bits + step_bits) prefixes); got {start_bits} + {step_bits}")
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    if not callable(oracle) or not isinstance(oracle(epsilon, 2), FrequencyOracle):
        raise ValueError(f"oracle must be a factory (epsilon, k) -> FrequencyOracle such as "
                         f"lowcomm.analytics.olh; got {oracle!r}")
    return PrefixTree(bits, k, epsilon, oracle, step_bits, start_bits, chunk_size)


def check_items(values, tree: PrefixTree, name: str) -> np.ndarray:
    """The users' items as a `[n]` int64 array in [0, 2^bits), at least one user per level."""
    items = check_values(values, 1 << tree.bits, name)
    if items.shape[0] < tree.levels:
        raise ValueError(f"{name} needs at least {tree.levels} users (one group per level); "
                         f"got {items.shape[0]}")
    return items


def check_parties(parties, tree: PrefixTree, name: str) -> list[np.ndarray]:
    """Each party's items checked by `check_items`; at least one party."""
    if isinstance(parties, np.ndarray) or not hasattr(parties, "__len__"):
        raise ValueError(f"{name}: parties must be a list of item arrays, one per party; got "
                         f"{type(parties).__name__}")
    if len(parties) < 1:
        raise ValueError(f"{name}: parties must hold at least one party; got {len(parties)}")
    return [check_items(items, tree, f"{name} party {p}") for p, items in enumerate(parties)]


def split_groups(n: int, levels: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A uniformly random split of users 0..n-1 into `levels` groups of near-equal size."""
    return np.array_split(rng.permutation(n), levels)


def first_candidates(tree: PrefixTree) -> np.ndarray:
    """Every prefix of the first level's length: the tree's root level is exhaustive."""
    return np.arange(1 << tree.lengths[0], dtype=np.int64)


def level_candidates(tree: PrefixTree, kept: np.ndarray | None, level: int) -> np.ndarray:
    """Level `level`'s candidates: every prefix at level 0, else the kept prefixes of the level
    before, each extended to this level's length."""
    if level == 0:
        return first_candidates(tree)
    return extend(kept, tree.lengths[level] - tree.lengths[level - 1])


def extend(prefixes: np.ndarray, step: int) -> np.ndarray:
    """Each prefix followed by every `step`-bit suffix, sorted if `prefixes` is: [c * 2^step]."""
    suffixes = np.arange(1 << step, dtype=np.int64)
    return ((np.asarray(prefixes, dtype=np.int64)[:, None] << step) | suffixes[None, :]).ravel()


@dataclass(frozen=True)
class LevelReport:
    """What one group's reports tell the server about one level's candidates."""

    length: int  # prefix length s of the level
    candidates: np.ndarray  # [c] int64, sorted
    counts: np.ndarray  # [c + 1] int64 support counts (the last one is "not a candidate")
    estimates: np.ndarray  # [c] unbiased normalised frequencies among the group
    n_users: int
    zero_variance: float  # Var of an estimate whose true frequency is 0, for this group
    wire_bits: int  # one user's serialized report, framing included (measured)
    data_bits: int  # all the group's reports: the arrays parsed back from the bytes (measured)
    analytic_bits: int  # one report as the oracle's paper counts it
    down_bits: int  # the serialized candidate list each user of the group receives (measured)


def candidate_payload(candidates: np.ndarray, length: int) -> Payload:
    """The candidate list as it is broadcast: prefixes in the narrowest unsigned integer."""
    return Payload({"candidates": candidates.astype(value_dtype(1 << length))})


def run_level(tree: PrefixTree, items: np.ndarray, candidates: np.ndarray, *, length: int,
              rng: np.random.Generator) -> LevelReport:
    """Users holding `items` report their length-`length` prefix's index in `candidates`."""
    n, c = items.shape[0], candidates.shape[0]
    if n < 1:
        raise ValueError(f"a level needs at least one user; got {n}")
    oracle = tree.oracle(tree.epsilon, c + 1)
    counts = np.zeros(c + 1, dtype=np.int64)
    data_bits = 0
    measured = None
    for start in range(0, n, tree.chunk_size):
        prefix = items[start : start + tree.chunk_size] >> (tree.bits - length)  # [chunk]
        index = np.minimum(np.searchsorted(candidates, prefix), c - 1)
        index = np.where(candidates[index] == prefix, index, c)  # c = not a candidate
        reports = oracle.encode(index, rng)
        received = deserialize(serialize(reports))  # the server counts what crossed the link
        counts += oracle.support_counts(received)
        data_bits += 8 * sum(arr.nbytes for arr in received.values())
        if measured is None:
            measured = report_bits(oracle, reports)
    estimates = oracle.estimate(counts, n)[:c]
    zero_variance = float(np.max(oracle.variance(n, 0.0)))
    down_bits = 8 * candidate_payload(candidates, length).nbytes
    return LevelReport(length, candidates, counts, estimates, n, zero_variance,
                       measured.wire_bits, data_bits, measured.analytic_bits, down_bits)


def top_by_score(candidates: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The `count` highest-scoring candidates (ties to the smaller prefix), sorted by prefix."""
    order = np.lexsort((candidates, -scores))
    return np.sort(candidates[order[:count]])
