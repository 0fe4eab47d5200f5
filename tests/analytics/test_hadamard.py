"""HR (Hadamard Response) and HM (one-bit Hadamard mechanism) against theory (ldp.md §1.4):
MSE over trials equals the closed-form variance, the estimate is unbiased, exact e^ε ratios of the
enumerated report distributions, the encoder samples them, measured vs analytic bits, bad input."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from tests.analytics.oracle_trials import assert_unbiased, run_trials, skewed_values

from lowcomm.analytics import aggregate, num_reports, report_bits, single_report
from lowcomm.analytics.hadamard import (
    HadamardResponseOracle,
    fwht,
    hadamard_entries,
    hm,
    hr,
    hr_parameters,
)
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

K = 256
TRIALS = 10
N_USERS = 20_000
FACTORIES = {"hr": hr, "hm": hm}
CASES = [("hr", 0.5), ("hr", 1.0), ("hr", 3.0), ("hr", 5.0), ("hm", 1.0), ("hm", 3.0)]


def _sylvester(m: int) -> np.ndarray:
    """H_m by Sylvester's doubling, independently of the popcount formula."""
    h = np.ones((1, 1), dtype=np.int64)
    while h.shape[0] < m:
        h = np.block([[h, h], [h, -h]])
    return h


def test_entries_and_fwht_match_the_explicit_matrix():
    for m in (1, 2, 8, 64):
        h = _sylvester(m)
        idx = np.arange(m)
        np.testing.assert_array_equal(hadamard_entries(idx[:, None], idx[None, :]), h)
        a = numpy_rng(0, purpose="analytics-test-fwht").integers(-50, 50, size=(3, m))
        np.testing.assert_array_equal(fwht(a), a @ h.T)
    big = np.array([2**40 + 5, 3]), np.array([2**40 + 1, 7])  # parity of wide integers
    np.testing.assert_array_equal(hadamard_entries(*big), [1, 1])
    assert hadamard_entries(2**40 + 1, 2**40 + 1) == 1 and hadamard_entries(7, 1) == -1
    with pytest.raises(ValueError, match="power-of-two length; got 6"):
        fwht(np.zeros(6))


@functools.cache  # shared by the MSE and the bias tests
def _trials(name: str, epsilon: float):
    oracle = FACTORIES[name](epsilon, K)
    f_true, estimates = run_trials(oracle, n_users=N_USERS, trials=TRIALS,
                                   purpose=f"analytics-test-{name}-{epsilon}")
    return oracle, f_true, estimates  # [k], [trials, k]


@pytest.mark.parametrize(("name", "epsilon"), CASES)
def test_mse_matches_the_closed_form_variance(name, epsilon):
    """HR's variance differs between blocks (the heavy item's block is far noisier at large ε),
    so the plain ratio has the tolerance of unequal variances, 4 sqrt(2 sum σ^4 / T) / sum σ^2
    (4 sqrt(2/(k T)) when they are equal); the per-item normalised ratio has 4 sqrt(2/(k T))."""
    oracle, f_true, estimates = _trials(name, epsilon)
    variance = oracle.variance(N_USERS, f_true)  # [k]
    mse = np.mean((estimates - f_true) ** 2)
    tolerance = 4 * math.sqrt(2 * np.sum(variance**2) / TRIALS) / np.sum(variance)
    assert tolerance >= 4 * math.sqrt(2 / (K * TRIALS)) - 1e-12
    assert abs(mse / np.mean(variance) - 1) < tolerance, (name, epsilon, mse / np.mean(variance))
    normalised = np.mean((estimates - f_true) ** 2 / variance)
    assert abs(normalised - 1) < 4 * math.sqrt(2 / (K * TRIALS)), (name, epsilon, normalised)


@pytest.mark.parametrize(("name", "epsilon"), CASES)
def test_estimate_is_unbiased(name, epsilon):
    oracle, f_true, estimates = _trials(name, epsilon)
    assert_unbiased(oracle, f_true, estimates, n_users=N_USERS, label=(name, epsilon))


# Exact report distributions on small domains, from the mechanisms' definitions.

def _hr_distribution(oracle: HadamardResponseOracle, v: int) -> np.ndarray:
    """[B b]: Pr[y | v]: weight e^ε on C_v (v's block, H_b[row(v), u] = +1), 1 elsewhere."""
    b, blocks = oracle.block_size, oracle.blocks
    h = _sylvester(b)
    weights = np.ones((blocks, b))
    block, row = divmod(v, b - 1)
    weights[block, h[row + 1] == 1] = math.exp(oracle.epsilon)
    return (weights / weights.sum()).ravel()


