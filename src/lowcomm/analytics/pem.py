"""PEM, the Prefix Extending Method, and the per-party PEM baseline of federated heavy hitters.

Tianhao Wang, Ninghui Li, Somesh Jha, "Locally Differentially Private Heavy Hitter
Identification", arXiv 1708.06674 (2017); IEEE Transactions on Dependable and Secure Computing
(TDSC). The arXiv version is the one read (its abstract; the parameterisation below follows the
reference card and pure-ldp's `PEMServer`, whose code was read; the TDSC volume was not checked).

Notation map (paper -> code): m (bits of a value) -> `tree.bits`; k -> `tree.k`;
gamma = ceil(log2 k) (the start length) -> `tree.start_bits`; eta (bits added per level) ->
`tree.step_bits`; g (groups = levels) -> `tree.levels`; the prefix length of group i,
gamma + i * eta (capped at m) -> `tree.lengths[i - 1]`; the frequency oracle (OLH in the
paper) -> `tree.oracle`; the candidate set of level i -> `candidates`.

Algorithm: users are split uniformly at random into g groups, one per level. Level 1's
candidates are all 2^(gamma + eta) prefixes; at each level the level's group reports its prefix
through the oracle (`run_level`), the server keeps the k candidates of largest estimate and
extends each by every eta-bit suffix to form the next level's candidates; the output is the top-k
of the last level. Every user reports once, so the protocol is epsilon-LDP. The group's
estimates are frequencies among the group (unbiased for the population); the paper scales counts
by g instead, which ranks the same.

Deviation, on purpose: the interactive candidate form of `lowcomm.analytics.prefix_tree` (users
receive the candidate list and report an index into it, or "not a candidate"), so any
`FrequencyOracle` can be used; with OLH its variance equals the paper's non-interactive form.

`per_party_pem` is the baseline for several parties: each party runs PEM on its own users alone,
sends its top-k and their estimates to a coordinator, which merges them as
sum_p n_p f_p(x) / sum_p n_p (0 where a party did not report x) and outputs the top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowcomm.analytics.heavy_hitters import HeavyHitters, Traffic, finish, merge_estimates
from lowcomm.analytics.prefix_tree import (
    PrefixTree,
    check_items,
    check_parties,
    level_candidates,
    run_level,
    split_groups,
    top_by_score,
)
from lowcomm.core import Payload, numpy_rng


@dataclass(frozen=True)
class PartyTop:
    """One party's PEM output: its top-k, their estimates among its users, and its traffic."""

    items: np.ndarray  # [<= k] int64, highest estimate first
    estimates: np.ndarray  # [<= k]
    n_users: int
    traffic: Traffic


def pem_party(items: np.ndarray, tree: PrefixTree, *, seed: int, party: int = 0) -> PartyTop:
    """PEM over one population of users (already checked by `check_items`)."""
    groups = split_groups(items.shape[0], tree.levels,
                          numpy_rng(seed, client=party, purpose="pem-groups"))
    traffic, kept = Traffic(), None
    for level, length in enumerate(tree.lengths):
        candidates = level_candidates(tree, kept, level)
        report = run_level(tree, items[groups[level]], candidates, length=length,
                           rng=numpy_rng(seed, round=level, client=party, purpose="pem-encode"))
        traffic = traffic.plus_level(report)
        kept = top_by_score(candidates, report.estimates, tree.k)
    order = np.lexsort((candidates, -report.estimates))[: tree.k]
    return PartyTop(candidates[order], report.estimates[order], items.shape[0], traffic)


def pem(values, tree: PrefixTree, *, seed: int) -> HeavyHitters:
    """PEM over all users in one population: the top-`tree.k` items of `values` ([n] ints in
    [0, 2^bits)), with F1/NCR against the true top-k and the measured bits per user."""
    items = check_items(values, tree, "pem")
    top = pem_party(items, tree, seed=seed)
    return finish("pem", tree.k, items, top.items, top.estimates, traffic=top.traffic,
                  rounds=tree.levels)


def per_party_pem(parties, tree: PrefixTree, *, seed: int) -> HeavyHitters:
    """The baseline: independent PEM in each party (`parties` is a list of [n_p] item arrays),
    the parties' top-k merged by user-weighted estimates. Parties run in parallel, so the rounds
    are PEM's levels; `party_bits` counts the serialized top-k each party sends."""
    checked = check_parties(parties, tree, "per_party_pem")
    tops = [pem_party(items, tree, seed=seed, party=p) for p, items in enumerate(checked)]
    traffic = Traffic()
    for top in tops:
        traffic = traffic.merged(top.traffic).plus_message(
            Payload({"items": top.items, "estimates": top.estimates}))
    union, estimates = merge_estimates([(t.items, t.estimates, t.n_users) for t in tops])
    return finish("per-party pem", tree.k, np.concatenate(checked), union, estimates,
                  traffic=traffic, rounds=tree.levels)

