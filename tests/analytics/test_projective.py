"""PGR (Projective Geometry Response, ldp.md §1.7): the geometry and its padding, MSE against the
pure-protocol variance, unbiasedness, exact e^ε ratios of the enumerated report law, the encoder
samples it, support counts against a plain loop, measured vs analytic bits, bad input."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from tests.analytics.oracle_trials import assert_unbiased, run_trials

from lowcomm.analytics import aggregate, report_bits, single_report
from lowcomm.analytics.projective import (
    default_field_size,
    geometry,
    pgr,
    point_coordinates,
    point_index,
)
from lowcomm.core import Payload, deserialize, numpy_rng, serialize

K = 256
TRIALS = 10
N_USERS = 20_000


def _all_points(q: int, t: int) -> list[tuple[int, ...]]:
    """The canonical vectors of PG(t-1, q), by brute force: nonzero, first nonzero entry 1."""
    return [v for v in itertools.product(range(q), repeat=t)
            if any(v) and v[next(i for i, x in enumerate(v) if x)] == 1]


@pytest.mark.parametrize(("q", "t"), [(2, 3), (3, 2), (3, 3), (5, 3), (7, 2), (3, 4)])
def test_points_are_the_projective_space_and_indexing_inverts(q, t):
    points = point_coordinates(np.arange((q**t - 1) // (q - 1)), q, t)
    assert sorted(map(tuple, points.tolist())) == sorted(_all_points(q, t))
    np.testing.assert_array_equal(point_index(points, q), np.arange(len(points)))
    for scale in range(1, q):  # every nonzero multiple names the same point
        np.testing.assert_array_equal(point_index(points * scale, q), np.arange(len(points)))
    _, big, cset, cint = geometry(q ** (t - 1), q)
    planes = (points @ points.T) % q == 0  # [K, K] u in S_v
    assert big == len(points) and np.all(planes.sum(axis=0) == cset)
    meet = planes.T.astype(int) @ planes.astype(int)  # |S_v ∩ S_w|
    assert np.all(meet[~np.eye(big, dtype=bool)] == cint)
    with pytest.raises(ValueError, match="zero vector"):
        point_index(np.zeros((1, t), dtype=np.int64), q)


def test_parameters_follow_the_authors_code_and_the_table_at_k_1024():
    """q = smallest odd prime >= ceil(e^ε + 1), t smallest with K >= k; ldp.md §1.10 n·Var."""
    for epsilon, q, points, n_var in [(0.5, 3, 1093, 15.79), (1, 5, 3906, 3.819),
                                      (2, 11, 1464, 0.738), (3, 23, 12720, 0.221),
                                      (5, 151, 22953, 0.027)]:
        oracle = pgr(epsilon, 1024)
        assert default_field_size(epsilon) == oracle.field_size == q
        assert oracle.points == points and oracle.analytic_bits == math.ceil(math.log2(points))
        half_digit = 5e-3 if n_var > 10 else 5e-4  # the table is rounded
        assert float(oracle.variance(1, 0.0)) == pytest.approx(n_var, abs=half_digit)
    assert (pgr(1.0, 1024).dimension, pgr(1.0, 1024).analytic_bits) == (6, 12)


def test_the_domain_is_padded_to_the_projective_points_and_the_padding_is_sent():
    """k = 100 at ε = 1: K = 156 points, the 56 from k on belong to nobody but are outputs."""
    oracle = pgr(1.0, 100)
    assert (oracle.field_size, oracle.dimension, oracle.points) == (5, 4, 156)
    reports = oracle.encode(np.zeros(20_000, dtype=np.int64),
                            numpy_rng(0, purpose="analytics-test-pgr-pad"))
    seen = np.unique(reports["pgr/value"])
    assert seen.max() >= 100 and seen.max() < 156  # padding points are output
    counts = oracle.support_counts(reports)
    assert counts.shape == (100,)  # only the real items are counted and estimated
    # with a field of 7 the same domain needs t = 3, K = 57 < 100 -> t = 4, K = 400
    assert pgr(1.0, 100, field_size=7).points == 400


@functools.cache  # shared by the MSE and the bias tests
def _trials(epsilon: float):
    oracle = pgr(epsilon, K)
    f_true, estimates = run_trials(oracle, n_users=N_USERS, trials=TRIALS,
                                   purpose=f"analytics-test-pgr-{epsilon}")
    return oracle, f_true, estimates


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_mse_matches_the_closed_form_variance(epsilon):
    oracle, f_true, estimates = _trials(epsilon)
    mse = np.mean((estimates - f_true) ** 2)
    theory = np.mean(oracle.variance(N_USERS, f_true))
    assert abs(mse / theory - 1) < 4 * math.sqrt(2 / (K * TRIALS)), mse / theory


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_default_estimate_is_unbiased(epsilon):
    oracle, f_true, estimates = _trials(epsilon)
    assert_unbiased(oracle, f_true, estimates, n_users=N_USERS, label=epsilon)


def _exact_distribution(oracle, v: int) -> np.ndarray:
    """[K]: Pr[u | v] ∝ e^ε if <u, v> = 0 mod q else 1, from brute-force coordinates."""
    points = np.array(_all_points(oracle.field_size, oracle.dimension))
    order = point_index(points, oracle.field_size)
    own = points[np.flatnonzero(order == v)[0]]
    weights = np.where(points @ own % oracle.field_size == 0, math.exp(oracle.epsilon), 1.0)
    out = np.zeros(oracle.points)
    out[order] = weights / weights.sum()
    return out


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 2.5])
@pytest.mark.parametrize(("k", "field_size"), [(4, 3), (9, 3), (13, 3), (6, 5)])
def test_enumerated_report_ratio_is_exactly_e_to_the_epsilon(epsilon, k, field_size):
    oracle = pgr(epsilon, k, field_size=field_size)
    dists = np.stack([_exact_distribution(oracle, v) for v in range(k)])  # [k, K]
    np.testing.assert_allclose(dists.sum(axis=1), 1.0)
    logs = np.log(dists)
    ratio = float((logs.max(axis=0) - logs.min(axis=0)).max())
    assert ratio <= epsilon + 1e-12 and ratio == pytest.approx(epsilon)
    supports = np.stack([(point_coordinates(np.arange(oracle.points), field_size,
                                            oracle.dimension) @ point_coordinates(x, field_size,
                                            oracle.dimension)) % field_size == 0
                         for x in range(k)])  # [k items, K outputs]
    p = dists @ supports.T  # [holder, item]: Pr[report supports item]
    np.testing.assert_allclose(np.diag(p), oracle.p_star, rtol=1e-12)
    np.testing.assert_allclose(p[~np.eye(k, dtype=bool)], oracle.q_star, rtol=1e-12)


def test_the_encoder_samples_the_enumerated_distribution():
    """k = 13 = K at q = 3: items 9..12 have their leading 1 in the second or third place."""
    oracle, samples = pgr(1.0, 13, field_size=3), 30_000
    assert oracle.points == 13
    rng = numpy_rng(4, purpose="analytics-test-encoder-pgr")
    for v in range(13):
        exact = _exact_distribution(oracle, v)
        reports = oracle.encode(np.full(samples, v), rng)["pgr/value"]
        seen = np.bincount(reports, minlength=oracle.points) / samples
        assert np.all(np.abs(seen - exact) <= 5 * np.sqrt(exact * (1 - exact) / samples)), v


def test_support_counts_match_a_plain_loop_and_reports_stream():
    k, n = 40, 150
    oracle = pgr(1.5, k)
    values = numpy_rng(8, purpose="analytics-test-values").integers(0, k, size=n)
    reports = oracle.encode(values, numpy_rng(8, purpose="analytics-test-pgr-loop"))
    q, t = oracle.field_size, oracle.dimension
    item_coords = [point_coordinates(x, q, t).tolist() for x in range(k)]
    loop = np.zeros(k, dtype=np.int64)
    for u in reports["pgr/value"]:
        coords = point_coordinates(int(u), q, t).tolist()
        for x in range(k):
            loop[x] += sum(a * b for a, b in zip(coords, item_coords[x], strict=True)) % q == 0
    np.testing.assert_array_equal(oracle.support_counts(reports), loop)
    one_by_one = aggregate(oracle, (deserialize(serialize(single_report(reports, i)))
                                    for i in range(n)))
    np.testing.assert_array_equal(one_by_one.counts, loop)
    assert one_by_one.n == n
    again = oracle.encode(values, numpy_rng(8, purpose="analytics-test-pgr-loop"))
    assert again == reports


@pytest.mark.parametrize(("k", "epsilon", "analytic", "data"), [
    (100, 1.0, 8, 8),  # K = 156: uint8 holds it exactly
    (1024, 1.0, 12, 16),  # K = 3906
    (1024, 5.0, 15, 16),  # K = 22953
])
def test_measured_bits_against_the_analytic_bits(k, epsilon, analytic, data):
    oracle = pgr(epsilon, k)
    reports = oracle.encode(np.arange(4) % k, numpy_rng(10, purpose="analytics-test-pgr-bits"))
    bits = report_bits(oracle, reports, index=2)
    assert (bits.analytic_bits, bits.data_bits) == (analytic, data)
    assert bits.wire_bits == 8 * len(serialize(single_report(reports, 2)))


@pytest.mark.parametrize("field_size", [4, 1, 9, 2.0, True, "5"])
def test_bad_field_size_is_named(field_size):
    with pytest.raises(ValueError, match=rf"field_size must be a prime .*got {field_size!r}"):
        pgr(1.0, 16, field_size=field_size)


def test_malformed_reports_name_the_value():
    oracle = pgr(1.0, 10)  # q = 5, t = 3, K = 31
    with pytest.raises(ValueError, match=r"value in \[0, 31\); got 31 \(report 1"):
        oracle.support_counts(Payload({"pgr/value": np.array([0, 31], dtype=np.uint8)}))
    with pytest.raises(ValueError, match=r"value as uint8 \[n\]; got int8"):
        oracle.support_counts(Payload({"pgr/value": np.array([-1, 3], dtype=np.int8)}))
    with pytest.raises(ValueError, match="missing arrays"):
        oracle.support_counts(Payload({"grr/value": np.zeros(2, dtype=np.uint8)}))