def _hm_distribution(oracle, v: int) -> np.ndarray:
    """[K, 2] flattened: Pr[(j, bit) | v] = (1/K) (e^ε if bit = [H[v, j] = +1] else 1)/(e^ε+1)."""
    width = 1 << (oracle.k - 1).bit_length()
    truth = (_sylvester(width)[v] == 1).astype(int)  # [K]
    e = math.exp(oracle.epsilon)
    probs = np.zeros((width, 2))
    probs[np.arange(width), truth] = e / (e + 1) / width
    probs[np.arange(width), 1 - truth] = 1 / (e + 1) / width
    return probs.ravel()


def _distribution(oracle, v):
    return (_hr_distribution if oracle.name == "hr" else _hm_distribution)(oracle, v)


def _max_log_ratio(dists):
    stacked = np.log(np.stack(dists))  # [inputs, reports]
    return float((stacked.max(axis=0) - stacked.min(axis=0)).max())


@pytest.mark.parametrize("k", [4, 6, 9])
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 2.5, 4.0])
@pytest.mark.parametrize("factory", [hr, hm])
def test_enumerated_report_ratio_is_exactly_e_to_the_epsilon(factory, epsilon, k):
    oracle = factory(epsilon, k)
    dists = [_distribution(oracle, v) for v in range(k)]
    for d in dists:
        assert d.sum() == pytest.approx(1.0)
    assert _max_log_ratio(dists) <= epsilon + 1e-12
    assert _max_log_ratio(dists) == pytest.approx(epsilon)  # tight: the budget is used


def _report_index(oracle, reports) -> np.ndarray:
    if oracle.name == "hr":
        return reports["hr/value"].astype(np.int64)
    return 2 * reports["hm/index"].astype(np.int64) + reports["hm/bit"]


@pytest.mark.parametrize(("factory", "epsilon", "k"),
                         [(hr, 0.1, 6), (hr, 1.0, 6), (hr, 2.5, 9), (hr, 4.0, 6), (hm, 1.0, 6)])
def test_the_encoder_samples_the_enumerated_distribution(factory, epsilon, k):
    samples = 40_000
    oracle = factory(epsilon, k)
    rng = numpy_rng(4, purpose=f"analytics-test-encoder-{oracle.name}")
    for v in range(k):
        exact = _distribution(oracle, v)
        index = _report_index(oracle, oracle.encode(np.full(samples, v), rng))
        seen = np.bincount(index, minlength=exact.size) / samples
        assert seen.size == exact.size
        tolerance = 5 * np.sqrt(exact * (1 - exact) / samples) + 1e-9
        assert np.all(np.abs(seen - exact) <= tolerance), (v, np.abs(seen - exact).max())


@pytest.mark.parametrize(("epsilon", "k"), [(0.1, 6), (1.0, 6), (2.5, 9), (4.0, 13), (3.0, 40)])
def test_hr_variance_is_the_exact_variance_of_its_estimator(epsilon, k):
    """Sum, over users with fixed values, the exact per-user mean and variance of the estimator's
    per-report term (from the enumerated distribution); compare with the closed form."""
    oracle = hr(epsilon, k)
    values = skewed_values(k, 50, seed=2)
    f = np.bincount(values, minlength=k) / values.size
    b = oracle.block_size
    h = _sylvester(b)
    signed = np.zeros((k, oracle.blocks * b))  # [item, output]: H_b[row(x), u] on x's block
    for x in range(k):
        block, row = divmod(x, b - 1)
        signed[x, block * b:(block + 1) * b] = h[row + 1]
    term = signed / (values.size * oracle.p_star)  # f̂_x = sum over users of term[x, y_i]
    mean, var = np.zeros(k), np.zeros(k)
    for v in values:
        d = _distribution(oracle, int(v))
        mean += term @ d
        var += term**2 @ d - (term @ d) ** 2
    np.testing.assert_allclose(mean, f, atol=1e-12)  # unbiased, exactly
    np.testing.assert_allclose(oracle.variance(values.size, f), var, rtol=1e-9)


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 0.69, 1.0, 2.0, 5.0])
def test_variances_equal_the_papers_special_forms(epsilon):
    """HM, and HR while it has one block (e^ε <= 2): [(e^ε+1)^2/(e^ε-1)^2 - f]/n (ldp.md §1.4)."""
    k, n, f = 1024, 1000, np.array([0.0, 0.01, 0.3])
    e = math.exp(epsilon)
    want = ((e + 1) ** 2 / (e - 1) ** 2 - f) / n
    np.testing.assert_allclose(hm(epsilon, k).variance(n, f), want, rtol=1e-12)
    oracle = hr(epsilon, k)
    assert (oracle.blocks == 1) == (e <= 2)
    f_full = np.zeros(k)
    f_full[:3] = f
    f_full[3:] = (1 - f.sum()) / (k - 3)
    if oracle.blocks == 1:  # F_x = 1 for every distribution and for a scalar f
        np.testing.assert_allclose(oracle.variance(n, f_full)[:3], want, rtol=1e-12)
        np.testing.assert_allclose(oracle.variance(n, 0.3), want[2], rtol=1e-12)
    else:  # F_x in [f_x, 1]: between the empty-block and the full-block forms
        z = e - 1 + 2 * oracle.blocks
        got = oracle.variance(n, f_full)
        assert np.all(got >= (z * (2 + f_full * (e - 1)) / (e - 1) ** 2 - f_full) / n - 1e-15)
        assert np.all(got <= (z * (e + 1) / (e - 1) ** 2 - f_full) / n + 1e-15)
    assert float(hm(1.0, k).variance(1, 0.0)) == pytest.approx(4.683, rel=2e-3)  # §1.10


