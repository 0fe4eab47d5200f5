"""Subset Selection (SS): accuracy against the closed-form variance, unbiasedness, the exact
privacy ratio by enumeration of all ω-subsets, the shape of reports, bits, and bad input."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from tests.analytics.oracle_trials import assert_unbiased, run_trials

from lowcomm.analytics import grr, report_bits, single_report
from lowcomm.analytics.subset import default_subset_size, ideal_bits, ss, subset_size_of
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

K = 256
TRIALS = 10
N_USERS = 20_000


@functools.cache
def _trials(epsilon: float, subset_size: int | None):
    oracle = ss(epsilon, K, subset_size=subset_size)
    f_true, estimates = run_trials(oracle, n_users=N_USERS, trials=TRIALS,
                                   purpose=f"analytics-test-ss-{epsilon}-{subset_size}")
    return oracle, f_true, estimates  # [k], [trials, k]


CASES = [(1.0, None), (3.0, None), (1.0, 200)]  # the default ω, and a large non-optimal ω


@pytest.mark.parametrize(("epsilon", "subset_size"), CASES)
def test_mse_matches_the_closed_form_variance(epsilon, subset_size):
    oracle, f_true, estimates = _trials(epsilon, subset_size)
    mse = np.mean((estimates - f_true) ** 2)
    theory = np.mean(oracle.variance(N_USERS, f_true))
    assert abs(mse / theory - 1) < 4 * math.sqrt(2 / (K * TRIALS)), mse / theory


@pytest.mark.parametrize(("epsilon", "subset_size"), CASES)
def test_default_estimate_is_unbiased(epsilon, subset_size):
    oracle, f_true, estimates = _trials(epsilon, subset_size)
    assert_unbiased(oracle, f_true, estimates, n_users=N_USERS, label=(epsilon, subset_size))


def _support_probabilities(k, omega, epsilon):
    """p*, q* from the defining law Pr[Z] ∝ e^ε [v ∈ Z] + [v ∉ Z], by enumerating all subsets."""
    weights = {z: (math.exp(epsilon) if 0 in z else 1.0)
               for z in itertools.combinations(range(k), omega)}
    total = sum(weights.values())
    return (sum(w for z, w in weights.items() if 0 in z) / total,
            sum(w for z, w in weights.items() if 1 in z) / total)


@pytest.mark.parametrize(("k", "omega", "epsilon"), [(5, 2, 1.0), (7, 3, 0.3), (6, 5, 2.0)])
def test_p_star_q_star_and_variance_follow_the_definition(k, omega, epsilon):
    oracle = ss(epsilon, k, subset_size=omega)
    p, q = _support_probabilities(k, omega, epsilon)
    assert (oracle.p_star, oracle.q_star) == (pytest.approx(p, rel=1e-12),
                                              pytest.approx(q, rel=1e-12))
    n, f = 100, np.array([0.0, 0.2])
    want = q * (1 - q) / (n * (p - q) ** 2) + f * (1 - p - q) / (n * (p - q))
    np.testing.assert_allclose(oracle.variance(n, f), want, rtol=1e-10)


def test_subset_size_one_is_grr_and_the_table_at_k_1024():
    one, plain = ss(1.5, 50, subset_size=1), grr(1.5, 50)
    assert one.p_star == pytest.approx(plain.p_star) and one.q_star == pytest.approx(plain.q_star)
    # ldp.md §1.10: n·Var (f = 0 term) at k = 1024, and ω
    for epsilon, omega, n_var in [(0.5, 387, 15.64), (1, 275, 3.674), (2, 122, 0.721),
                                  (3, 49, 0.218), (5, 7, 0.025)]:
        oracle = ss(epsilon, 1024)
        assert subset_size_of(oracle) == default_subset_size(epsilon, 1024) == omega
        assert float(oracle.variance(1, 0.0)) == pytest.approx(n_var, rel=2e-2 if epsilon == 5
                                                                else 2e-3)
    assert default_subset_size(0.01, 3) == 1 and default_subset_size(1e-6, 2) == 1
    assert default_subset_size(1e-6, 1000) == 500 and default_subset_size(700.0, 1000) == 1


SMALL_K = 5
SAMPLES = 40_000


def _exact_distribution(oracle, omega, v):
    """Pr[Z | v] for every ω-subset Z (itertools order), from the two-step sampler: v plus a
    uniform (ω−1)-subset of the others w.p. p*, else a uniform ω-subset of the others."""
    k = oracle.k
    subsets = list(itertools.combinations(range(k), omega))
    with_v = oracle.p_star / math.comb(k - 1, omega - 1)
    without_v = (1 - oracle.p_star) / math.comb(k - 1, omega)
    return subsets, np.array([with_v if v in z else without_v for z in subsets])


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 2.5])
@pytest.mark.parametrize("omega", [1, 2, 3, 4])
def test_enumerated_report_ratio_is_exactly_e_to_the_epsilon(epsilon, omega):
    oracle = ss(epsilon, SMALL_K, subset_size=omega)
    dists = [_exact_distribution(oracle, omega, v)[1] for v in range(SMALL_K)]
    for d in dists:
        assert d.sum() == pytest.approx(1.0)
    logs = np.log(np.stack(dists))  # [inputs, subsets]
    ratio = float((logs.max(axis=0) - logs.min(axis=0)).max())
    assert ratio <= epsilon + 1e-12
    assert ratio == pytest.approx(epsilon)  # tight: the budget is used


@pytest.mark.parametrize("omega", [1, 2, 4])
def test_the_encoder_samples_the_enumerated_distribution(omega):
    oracle = ss(1.0, SMALL_K, subset_size=omega)
    rng = numpy_rng(4, purpose=f"analytics-test-encoder-ss-{omega}")
    for v in range(SMALL_K):
        subsets, exact = _exact_distribution(oracle, omega, v)
        index = {z: i for i, z in enumerate(subsets)}
        rows = oracle.encode(np.full(SAMPLES, v), rng)["ss/items"]
        seen = np.bincount([index[tuple(int(x) for x in row)] for row in rows],
                           minlength=len(subsets)) / SAMPLES
        tolerance = 5 * np.sqrt(exact * (1 - exact) / SAMPLES)
        assert np.all(np.abs(seen - exact) <= tolerance), (v, seen, exact)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("sampler", ["_keyed_subsets", "_floyd_subsets"])
def test_both_subset_samplers_are_uniform_over_subsets(sampler, size):
    """The two samplers (keys + argpartition for large ω, Floyd's for small ω) draw every
    size-subset of [0, 6) with probability 1 / C(6, size)."""
    import lowcomm.analytics.subset as subset

    m, draws = 6, 30_000
    rows = getattr(subset, sampler)(numpy_rng(12, purpose=f"analytics-test-{sampler}"), draws,
                                    m, size)
    assert rows.shape == (draws, size)
    rows = np.sort(rows, axis=1)
    assert np.all(np.diff(rows, axis=1) > 0) and rows.min() >= 0 and rows.max() < m
    index = {z: i for i, z in enumerate(itertools.combinations(range(m), size))}
    seen = np.bincount([index[tuple(int(x) for x in r)] for r in rows], minlength=len(index))
    p = 1 / len(index)
    assert np.all(np.abs(seen / draws - p) <= 5 * math.sqrt(p * (1 - p) / draws)), seen


def test_the_true_value_does_not_sit_in_a_telling_position():
    """Rows are sorted sets: where v appears in the row follows from the set alone."""
    k, omega = 10, 4
    oracle = ss(3.0, k, subset_size=omega)
    items = oracle.encode(np.full(20_000, 7), numpy_rng(5, purpose="analytics-test-ss-pos"))
    rows = items["ss/items"].astype(np.int64)
    assert np.all(np.diff(rows, axis=1) > 0)
    holding = (rows == 7).any(axis=1)
    position = np.argmax(rows[holding] == 7, axis=1)
    assert np.all(position == (rows[holding] < 7).sum(axis=1))


@pytest.mark.parametrize(("k", "omega"), [(2, 1), (9, 8), (300, 1), (300, 77), (70_000, 3)])
def test_each_report_holds_omega_distinct_items_of_the_domain(k, omega):
    oracle = ss(0.7, k, subset_size=omega)
    values = numpy_rng(6, purpose="analytics-test-ss-shape").integers(0, k, size=2_000)
    items = oracle.encode(values, numpy_rng(6, purpose="analytics-test-ss-rows"))["ss/items"]
    assert items.shape == (2_000, omega)
    assert items.dtype == (np.uint8 if k <= 256 else np.uint16 if k <= 65536 else np.uint32)
    rows = items.astype(np.int64)
    assert rows.min() >= 0 and rows.max() < k
    assert np.all(np.diff(rows, axis=1) > 0)  # sorted, hence distinct
    holds_v = (rows == values[:, None]).any(axis=1)
    rate, p = holds_v.mean(), oracle.p_star
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / 2_000) + 1e-12


def test_blocks_of_users_do_not_change_the_law(monkeypatch):
    """Many small row blocks (the memory bound at large k) give the same distribution of counts."""
    import lowcomm.analytics.subset as subset

    monkeypatch.setattr(subset, "_BLOCK_KEYS", 50)  # 1 user per block at k = 64
    oracle = subset.ss(1.0, 64)
    values = np.zeros(4_000, dtype=np.int64)
    items = oracle.encode(values, numpy_rng(7, purpose="analytics-test-ss-blocks"))["ss/items"]
    counts = oracle.support_counts(Payload({"ss/items": items}))
    n = values.size
    assert abs(counts[0] / n - oracle.p_star) <= 5 * math.sqrt(oracle.p_star / n)
    others = counts[1:] / n
    assert abs(others.mean() - oracle.q_star) <= 5 * math.sqrt(oracle.q_star / (n * 63))
    # each block perturbs its own users: at ε = 30, every report holds its user's value
    sure = subset.ss(30.0, 64, subset_size=3)
    values = np.arange(1_000) % 64
    rows = sure.encode(values, numpy_rng(7, purpose="analytics-test-ss-blocks"))["ss/items"]
    assert (rows == values[:, None]).any(axis=1).all()


def test_support_counts_match_a_plain_loop_and_single_reports_round_trip():
    k, n = 37, 60
    oracle = ss(1.5, k)
    values = numpy_rng(8, purpose="analytics-test-values").integers(0, k, size=n)
    reports = oracle.encode(values, numpy_rng(8, purpose="analytics-test-ss-loop"))
    loop = np.zeros(k, dtype=np.int64)
    total = np.zeros(k, dtype=np.int64)
    for i, row in enumerate(reports["ss/items"]):
        for item in row:
            loop[int(item)] += 1
        total += oracle.support_counts(deserialize(serialize(single_report(reports, i))))
    np.testing.assert_array_equal(oracle.support_counts(reports), loop)
    np.testing.assert_array_equal(total, loop)


def test_same_generator_seed_same_reports():
    oracle = ss(1.0, 100)
    values = numpy_rng(9, purpose="analytics-test-values").integers(0, 100, size=500)
    first = oracle.encode(values, numpy_rng(8, purpose="analytics-test-determinism"))
    again = oracle.encode(values, numpy_rng(8, purpose="analytics-test-determinism"))
    other = oracle.encode(values, numpy_rng(9, purpose="analytics-test-determinism"))
    assert first == again and first != other


def _framing_nbytes(report: Payload) -> int:
    """Wire overhead per core/payload.py: magic, version, count, CRC, one descriptor per array."""
    descriptors = sum(1 + len(name.encode()) + 1 + 1 + 4 * arr.ndim for name, arr in report.items())
    return 4 + 1 + 2 + 4 + descriptors


@pytest.mark.parametrize(("k", "epsilon", "omega", "data_bits_per_id", "ideal"), [
    (256, 1.0, 69, 8, None),  # uint8 ids: data bits = ω·⌈log2 k⌉ exactly
    (1024, 1.0, 275, 16, 855),  # ldp.md §1.10: 855 ideal bits; ids padded 10 -> 16 bits
    (65536, 3.0, 3108, 16, None),  # 65536 / (e^3 + 1) = 3108.1
])
def test_measured_bits_against_the_analytic_counts(k, epsilon, omega, data_bits_per_id, ideal):
    oracle = ss(epsilon, k)
    assert subset_size_of(oracle) == omega
    values = numpy_rng(10, purpose="analytics-test-values").integers(0, k, size=4)
    reports = oracle.encode(values, numpy_rng(10, purpose="analytics-test-ss-bits"))
    bits = report_bits(oracle, reports, index=2)
    assert oracle.analytic_bits == omega * math.ceil(math.log2(k))
    assert bits.data_bits == omega * data_bits_per_id
    assert bits.wire_bits == bits.data_bits + 8 * _framing_nbytes(single_report(reports, 2))
    want_ideal = math.ceil(math.log2(math.comb(k, omega))) if ideal is None else ideal
    assert ideal_bits(k, omega) == want_ideal < oracle.analytic_bits
    assert 2 ** (ideal_bits(k, omega) - 1) < math.comb(k, omega) <= 2 ** ideal_bits(k, omega)


@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, 701.0, "1", True])
def test_bad_epsilon_is_refused(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        ss(epsilon, 16)


@pytest.mark.parametrize("k", [1, 0, -3, 2.5, True])
def test_bad_domain_is_refused(k):
    with pytest.raises(ValueError, match=f"k must be an integer >= 2; got {k!r}"):
        ss(1.0, k)


@pytest.mark.parametrize("subset_size", [0, -1, 16, 17, 2.0, True, "3"])
def test_bad_subset_size_is_named(subset_size):
    with pytest.raises(ValueError, match=rf"subset_size must be an integer in \[1, 15\] "
                                         rf"\(k = 16\); got {subset_size!r}"):
        ss(1.0, 16, subset_size=subset_size)
    assert subset_size_of(ss(1.0, 16, subset_size=np.int64(15))) == 15
    with pytest.raises(ValueError, match="not an ss oracle"):
        subset_size_of(grr(1.0, 16))


def test_malformed_reports_name_the_value():
    oracle = ss(1.0, 10, subset_size=3)
    with pytest.raises(ValueError, match="missing arrays"):
        oracle.support_counts(Payload({"grr/value": np.zeros(3, dtype=np.uint8)}))
    with pytest.raises(ValueError, match="Payload"):
        oracle.support_counts({"ss/items": np.zeros((1, 3), dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"items as uint8 \[n, 3\]; got uint8 \[2, 4\]"):
        oracle.support_counts(Payload({"ss/items": np.zeros((2, 4), dtype=np.uint8)}))
    with pytest.raises(ValueError, match=r"\[0, 10\); got 12"):
        oracle.support_counts(Payload({"ss/items": np.array([[1, 2, 3], [0, 5, 12]], np.uint8)}))
    with pytest.raises(ValueError, match=r"items as uint8 \[n, 3\]; got int16"):
        oracle.support_counts(Payload({"ss/items": np.array([[1, -2, 3]], np.int16)}))
    with pytest.raises(ValueError, match=r"strictly increasing items .*; report 1 has \[4, 0, 4\]"):
        oracle.support_counts(Payload({"ss/items": np.array([[1, 2, 3], [4, 0, 4]], np.uint8)}))
    with pytest.raises(ValueError, match=r"report 0 has \[3, 1, 2\]"):  # distinct, not sorted
        oracle.support_counts(Payload({"ss/items": np.array([[3, 1, 2]], np.uint8)}))
    empty = Payload({"ss/items": np.zeros((0, 3), dtype=np.uint8)})
    np.testing.assert_array_equal(oracle.support_counts(empty), np.zeros(10, dtype=np.int64))
