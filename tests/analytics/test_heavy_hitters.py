"""Heavy hitters: PEM, TAPS and the per-party PEM baseline find planted heavy items; F1/NCR by
hand; bits per user equal the serialized report sizes; determinism; bad input.

Tolerance of the recovery tests: F1 >= 0.8 and NCR >= 0.8 for the top-10 of 10^5 users holding
16-bit items, Zipf(1.1) over 1,000 ranks spread onto random ids, at epsilon = 4 with OLH
(over data and protocol seeds 0-9, PEM, TAPS with 4 Dirichlet parties and per-party PEM never
fell below F1 = 0.8 or NCR = 0.92; the tests run seed 0)."""

from __future__ import annotations

import numpy as np
import pytest

from lowcomm.analytics import (
    f1_score,
    grr,
    ncr,
    olh,
    oue,
    pem,
    per_party_pem,
    prefix_tree,
    single_report,
    taps,
    top_k,
)
from lowcomm.analytics.prefix_tree import LevelReport, extend, run_level, top_by_score
from lowcomm.analytics.taps import Consensus
from lowcomm.core import numpy_rng, serialize
from lowcomm.data import party_split, spread_ids, zipf_items

N, BITS, K = 100_000, 16, 10


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    """10^5 users, Zipf(1.1) over 1,000 ranks, each rank a random 16-bit id."""
    ranks = np.concatenate(list(zipf_items(1000, N, s=1.1, seed=0).chunks()))
    return spread_ids(ranks, 1000, bits=BITS, rng=numpy_rng(0, purpose="hh-test-ids"))


@pytest.fixture(scope="module")
def parties(stream) -> list[np.ndarray]:
    """Four non-IID parties: each item's holders split among parties in Dir(0.5) shares."""
    return party_split(stream, 4, how="dirichlet", rng=numpy_rng(0, purpose="hh-test-split"))


def test_pem_finds_the_zipf_heavy_hitters(stream):
    result = pem(stream, prefix_tree(bits=BITS, k=K, epsilon=4.0), seed=0)
    assert result.f1 >= 0.8 and result.ncr >= 0.8, (result.f1, result.ncr)
    assert result.items.shape == (K,) and np.array_equal(result.truth, top_k(stream, K))
    assert result.rounds == 4 and result.n_users == N  # lengths 7, 10, 13, 16
    truth_f = np.bincount(stream, minlength=1 << BITS)[result.items] / N
    found = np.isin(result.items, result.truth)
    assert np.abs(result.estimates[found] - truth_f[found]).max() < 0.02  # 5 sd of one level


@pytest.mark.parametrize("oracle", [grr, oue], ids=["grr", "oue"])
def test_any_frequency_oracle_plugs_in(stream, oracle):
    result = pem(stream, prefix_tree(bits=BITS, k=K, epsilon=4.0, oracle=oracle), seed=0)
    assert result.f1 >= 0.8, result.f1


def test_taps_and_the_baseline_find_the_heavy_hitters_across_parties(stream, parties):
    tree = prefix_tree(bits=BITS, k=K, epsilon=4.0)
    found = taps(parties, tree, seed=0)
    assert found.f1 >= 0.8 and found.ncr >= 0.8, (found.f1, found.ncr)
    assert np.array_equal(found.truth, top_k(stream, K)) and found.n_users == N
    assert found.rounds == 2 + 4 * 2  # two shared levels, then two levels party after party
    baseline = per_party_pem(parties, tree, seed=0)
    assert baseline.f1 >= 0.8 and baseline.rounds == tree.levels
    assert found.party_bits > 0 and baseline.party_bits > 0
    pooled = taps(parties, tree, seed=0, shared_levels=tree.levels)  # all shared: no party phase
    assert pooled.f1 >= 0.8 and pooled.rounds == tree.levels


# --- metrics -------------------------------------------------------------------------------------


def test_f1_by_hand():
    assert f1_score([1, 2, 3, 4], [1, 2, 5, 6]) == 0.5
    assert f1_score([1, 2], [1, 2, 3, 4]) == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert f1_score([7, 8], [1, 2]) == 0.0 and f1_score([], [1]) == 0.0
    assert f1_score([3, 2, 1], [1, 2, 3]) == 1.0  # order does not matter