def test_hr_parameters():
    # ldp.md §1.4: B0 is the largest power of two strictly below min(e^ε, 2k)
    assert hr_parameters(0.5, 1024) == (1, 2048)
    assert hr_parameters(1.0, 1024) == (2, 1024)
    assert hr_parameters(math.log(4.0), 1024)[0] <= 2  # e^ε = 4 exactly: B0 = 2, not 4
    assert hr_parameters(3.0, 1024) == (9, 128)  # B0 = 16 sizes b = 128; 9 blocks hold 1024
    for k in (2, 3, 5, 6, 7, 100, 1000, 1024, 4097):
        for epsilon in (0.05, 0.7, 1.0, 2.0, 3.0, 5.0, 9.0):
            blocks, b = hr_parameters(epsilon, k)
            assert b >= 2 and b & (b - 1) == 0
            assert blocks * (b - 1) >= k > (blocks - 1) * (b - 1)  # every block holds items
            assert blocks < max(2.0, min(math.exp(epsilon), 2 * k))
    assert hr(1.0, 1024).analytic_bits == 11 and hm(1.0, 1024).analytic_bits == 11  # §1.10


# Reports as bytes and streams.

def _values(k, n, seed=0):
    return numpy_rng(seed, purpose="analytics-test-values").integers(0, k, size=n)


@pytest.mark.parametrize(("factory", "epsilon", "k", "analytic_bits", "data_bits"), [
    (hr, 1.0, 128, 8, 8),  # 2 blocks of 128 outputs: y fits one uint8 exactly
    (hr, 1.0, 1024, 11, 16),  # 2048 outputs in a uint16
    (hr, 5.0, 256, 9, 16),  # 86 blocks of 4
    (hm, 1.0, 1024, 11, 16 + 8),  # column as uint16, bit as uint8
    (hm, 1.0, 200, 9, 8 + 8),  # K = 256
])
def test_measured_vs_analytic_bits(factory, epsilon, k, analytic_bits, data_bits):
    oracle = factory(epsilon, k)
    reports = oracle.encode(_values(k, 5), numpy_rng(2, purpose="analytics-test-bits"))
    bits = report_bits(oracle, reports, index=2)
    assert (bits.analytic_bits, bits.data_bits) == (analytic_bits, data_bits)
    assert bits.padding_bits == data_bits - analytic_bits
    assert bits.wire_bits == 8 * len(serialize(single_report(reports, 2)))


@pytest.mark.parametrize("factory", [hr, hm])
@pytest.mark.parametrize("epsilon", [0.5, 3.0])
def test_reports_one_by_one_and_in_chunks_count_as_the_batch(factory, epsilon):
    k, n = 300, 1001
    oracle = factory(epsilon, k)
    reports = oracle.encode(_values(k, n), numpy_rng(3, purpose="analytics-test-wire"))
    batch = oracle.support_counts(reports)
    assert batch.shape == (k,) and batch.dtype == np.int64
    total = np.zeros(k, dtype=np.int64)
    for i in range(0, n, 37):
        total += oracle.support_counts(deserialize(serialize(single_report(reports, i))))
    sample = Payload({m: a[::37] for m, a in reports.items()})
    np.testing.assert_array_equal(total, oracle.support_counts(sample))
    edges = [0, 1, 400, 401, n]
    chunks = [Payload({m: a[s:e] for m, a in reports.items()}) for s, e in
              itertools.pairwise(edges)]
    streamed = aggregate(oracle, iter(chunks))
    assert streamed.n == n == num_reports(reports)
    np.testing.assert_array_equal(streamed.counts, batch)


