"""TAPS: federated heavy hitters across parties with target-aligning prefix trees.

Yuemin Zhang, Qingqing Ye, Haibo Hu, "Federated Heavy Hitter Analytics with Local Differential
Privacy", Proc. ACM Manag. Data (SIGMOD 2025), arXiv 2412.14832.

Only the paper's abstract and introduction could be read (no algorithm listing, no code); what
follows implements its three stated ideas, and every detail below them is this module's choice
(marked [choice]). The setting: P parties, each with its own users; every user perturbs her item
locally (epsilon-LDP, one report per user); the goal is the top-k over the union of all users.

1. TAP phase I, the shared shallow trie: for the first `shared_levels` levels every party's
   level group answers the same global candidate list, the parties' support counts are summed
   (`pooled`), and the kept prefixes are common to all parties.
2. TAP phase II, per-party trees with adaptive extension: each party grows its own tree from the
   shared prefixes to full length. Instead of PEM's fixed top-k per level, a level keeps every
   candidate whose score is significant, score > z * sd(score | f = 0), at least k and at most
   `max_keep` of them (`adaptive_keep`) [choice: the rule, and the defaults z = 3,
   max_keep = 2k]. This covers the prefixes of all heavy items when a party's prefix frequencies
   are flat, and stays at k when they are not; max_keep = k turns it off (PEM's top-k).
3. TAPS's consensus-based pruning: parties run phase II in order p = 1..P. Party p adds to its
   candidates what earlier parties kept at that level, and ranks candidates by the consensus
   score (sum_{q<p} n_q f_q(c) + n_p f_p(c)) / sum_{q<=p} n_q, where f_q are earlier parties'
   noisy estimates (0 for a candidate party q never estimated) [choice: this weighting]. A
   candidate is pruned only when the parties seen so far agree it is small.

The output [choice]: each party sends its last level's estimates to a coordinator, which merges
them as sum_p n_p f_p(x) / N (0 where party p did not estimate x) and returns the top-k.
Not verified against the paper: the depth of the shared trie, the keep rule and its threshold,
the consensus weights, the final merge, the party order (here: as given) and the user split
(here: each party's users split uniformly into one group per level, as in PEM).

Notation map (paper -> code): epsilon -> `tree.epsilon`; k -> `tree.k`; the parties -> `parties`
(a list of item arrays); the shallow trie's granularity -> `shared_levels` (prefix length
`tree.lengths[shared_levels - 1]`); the frequency oracle -> `tree.oracle` (OLH by default); the
noisy prior knowledge of earlier parties -> `Consensus`.

Rounds: phase I's levels run in every party at once; phase II runs party after party, so the
protocol takes shared_levels + P * (L - shared_levels) rounds (PEM per party: L).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.heavy_hitters import (
    HeavyHitters,
    Traffic,
    finish,
    merge_estimates,
    sum_by_item,
)
from lowcomm.analytics.oracle import value_dtype
from lowcomm.analytics.prefix_tree import (
    LevelReport,
    PrefixTree,
    check_parties,
    level_candidates,
    run_level,
    split_groups,
    top_by_score,
)
from lowcomm.core import Payload, numpy_rng


def adaptive_keep(candidates: np.ndarray, scores: np.ndarray, zero_variance: float, *, k: int,
                  max_keep: int, z: float) -> np.ndarray:
    """The candidates whose score exceeds z * sd at f = 0, clamped to [k, max_keep] of them."""
    significant = int(np.count_nonzero(scores > z * math.sqrt(zero_variance)))
    c = candidates.shape[0]
    return top_by_score(candidates, scores, min(max(significant, k), max_keep, c))


def pooled(reports: list[LevelReport]) -> tuple[np.ndarray, float]:
    """The estimate from all groups' summed support counts: the group-size weighted mean of the
    groups' unbiased estimates (equal, since the estimator is affine in the counts)."""
    n = sum(r.n_users for r in reports)
    scores = sum(r.n_users * r.estimates for r in reports) / n
    return scores, sum(r.n_users ** 2 * r.zero_variance for r in reports) / n ** 2