def test_ncr_by_hand():
    truth = [10, 20, 30, 40]  # ranks 1..4 score 4, 3, 2, 1; total 10
    assert ncr([40, 10, 99], truth) == pytest.approx(0.5)
    assert ncr([20, 30], truth) == pytest.approx(0.5)
    assert ncr(truth[::-1], truth) == 1.0 and ncr([5], truth) == 0.0
    assert ncr([10], truth) > ncr([40], truth)  # missing the top item costs the most
    with pytest.raises(ValueError, match="non-empty"):
        ncr([1], [])


def test_true_top_k_breaks_ties_toward_the_smaller_item():
    assert top_k(np.array([5, 5, 3, 3, 7, 9, 9, 9]), 3).tolist() == [9, 3, 5]
    assert top_k(np.array([4, 4]), 3).tolist() == [4]


# --- bits, rounds, determinism -------------------------------------------------------------------


def one_report_bits(oracle, value: int = 0) -> int:
    reports = oracle.encode(np.array([value]), numpy_rng(0, purpose="hh-test-bits"))
    return 8 * len(serialize(single_report(reports, 0)))


def test_bits_per_user_are_the_serialized_report_sizes(stream):
    # k = 20: start 5 bits, lengths 8, 10, 12; GRR domains 2^8 + 1 = 257 (uint16 reports),
    # then 20 * 4 + 1 = 81 (uint8) at the two later levels.
    tree = prefix_tree(bits=12, k=20, epsilon=2.0, oracle=grr)
    assert tree.lengths == (8, 10, 12)
    result = pem(stream % 4096, tree, seed=0)
    sizes = [len(g) for g in np.array_split(np.arange(N), 3)]
    wide, narrow = one_report_bits(grr(2.0, 257)), one_report_bits(grr(2.0, 81))
    assert wide == narrow + 8
    assert result.bits_per_user == (sizes[0] * wide + (sizes[1] + sizes[2]) * narrow) / N
    assert result.data_bits_per_user == (sizes[0] * 16 + (sizes[1] + sizes[2]) * 8) / N
    assert result.analytic_bits_per_user == (sizes[0] * 9 + (sizes[1] + sizes[2]) * 7) / N
    # OLH's report size does not depend on the domain: every user sends the same bytes.
    olh_result = taps([stream[:50_000], stream[50_000:]], prefix_tree(bits=BITS, k=K,
                      epsilon=4.0), seed=0)
    assert olh_result.bits_per_user == one_report_bits(olh(4.0, 100))
    assert olh_result.data_bits_per_user == 64 + 8  # seed (a, b) as 2 x uint32, y as uint8


def test_runs_are_deterministic_in_the_seed(stream, parties):
    tree = prefix_tree(bits=BITS, k=K, epsilon=2.0)
    few = [p[:5000] for p in parties]
    for run in (lambda s: pem(stream[:20_000], tree, seed=s), lambda s: taps(few, tree, seed=s),
                lambda s: per_party_pem(few, tree, seed=s)):
        first, again, other = run(3), run(3), run(4)
        assert np.array_equal(first.items, again.items)
        assert np.array_equal(first.estimates, again.estimates)
        assert not np.array_equal(first.estimates, other.estimates)


# --- the pieces, against plain loops -------------------------------------------------------------


def test_extend_and_top_by_score_match_plain_loops():
    prefixes = np.array([1, 4, 6])
    assert extend(prefixes, 2).tolist() == [p * 4 + s for p in [1, 4, 6] for s in range(4)]
    candidates = np.array([3, 5, 8, 9, 12])
    scores = np.array([0.1, 0.5, 0.5, -0.2, 0.3])
    ranked = sorted(range(5), key=lambda i: (-scores[i], candidates[i]))[:3]
    assert top_by_score(candidates, scores, 3).tolist() == sorted(candidates[ranked].tolist())