@pytest.mark.parametrize("epsilon", [0.5, 2.5, 4.0])
def test_support_counts_match_a_plain_loop(epsilon):
    k, n = 37, 80
    values = _values(k, n, seed=6)
    rng = numpy_rng(6, purpose="analytics-test-reference")
    oracle = hr(epsilon, k)
    b = oracle.block_size
    y = oracle.encode(values, rng)["hr/value"]
    loop = np.zeros(k, dtype=np.int64)
    for y_i in y:
        block, u = divmod(int(y_i), b)
        for x in range(k):
            if x // (b - 1) == block:
                loop[x] += 1 if bin((x % (b - 1) + 1) & u).count("1") % 2 == 0 else -1
    np.testing.assert_array_equal(oracle.support_counts(Payload({"hr/value": y})), loop)
    oracle = hm(epsilon, k)
    r = oracle.encode(values, rng)
    loop = np.zeros(k, dtype=np.int64)
    for j, bit in zip(r["hm/index"], r["hm/bit"], strict=True):
        for x in range(k):
            loop[x] += int(bit) == (bin(x & int(j)).count("1") % 2 == 0)
    np.testing.assert_array_equal(oracle.support_counts(r), loop)


@pytest.mark.parametrize("factory", [hr, hm])
def test_same_generator_seed_same_reports(factory):
    oracle = factory(2.0, 100)
    values = _values(100, 500)
    first = oracle.encode(values, numpy_rng(8, purpose="analytics-test-determinism"))
    again = oracle.encode(values, numpy_rng(8, purpose="analytics-test-determinism"))
    other = oracle.encode(values, numpy_rng(9, purpose="analytics-test-determinism"))
    assert first == again and first != other


def test_large_domains_hold_no_k_by_k_matrix():
    k, n, heavy = 1 << 20, 20_000, 654_321
    values = _values(k, n)
    values[::2] = heavy  # half of the users
    f_heavy = float(np.mean(values == heavy))
    for oracle in (hr(1.0, k), hm(1.0, k)):
        counts = oracle.support_counts(oracle.encode(values, numpy_rng(9, purpose="analytics-big")))
        assert counts.shape == (k,)
        estimate = oracle.estimate(counts, n)[heavy]
        f = np.bincount(values, minlength=k) / n
        assert abs(estimate - f_heavy) < 5 * math.sqrt(oracle.variance(n, f)[heavy]), oracle.name


# Bad input.

@pytest.mark.parametrize("factory", [hr, hm])
@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, 701.0, "1", True])
def test_bad_epsilon_is_refused(factory, epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        factory(epsilon, 16)


@pytest.mark.parametrize("factory", [hr, hm])
def test_bad_domains_and_values_are_named(factory):
    for k in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match=f"k must be an integer >= 2; got {k!r}"):
            factory(1.0, k)
    with pytest.raises(ValueError, match="at most 16777216; got 16777217"):
        factory(1.0, (1 << 24) + 1)
    oracle = factory(1.0, 10)
    rng = numpy_rng(0, purpose="analytics-test-bad")
    with pytest.raises(ValueError, match=r"\[0, 10\); got 10 at index 2"):
        oracle.encode(np.array([0, 9, 10, 3]), rng)
    with pytest.raises(ValueError, match="dtype float64"):
        oracle.encode(np.array([0.0, 1.0]), rng)
    with pytest.raises(ValueError, match="numpy Generator"):
        oracle.encode(np.array([1, 2]), None)
    with pytest.raises(ValueError, match="missing arrays"):
        oracle.support_counts(Payload({"grr/value": np.zeros(3, dtype=np.uint8)}))


def test_malformed_reports_name_the_value():
    with pytest.raises(ValueError, match=r"\[0, 16\); got 40"):  # k = 10, ε = 1: B = 2, b = 8
        hr(1.0, 10).support_counts(Payload({"hr/value": np.array([1, 40], dtype=np.uint8)}))
    bad_index = Payload({"hm/index": np.array([3, 17], dtype=np.uint8),
                         "hm/bit": np.zeros(2, dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"index in \[0, 16\); got 17"):
        hm(1.0, 10).support_counts(bad_index)
    bad_bit = Payload({"hm/index": np.zeros(2, dtype=np.uint8),
                       "hm/bit": np.array([1, 2], dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"bit in \[0, 2\); got 2"):
        hm(1.0, 10).support_counts(bad_bit)
    with pytest.raises(ValueError, match=r"shape \(10,\); got \(9,\)"):
        hr(1.0, 10).variance(5, np.zeros(9))