@dataclass(frozen=True)
class Consensus:
    """What earlier parties know at one level: the items they estimated, sum_q n_q f_q(x) over
    them, sum_q n_q, sum_q n_q^2 Var_q(0), and the union of what they kept."""

    items: np.ndarray  # [u] sorted int64
    sums: np.ndarray  # [u] float64
    weight: float
    variance_sum: float
    kept: np.ndarray  # [v] sorted int64

    @staticmethod
    def empty() -> Consensus:
        nothing = np.zeros(0, dtype=np.int64)
        return Consensus(nothing, np.zeros(0), 0.0, 0.0, nothing)

    def lookup(self, candidates: np.ndarray) -> np.ndarray:
        """sum_q n_q f_q(c) for each candidate, 0 where no earlier party estimated it."""
        if self.items.size == 0:
            return np.zeros(candidates.shape[0])
        at = np.minimum(np.searchsorted(self.items, candidates), self.items.size - 1)
        return np.where(self.items[at] == candidates, self.sums[at], 0.0)

    def scores(self, report: LevelReport, n_party: int) -> tuple[np.ndarray, float]:
        """The consensus score of each of the report's candidates, (sum_{q<p} n_q f_q(c) +
        n_p f_p(c)) / sum_{q<=p} n_q, and its variance at f = 0."""
        weight = self.weight + n_party
        sums = self.lookup(report.candidates) + n_party * report.estimates
        variance = (self.variance_sum + n_party ** 2 * report.zero_variance) / weight ** 2
        return sums / weight, variance

    def plus(self, report: LevelReport, n_party: int, kept: np.ndarray) -> Consensus:
        items, sums = sum_by_item([(self.items, self.sums),
                                   (report.candidates, n_party * report.estimates)])
        return Consensus(items, sums, self.weight + n_party,
                         self.variance_sum + n_party ** 2 * report.zero_variance,
                         np.union1d(self.kept, kept))

    def payload(self, length: int) -> Payload:
        """The message that hands this knowledge to the next party."""
        dtype = value_dtype(1 << length)
        return Payload({"items": self.items.astype(dtype), "sums": self.sums,
                        "kept": self.kept.astype(dtype),
                        "totals": np.array([self.weight, self.variance_sum])})


def taps(parties, tree: PrefixTree, *, seed: int, shared_levels: int | None = None,
         z: float = 3.0, max_keep: int | None = None) -> HeavyHitters:
    """The top-`tree.k` items over all parties' users (`parties`: a list of [n_p] item arrays in
    [0, 2^bits)), found with TAPS, scored against the true top-k, with the measured costs.
    `shared_levels` defaults to half of the tree's levels (rounded down)."""
    checked = check_parties(parties, tree, "taps")
    levels, lengths = tree.levels, tree.lengths
    shared = levels // 2 if shared_levels is None else shared_levels
    if not isinstance(shared, (int, np.integer)) or isinstance(shared, bool) \
            or not 0 <= shared <= levels:
        raise ValueError(f"shared_levels must be an integer in [0, {levels}]; got {shared!r}")
    if not isinstance(z, (int, float)) or isinstance(z, bool) or not math.isfinite(z) or z < 0:
        raise ValueError(f"z must be a finite number >= 0; got {z!r}")
    max_keep = 2 * tree.k if max_keep is None else max_keep
    if not isinstance(max_keep, (int, np.integer)) or isinstance(max_keep, bool) \
            or max_keep < tree.k:
        raise ValueError(f"max_keep must be an integer >= k = {tree.k}; got {max_keep!r}")
    keep = {"k": tree.k, "max_keep": int(max_keep), "z": float(z)}
    groups = [split_groups(items.shape[0], levels,
                           numpy_rng(seed, client=p, purpose="taps-groups"))
              for p, items in enumerate(checked)]

    def answer(p: int, level: int, candidates: np.ndarray) -> LevelReport:
        return run_level(tree, checked[p][groups[p][level]], candidates, length=lengths[level],
                         rng=numpy_rng(seed, round=level, client=p, purpose="taps-encode"))

    traffic, kept = Traffic(), None
    for level in range(shared):  # phase I: one shallow trie for all parties
        candidates = level_candidates(tree, kept, level)
        reports = [answer(p, level, candidates) for p in range(len(checked))]
        for report in reports:  # each party's aggregator sends its counts to the coordinator
            traffic = traffic.plus_level(report).plus_message(Payload({"counts": report.counts}))
        scores, zero_variance = pooled(reports)
        kept = adaptive_keep(candidates, scores, zero_variance, **keep)
    all_items = np.concatenate(checked)
    if shared == levels:
        return finish("taps", tree.k, all_items, candidates, scores, traffic=traffic,
                      rounds=levels)

    prior = [Consensus.empty() for _ in range(levels)]
    finals = []
    for p, items in enumerate(checked):  # phase II: the parties in order, each with the prior
        n_party, kept_p = items.shape[0], kept
        for level in range(shared, levels):
            known = prior[level]
            candidates = np.union1d(level_candidates(tree, kept_p, level), known.kept)
            report = answer(p, level, candidates)
            traffic = traffic.plus_level(report)
            if p:
                traffic = traffic.plus_message(known.payload(lengths[level]))
            scores, zero_variance = known.scores(report, n_party)
            kept_p = adaptive_keep(candidates, scores, zero_variance, **keep)
            prior[level] = known.plus(report, n_party, kept_p)
        finals.append((report.candidates, report.estimates, n_party))
        traffic = traffic.plus_message(Payload({"items": report.candidates,
                                                "estimates": report.estimates}))
    union, estimates = merge_estimates(finals)
    return finish("taps", tree.k, all_items, union, estimates, traffic=traffic,
                  rounds=shared + len(checked) * (levels - shared))
