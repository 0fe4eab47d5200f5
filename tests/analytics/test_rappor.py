"""Full RAPPOR: exact privacy by enumeration on a tiny Bloom filter, the encoder's law, the
memoized permanent response, streaming counts, the unbiased bit-count estimator, recovery of
planted frequencies, bits, the pinned hashes against plain loops, determinism."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from tests.analytics.oracle_trials import skewed_values

from lowcomm.analytics import rappor, report_bits, single_report, sue
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

PAPER_EPSILON = 4 * math.log(3)  # f = 1/2 with h = 2, the paper's running example
TINY = {"num_bits": 4, "num_hashes": 2, "cohorts": 3}  # 2^4 reports: enumerable
SAMPLES = 60_000


def _outcomes(m):  # [2^m, m]: itertools order, the first bit most significant
    return np.array(list(itertools.product((0, 1), repeat=m)), dtype=bool)


def _index(bits):  # [n, m] bool -> [n] index into _outcomes
    return bits.astype(np.int64) @ (1 << np.arange(bits.shape[1] - 1, -1, -1))


def _prr_law(oracle, bloom_row):  # [2^m]: Pr[B' | B], each bit kept w.p. 1 - f/2
    half = oracle.f / 2
    return np.where(_outcomes(oracle.num_bits) == bloom_row, 1 - half, half).prod(axis=1)


def _report_law(oracle, bloom_row):  # [2^m]: Pr[S | B] = sum over B' of Pr[B' | B] Pr[S | B']
    out = _outcomes(oracle.num_bits)
    one = np.where(out[:, None, :], oracle.q, oracle.p)  # [B', 1, m] Pr[S_i = 1 | B'_i]
    irr = np.where(out[None, :, :], one, 1 - one).prod(axis=2)  # [B', S]
    return _prr_law(oracle, bloom_row) @ irr


def _laws(oracle, law):  # [cohorts, k, 2^m]
    return np.stack([[law(oracle, oracle.bloom(np.array([v]), np.array([j]))[0])
                      for v in range(oracle.k)] for j in range(oracle.cohorts)])


def _max_log_ratio(laws):  # over the values of each cohort (the cohort is independent of v)
    logs = np.log(laws)
    return float((logs.max(axis=1) - logs.min(axis=1)).max())


def _has_disjoint_full_filters(oracle):  # two values of a cohort with 2h distinct bits in all
    design = oracle.design()  # [c, m, k]
    for j in range(oracle.cohorts):
        for v, w in itertools.combinations(range(oracle.k), 2):
            a, b = design[j, :, v], design[j, :, w]
            if a.sum() == b.sum() == oracle.num_hashes and not (a & b).any():
                return True
    return False


@pytest.mark.parametrize(("epsilon", "p", "q"), [
    (PAPER_EPSILON, 0.5, 0.75), (1.0, 0.25, 0.75), (3.0, 0.0, 1.0),  # (0, 1): no IRR at all
])
def test_enumerated_ratios_are_at_most_the_stated_epsilons(epsilon, p, q):
    oracle = rappor(epsilon, 6, p=p, q=q, **TINY)
    prr, report = _laws(oracle, _prr_law), _laws(oracle, _report_law)
    np.testing.assert_allclose(report.sum(axis=2), 1.0)
    assert oracle.epsilon_one <= oracle.epsilon + 1e-12
    assert _max_log_ratio(prr) <= oracle.epsilon + 1e-9  # ε∞ bounds the memoized B'
    assert _max_log_ratio(report) <= oracle.epsilon_one + 1e-9  # ε_1 bounds one report
    assert _has_disjoint_full_filters(oracle)  # so both bounds are attained
    assert _max_log_ratio(prr) == pytest.approx(oracle.epsilon, rel=1e-9)
    assert _max_log_ratio(report) == pytest.approx(oracle.epsilon_one, rel=1e-9)


def test_the_papers_epsilons_and_the_reduction_to_sue():
    oracle = rappor(PAPER_EPSILON, 100)
    assert oracle.f == pytest.approx(0.5)
    assert (oracle.num_bits, oracle.num_hashes, oracle.cohorts, oracle.p, oracle.q) == \
        (16, 2, 64, 0.5, 0.75)
    assert (oracle.prob_one_if_set, oracle.prob_one_if_clear) == pytest.approx((0.6875, 0.5625))
    assert oracle.epsilon_one == pytest.approx(1.0743, abs=1e-4)
    # h = 1 and no IRR: per bit it is SUE at the same epsilon (ldp.md §1.6)
    plain = rappor(2.0, 8, num_hashes=1, p=0.0, q=1.0)
    assert plain.epsilon_one == pytest.approx(2.0)
    assert (plain.prob_one_if_set, plain.prob_one_if_clear) == \
        pytest.approx((sue(2.0, 8).p_star, sue(2.0, 8).q_star))


def _empirical_matches(seen_index, law):
    seen = np.bincount(seen_index, minlength=law.size) / seen_index.size
    return np.all(np.abs(seen - law) <= 5 * np.sqrt(law * (1 - law) / seen_index.size) + 1e-9)


def test_the_encoder_samples_the_enumerated_laws():
    oracle = rappor(1.5, 5, p=0.25, q=0.75, **TINY)
    rng = numpy_rng(4, purpose="analytics-test-rappor-law")
    users = np.arange(SAMPLES)  # distinct users: each draws its own B'
    cohorts = oracle.cohort_of(users, prr_seed=11)
    for v in range(oracle.k):
        values = np.full(SAMPLES, v)
        reports = oracle.encode(values, rng, users=users, prr_seed=11 + v)
        sent = np.unpackbits(reports["rappor/bits"], axis=1, count=4, bitorder="little")
        permanent = oracle.permanent(values, users=users, prr_seed=11)
        for j in range(oracle.cohorts):
            bloom = oracle.bloom(np.array([v]), np.array([j]))[0]
            mine = reports["rappor/cohort"] == j
            assert _empirical_matches(_index(sent[mine]), _report_law(oracle, bloom)), (v, j)
            assert _empirical_matches(_index(permanent[cohorts == j]), _prr_law(oracle, bloom))


def test_a_user_reporting_again_reuses_its_permanent_response():
    oracle = rappor(2.0, 50)
    values = numpy_rng(0, purpose="analytics-test-rappor-memo").integers(0, 50, size=400)
    users = np.arange(400) * 7 + 3
    first = oracle.permanent(values, users=users, prr_seed=5)
    order = numpy_rng(1, purpose="analytics-test-rappor-memo").permutation(400)
    np.testing.assert_array_equal(oracle.permanent(values[order], users=users[order],
                                                   prr_seed=5), first[order])
    np.testing.assert_array_equal(oracle.permanent(values[:10], users=users[:10], prr_seed=5),
                                  first[:10])  # other users in the batch change nothing
    assert (oracle.permanent(values, users=users, prr_seed=6) != first).any(axis=1).mean() > 0.9
    assert (oracle.permanent((values + 1) % 50, users=users, prr_seed=5)
            != first).any(axis=1).mean() > 0.9  # memoized per (user, value)
    np.testing.assert_array_equal(oracle.cohort_of(users, prr_seed=5),
                                  oracle.cohort_of(users[::-1], prr_seed=5)[::-1])
    # without the IRR (p = 0, q = 1) a report is B' itself: fresh rngs, same reports
    bare = rappor(2.0, 50, p=0.0, q=1.0)
    one = bare.encode(values, numpy_rng(2, purpose="a"), users=users, prr_seed=5)
    two = bare.encode(values, numpy_rng(3, purpose="b"), users=users, prr_seed=5)
    assert one == two
    np.testing.assert_array_equal(one["rappor/bits"],
                                  np.packbits(first, axis=1, bitorder="little"))
    # one user reporting 4000 times: each bit is 1 at rate q or p given ITS B', not q* or p*
    repeats = 4000
    reports = oracle.encode(np.full(repeats, values[0]), numpy_rng(4, purpose="c"),
                            users=np.full(repeats, users[0]), prr_seed=5)
    assert len(set(reports["rappor/cohort"].tolist())) == 1
    rate = np.unpackbits(reports["rappor/bits"], axis=1, count=16, bitorder="little").mean(axis=0)
    expected = np.where(first[0], oracle.q, oracle.p)
    assert np.all(np.abs(rate - expected) <= 5 * np.sqrt(expected * (1 - expected) / repeats))


def test_cohorts_are_uniform():
    oracle = rappor(2.0, 10, cohorts=8)
    cohorts = oracle.cohort_of(np.arange(80_000), prr_seed=9)
    seen = np.bincount(cohorts, minlength=8)
    assert np.all(np.abs(seen - 10_000) < 5 * math.sqrt(10_000 * 7 / 8))


def test_streamed_counts_add_up_and_single_reports_count_as_the_batch():
    oracle = rappor(2.0, 300, num_bits=21)  # 21 bits: a padded last byte
    n = 3001
    values = skewed_values(300, n, seed=2)
    reports = oracle.encode(values, numpy_rng(5, purpose="analytics-test-rappor-stream"),
                            users=np.arange(n), prr_seed=1)
    whole = oracle.tally(reports)
    edges = [0, 1, 700, 701, 2500, n]
    chunks = [Payload({name: a[s:e] for name, a in reports.items()})
              for s, e in itertools.pairwise(edges)]
    streamed = oracle.aggregate(iter(chunks))
    np.testing.assert_array_equal(streamed.counts, whole.counts)
    np.testing.assert_array_equal(streamed.cohort_n, whole.cohort_n)
    halves = oracle.aggregate(chunks[:2]).merged(oracle.aggregate(chunks[2:]))
    np.testing.assert_array_equal(halves.counts, whole.counts)
    assert whole.n == halves.n == n
    one_by_one = oracle.aggregate(deserialize(serialize(single_report(reports, i)))
                                  for i in range(0, n, 10))
    subset = oracle.tally(Payload({name: a[::10] for name, a in reports.items()}))
    np.testing.assert_array_equal(one_by_one.counts, subset.counts)
    # a plain loop over reports
    loop = np.zeros((oracle.cohorts, 21), dtype=np.int64)
    for j, row in zip(reports["rappor/cohort"], reports["rappor/bits"], strict=True):
        for i in range(21):
            loop[int(j), i] += (int(row[i // 8]) >> (i % 8)) & 1
    np.testing.assert_array_equal(whole.counts, loop)


def test_row_blocks_change_nothing():
    """Users are processed in blocks of 2^20 / num_bits rows (8192 here): batches that span a
    block boundary give what the users give alone."""
    oracle = rappor(2.0, 40, num_bits=128, p=0.0, q=1.0)  # no IRR: reports are B' itself
    n = 8192 + 9
    values, users = skewed_values(40, n, seed=5), np.arange(n) + 17
    permanent = oracle.permanent(values, users=users, prr_seed=3)
    np.testing.assert_array_equal(permanent[8190:],
                                  oracle.permanent(values[8190:], users=users[8190:], prr_seed=3))
    reports = oracle.encode(values, numpy_rng(0, purpose="blocks"), users=users, prr_seed=3)
    np.testing.assert_array_equal(reports["rappor/bits"],
                                  np.packbits(permanent, axis=1, bitorder="little"))
    np.testing.assert_array_equal(reports["rappor/cohort"], oracle.cohort_of(users, prr_seed=3))
    parts = [Payload({name: a[s:e] for name, a in reports.items()})
             for s, e in ((0, 8190), (8190, n))]
    np.testing.assert_array_equal(oracle.tally(reports).counts,
                                  oracle.tally(parts[0]).merged(oracle.tally(parts[1])).counts)


def _true_bit_counts(oracle, values, users, prr_seed):  # T_ij and N_j of the real B's
    cohorts = oracle.cohort_of(users, prr_seed=prr_seed)
    bloom = oracle.bloom(values, cohorts)  # [n, m]
    counts = np.zeros((oracle.cohorts, oracle.num_bits))
    np.add.at(counts, cohorts, bloom)
    return counts, np.bincount(cohorts, minlength=oracle.cohorts)


def test_bit_count_estimator_is_unbiased_with_the_stated_variance():
    oracle = rappor(PAPER_EPSILON, 256)
    n, trials = 20_000, 10
    values = skewed_values(256, n, seed=1)
    users = np.arange(n)
    error_sum, variance_sum, squared = 0.0, 0.0, []
    for trial in range(trials):
        reports = oracle.encode(values, numpy_rng(7, round=trial, purpose="rappor-bits"),
                                users=users, prr_seed=trial)
        truth, cohort_n = _true_bit_counts(oracle, values, users, trial)
        error = oracle.bit_estimates(oracle.tally(reports)) - truth  # [c, m]
        variance = oracle.bit_variance(truth, cohort_n)
        error_sum, variance_sum = error_sum + error, variance_sum + variance
        squared.append(np.mean(error**2) / np.mean(variance))
    z = (error_sum / np.sqrt(variance_sum)).ravel()  # [c m], about N(0, 1) each
    cells = z.size
    heavy = int(np.argmax(truth))  # the planted heavy item's bits
    assert abs(z[heavy]) < 4 and abs(z.mean()) * math.sqrt(cells) < 4, (z[heavy], z.mean())
    assert np.max(np.abs(z)) < 5
    assert abs(np.mean(squared) - 1) < 4 * math.sqrt(2 / (cells * trials)), np.mean(squared)


def test_least_squares_estimate_is_unbiased_over_trials():
    k, n, trials = 64, 20_000, 20
    oracle = rappor(PAPER_EPSILON, k)
    values = skewed_values(k, n, seed=3)
    truth = np.bincount(values, minlength=k) / n
    errors = np.stack([oracle.estimate(oracle.tally(oracle.encode(
        values, numpy_rng(8, round=t, purpose="rappor-f"), users=np.arange(n), prr_seed=t)))
        - truth for t in range(trials)])  # [trials, k]
    z = errors.mean(axis=0) / (errors.std(axis=0, ddof=1) / math.sqrt(trials))  # ~ t_19 each
    assert np.max(np.abs(z)) < 5 and abs(z.mean()) * math.sqrt(k) < 4, (np.abs(z).max(), z.mean())
    assert (errors + truth < 0).any()  # not clipped


def test_decode_recovers_planted_frequencies():
    k, n = 128, 50_000
    oracle = rappor(PAPER_EPSILON, k)
    planted = np.array([3, 10, 20, 40, 90])
    f = np.zeros(k)
    f[planted] = [0.3, 0.25, 0.2, 0.15, 0.1]
    values = numpy_rng(0, purpose="analytics-test-rappor-planted").choice(k, size=n, p=f)
    truth = np.bincount(values, minlength=k) / n
    reports = oracle.encode(values, numpy_rng(1, purpose="analytics-test-rappor-planted"),
                            users=np.arange(n), prr_seed=2)
    result = oracle.decode(oracle.tally(reports))
    assert set(planted) <= set(np.flatnonzero(result.significant))
    assert result.significant.sum() <= len(planted) + 1  # Bonferroni: false finds are rare
    error = np.abs(result.frequencies[planted] - truth[planted])
    assert np.all(error <= 4 * result.std_errors[planted]), error / result.std_errors[planted]
    assert np.all(result.frequencies[~result.selected] == 0)
    full = oracle.estimate(oracle.tally(reports))
    assert np.all(np.abs(full[planted] - truth[planted]) < 0.05)


def test_report_bits_measured_beside_the_analytic_bits():
    for num_bits, cohorts, data_bits in [(16, 64, 8 + 16), (21, 300, 16 + 24), (128, 16, 8 + 128)]:
        oracle = rappor(2.0, 40, num_bits=num_bits, cohorts=cohorts)
        reports = oracle.encode(np.arange(5), numpy_rng(0, purpose="bits"), users=np.arange(5),
                                prr_seed=0)
        bits = report_bits(oracle, reports, index=2)
        assert bits.analytic_bits == num_bits and oracle.cohort_bits == math.ceil(
            math.log2(cohorts))
        assert bits.data_bits == data_bits
        assert bits.wire_bits == 8 * len(serialize(single_report(reports, 2)))


def test_pinned_hashes_and_permanent_bits_match_plain_loops():
    from lowcomm.analytics.rappor_hash import bloom_hash_seeds

    mask, gamma, prime = (1 << 64) - 1, 0x9E3779B97F4A7C15, (1 << 31) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    seeds = bloom_hash_seeds(5, 3)
    for j, t in itertools.product(range(5), range(3)):
        x = (j << 16) + t
        a = 1 + mix((0xB100 + (2 * x + 1) * gamma) & mask) % (prime - 1)
        b = mix((0xB100 + (2 * x + 2) * gamma) & mask) % prime
        assert tuple(seeds[j, t]) == (a, b)
    assert tuple(bloom_hash_seeds(1, 1)[0, 0]) == (182784326, 1598846798)  # pinned: never changes
    oracle = rappor(1.0, 30, num_bits=12, num_hashes=3, cohorts=5)
    users, values, seed = np.array([0, 1, 99, 2**40]), np.array([0, 7, 29, 7]), 12345
    got = oracle.permanent(values, users=users, prr_seed=seed)
    cohorts = oracle.cohort_of(users, prr_seed=seed)
    for row, (u, v) in enumerate(zip(users.tolist(), values.tolist(), strict=True)):
        key = mix(mix((seed + gamma) & mask) ^ mix((u + gamma) & mask))
        cohort = ((mix(key ^ 0xC0) >> 32) * 5) >> 32
        assert cohorts[row] == cohort
        bloom = {((int(seeds_a) * v + int(seeds_b)) % prime) % 12
                 for seeds_a, seeds_b in oracle.hash_seeds[cohort]}
        value_key = mix(key ^ mix((v + 2 * gamma) & mask))
        for i in range(12):
            uniform = mix((value_key + (i + 1) * gamma) & mask) >> 11
            want = uniform < round(oracle.f / 2 * 2**53) if uniform < round(oracle.f * 2**53) \
                else i in bloom
            assert got[row, i] == want, (row, i)


def test_same_seeds_same_reports():
    oracle = rappor(2.0, 100)
    values, users = skewed_values(100, 500, seed=4), np.arange(500)

    def run(seed, prr_seed):
        rng = numpy_rng(seed, purpose="analytics-test-rappor-determinism")
        return oracle.encode(values, rng, users=users, prr_seed=prr_seed)

    assert run(8, 1) == run(8, 1) and run(8, 1) != run(9, 1) and run(8, 1) != run(8, 2)

