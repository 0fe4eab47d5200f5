"""Heavy-hitter results and their metrics: F1 and NCR of the top-k, bits per user, rounds.

The protocols (`pem`, `per_party_pem` in `lowcomm.analytics.pem`, `taps` in
`lowcomm.analytics.taps`) simulate the users, so they know the true top-k and return one
`HeavyHitters` record with the found items, their estimates, the metrics and the measured costs.

Metrics (Wang, Li, Jha, "Locally Differentially Private Heavy Hitter Identification",
arXiv 1708.06674, and TAPS, arXiv 2412.14832, both report them):

* F1 = 2 P R / (P + R), with precision P = |found ∩ true| / |found| and recall
  R = |found ∩ true| / |true|; when both lists hold k items, F1 = P = R.
* NCR (normalized cumulative rank): the true top-k item of rank r (1 = most frequent) scores
  k - r + 1, any other item 0; NCR = the found items' total score / (k (k + 1) / 2). Missing the
  most frequent item costs k/(k(k+1)/2), missing the k-th only 1/(k(k+1)/2).

The true top-k ranks items by count, ties broken toward the smaller item id (`top_k`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.prefix_tree import LevelReport
from lowcomm.core import Payload


def top_k(items: np.ndarray, k: int) -> np.ndarray:
    """The k most frequent values of `items` (fewer if fewer distinct), most frequent first;
    equal counts are ordered by the smaller value."""
    values, counts = np.unique(np.asarray(items), return_counts=True)
    order = np.lexsort((values, -counts))
    return values[order[:k]].astype(np.int64)


def f1_score(found, truth) -> float:
    """F1 of the set `found` against the set `truth` (0 when either is empty)."""
    found, truth = set(np.asarray(found).tolist()), set(np.asarray(truth).tolist())
    hits = len(found & truth)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(found), hits / len(truth)
    return 2 * precision * recall / (precision + recall)


def ncr(found, truth) -> float:
    """Normalized cumulative rank of `found` against `truth` ranked most frequent first."""
    truth = np.asarray(truth).tolist()
    k = len(truth)
    if k == 0:
        raise ValueError("ncr needs a non-empty true top-k")
    score = {item: k - rank for rank, item in enumerate(truth)}  # rank 0 scores k
    return sum(score.get(item, 0) for item in set(np.asarray(found).tolist())) / (k * (k + 1) / 2)


@dataclass(frozen=True)
class Traffic:
    """Measured bits, summed: users' reports (wire, parsed data, analytic), the candidate lists
    they receive, and what the parties' aggregators exchange."""

    users: int = 0
    wire_bits: int = 0
    data_bits: int = 0
    analytic_bits: int = 0
    down_bits: int = 0
    party_bits: int = 0

    def plus_level(self, level: LevelReport) -> Traffic:
        n = level.n_users
        return Traffic(self.users + n, self.wire_bits + n * level.wire_bits,
                       self.data_bits + level.data_bits,
                       self.analytic_bits + n * level.analytic_bits,
                       self.down_bits + n * level.down_bits, self.party_bits)

    def plus_message(self, payload: Payload) -> Traffic:
        """One message between aggregators, measured as its serialized length."""
        return Traffic(self.users, self.wire_bits, self.data_bits, self.analytic_bits,
                       self.down_bits, self.party_bits + 8 * payload.nbytes)

    def merged(self, other: Traffic) -> Traffic:
        return Traffic(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.users, self.wire_bits, self.data_bits, self.analytic_bits, self.down_bits,
                self.party_bits)


@dataclass(frozen=True)
class HeavyHitters:
    """The top-k a protocol found, scored against the truth, with its measured costs.

    `bits_per_user`: the mean over users of their one serialized report (wire bits, framing
    included); `data_bits_per_user`: the report arrays alone; `analytic_bits_per_user`: the
    oracle's paper count; `down_bits_per_user`: the serialized candidate list each user
    receives; `party_bits`: everything the parties' aggregators exchange; `rounds`: sequential
    rounds in which a group of users answers a candidate list (the protocol's critical path)."""

    method: str
    items: np.ndarray  # [<= k] int64, highest estimate first
    estimates: np.ndarray  # [<= k] estimated normalised frequencies among all users
    truth: np.ndarray  # [<= k] the true top-k, most frequent first
    f1: float
    ncr: float
    n_users: int
    rounds: int
    bits_per_user: float
    data_bits_per_user: float
    analytic_bits_per_user: float
    down_bits_per_user: float
    party_bits: int


def sum_by_item(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(items [u] sorted, sums [u]): the union of the parts' items and, for each, the sum of the
    values the parts hold for it. `parts` holds (items [c], values [c]) pairs."""
    items = np.concatenate([np.asarray(c, dtype=np.int64) for c, _ in parts])
    values = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in parts])
    union, inverse = np.unique(items, return_inverse=True)
    return union, np.bincount(inverse, weights=values, minlength=union.size)


def merge_estimates(parts: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Global frequency estimates from per-party ones: sum_p n_p f_p(x) / sum_p n_p over the union
    of items, an item a party did not estimate counting 0 there. `parts` holds
    (items [c_p], estimates [c_p], n_p). Returns (items [u] sorted, estimates [u])."""
    union, sums = sum_by_item([(items, n * np.asarray(est)) for items, est, n in parts])
    return union, sums / sum(n for _, _, n in parts)


def finish(method: str, k: int, all_items: np.ndarray, candidates: np.ndarray,
           estimates: np.ndarray, *, traffic: Traffic, rounds: int) -> HeavyHitters:
    """The top-k of (candidates, estimates) scored against the true top-k of `all_items`."""
    order = np.lexsort((candidates, -estimates))[:k]
    found, truth = candidates[order], top_k(all_items, k)
    n = all_items.shape[0]
    if traffic.users != n:
        raise RuntimeError(f"{method}: {traffic.users} users reported, expected {n}")
    return HeavyHitters(method, found, estimates[order], truth, f1_score(found, truth),
                        ncr(found, truth), n, rounds, traffic.wire_bits / n,
                        traffic.data_bits / n, traffic.analytic_bits / n,
                        traffic.down_bits / n, traffic.party_bits)