@pytest.mark.parametrize("chunk_size", [7, 1 << 16])
def test_a_level_estimates_the_prefix_frequencies(chunk_size):
    """At epsilon = 12 GRR almost never lies, so the estimates are the group's prefix
    frequencies, computed here user by user (candidates and non-candidates alike)."""
    tree = prefix_tree(bits=10, k=4, epsilon=12.0, oracle=grr, chunk_size=chunk_size)
    items = numpy_rng(5, purpose="hh-test-level").integers(0, 1024, size=3000)
    candidates = np.array([0, 3, 17, 40, 63])
    report = run_level(tree, items, candidates, length=6, rng=numpy_rng(6, purpose="hh-lvl"))
    expected = [sum(1 for v in items.tolist() if v >> 4 == c) / 3000 for c in candidates]
    assert np.abs(report.estimates - expected).max() < 0.005
    others = sum(1 for v in items.tolist() if (v >> 4) not in set(candidates.tolist()))
    assert abs(report.counts[-1] - others) < 10 and report.counts.sum() == 3000
    assert report.data_bits == 3000 * 8  # one uint8 per user, whatever the chunking


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be an integer >= 1; got 0"),
    ({"k": 2.5}, "k must be an integer >= 1; got 2.5"),
    ({"k": 70_000}, r"k must be at most the domain size 2\^bits = 65536; got 70000"),
    ({"epsilon": 0.0}, "epsilon must be a finite number > 0; got 0.0"),
    ({"epsilon": -1}, "epsilon must be a finite number > 0; got -1"),
    ({"bits": 0}, r"bits must be an integer in \[1, 62\]; got 0"),
    ({"bits": 63}, r"bits must be an integer in \[1, 62\]; got 63"),
    ({"bits": "16"}, r"bits must be an integer in \[1, 62\]; got '16'"),
    ({"step_bits": 0}, r"step_bits must be an integer in \[1, 12\]; got 0"),
    ({"start_bits": 16}, r"start_bits must be an integer in \[0, 15\]; got 16"),
    ({"chunk_size": 0}, "chunk_size must be an integer >= 1; got 0"),
    ({"oracle": "olh"}, "oracle must be a factory"),
])
def test_bad_trees_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prefix_tree(**{"bits": BITS, "k": K, "epsilon": 1.0, **kwargs})


def test_bad_users_and_parties_are_refused_naming_the_value():
    tree = prefix_tree(bits=BITS, k=K, epsilon=1.0)
    users = np.arange(100)
    with pytest.raises(ValueError, match=r"\[0, 65536\); got 65536 at index 1"):
        pem(np.array([3, 1 << 16, 5, 6]), tree, seed=0)
    with pytest.raises(ValueError, match=r"got -2 at index 0"):
        taps([users, np.array([-2, 1, 2, 3])], tree, seed=0)
    with pytest.raises(ValueError, match="dtype float64"):
        pem(np.array([1.0, 2.0, 3.0, 4.0]), tree, seed=0)
    with pytest.raises(ValueError, match=r"needs at least 4 users .* got 3"):
        pem(np.array([1, 2, 3]), tree, seed=0)
    for run in (taps, per_party_pem):
        with pytest.raises(ValueError, match="at least one party; got 0"):
            run([], tree, seed=0)
        with pytest.raises(ValueError, match="a list of item arrays"):
            run(users, tree, seed=0)
    for kwargs, message in [({"shared_levels": 5}, r"shared_levels .* \[0, 4\]; got 5"),
                            ({"shared_levels": -1}, "got -1"),
                            ({"z": -1.0}, "z must be a finite number >= 0; got -1.0"),
                            ({"max_keep": 9}, "max_keep must be an integer >= k = 10; got 9")]:
        with pytest.raises(ValueError, match=message):
            taps([users], tree, seed=0, **kwargs)


def test_the_consensus_score_weights_earlier_parties_by_their_users():
    """Party sizes 300 and 100 before a party of 600: its score of c is (sum_q n_q f_q(c) +
    600 f(c)) / 1000, with 0 for a party that never estimated c."""
    def level(candidates, estimates, variance):
        c = np.asarray(candidates)
        return LevelReport(4, c, np.zeros(c.size + 1, dtype=np.int64), np.asarray(estimates),
                           50, variance, 0, 0, 0, 0)

    known = Consensus.empty().plus(level([2, 5], [0.4, 0.1], 1e-4), 300, np.array([2]))
    known = known.plus(level([5, 9], [0.3, 0.2], 4e-4), 100, np.array([5, 9]))
    assert known.kept.tolist() == [2, 5, 9] and known.weight == 400
    assert known.lookup(np.array([2, 5, 7, 9])).tolist() == pytest.approx([120, 60, 0, 20])
    scores, variance = known.scores(level([2, 7, 9], [0.5, 0.05, 0.0], 9e-4), 600)
    assert scores.tolist() == pytest.approx([(120 + 300) / 1000, 30 / 1000, 20 / 1000])
    assert variance == pytest.approx((300**2 * 1e-4 + 100**2 * 4e-4 + 600**2 * 9e-4) / 1000**2)
    assert Consensus.empty().lookup(np.array([1, 2])).tolist() == [0, 0]
