"""Bad input to full RAPPOR: clear errors that name the offending value (bad epsilon and k:
the shared tests in test_oracle_bad_input.py)."""

from __future__ import annotations

import numpy as np
import pytest

from lowcomm.analytics import RapporTally, rappor
from lowcomm.core import Payload, numpy_rng


def _reports(oracle, n=4):
    return oracle.encode(np.arange(n) % oracle.k, numpy_rng(0, purpose="analytics-test-bad"),
                         users=np.arange(n), prr_seed=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_bits": 0}, r"num_bits \(Bloom filter bits\) must be an integer in \[1, 65536\]; got 0"),
    ({"num_bits": 8.0}, "num_bits .* got 8.0"),
    ({"num_hashes": 0}, r"num_hashes .* \[1, 16\]; got 0"),
    ({"num_bits": 4, "num_hashes": 5}, r"num_hashes .* \[1, 4\]; got 5"),
    ({"cohorts": 0}, r"cohorts must be an integer in \[1, 65536\]; got 0"),
    ({"cohorts": 70_000}, "cohorts .* got 70000"),
    ({"p": -0.1}, r"p \(IRR.*got -0.1"),
    ({"q": 1.5}, "q must be a probability in .* got 1.5"),
    ({"p": 0.75, "q": 0.5}, r"p < q .*; got p = 0.75, q = 0.5"),
    ({"p": 0.5, "q": 0.5}, r"p < q .*; got p = 0.5, q = 0.5"),
])
def test_impossible_bloom_and_response_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rappor(1.0, 16, **kwargs)


def test_an_epsilon_beyond_the_prr_resolution_is_refused():
    with pytest.raises(ValueError, match=r"epsilon = 100\.0 with num_hashes = 2 gives f/2"):
        rappor(100.0, 16)
    assert rappor(80.0, 16).f > 0  # 2h ln(2/f - 1) = 80 still resolves


def test_values_users_and_seeds_are_checked():
    oracle = rappor(1.0, 10)
    rng = numpy_rng(0, purpose="analytics-test-bad")
    users = np.arange(4)
    with pytest.raises(ValueError, match=r"\[0, 10\); got 10 at index 2"):
        oracle.encode(np.array([0, 9, 10, 3]), rng, users=users, prr_seed=0)
    with pytest.raises(ValueError, match="dtype float64"):
        oracle.encode(np.array([0.0, 1.0]), rng, users=users[:2], prr_seed=0)
    with pytest.raises(ValueError, match=r"users must be \[4\] \(one per value\) integer ids; "
                                         r"got int64 \(3,\)"):
        oracle.encode(np.arange(4), rng, users=np.arange(3), prr_seed=0)
    with pytest.raises(ValueError, match="user ids must be >= 0; got -2"):
        oracle.encode(np.arange(4), rng, users=np.array([0, -2, 1, 3]), prr_seed=0)
    for seed in (-1, 2**64, 1.5, True):
        with pytest.raises(ValueError, match=f"prr_seed must be an integer .* got {seed!r}"):
            oracle.encode(np.arange(4), rng, users=users, prr_seed=seed)
    with pytest.raises(ValueError, match="numpy Generator"):
        oracle.encode(np.arange(4), None, users=users, prr_seed=0)
    with pytest.raises(ValueError, match="got 10 at index 0"):
        oracle.permanent(np.array([10]), users=np.array([0]), prr_seed=0)
    with pytest.raises(ValueError, match=r"users must be \[n\] integer ids"):
        oracle.cohort_of(np.zeros((2, 2), dtype=np.int64), prr_seed=0)


def test_malformed_and_wrong_length_reports_are_refused():
    oracle = rappor(1.0, 10, num_bits=12, cohorts=5)
    good = _reports(oracle)
    with pytest.raises(ValueError, match="missing arrays"):
        oracle.tally(Payload({"rappor/bits": good["rappor/bits"]}))
    with pytest.raises(ValueError, match="Payload"):
        oracle.tally(dict(good.items()))
    with pytest.raises(ValueError, match="unexpected arrays"):
        oracle.tally(Payload({**good, "rappor/extra": good["rappor/cohort"]}))
    assert oracle.fields[0].dtype == np.uint8 and oracle.fields[1].shape == (2,)
    with pytest.raises(ValueError, match=r"bits as uint8 \[n, 2\]; got uint8 \[4, 3\]"):
        oracle.tally(Payload({"rappor/cohort": good["rappor/cohort"],
                              "rappor/bits": np.zeros((4, 3), dtype=np.uint8)}))
    with pytest.raises(ValueError, match=r"bits as uint8 \[n, 2\]; got uint16 \[4, 2\]"):
        oracle.tally(Payload({"rappor/cohort": good["rappor/cohort"],
                              "rappor/bits": good["rappor/bits"].astype(np.uint16)}))
    with pytest.raises(ValueError, match=r"cohort in \[0, 5\); got 7 \(report 1; 2 bad reports\)"):
        oracle.tally(Payload({"rappor/cohort": np.array([0, 7, 1, 9], dtype=np.uint8),
                              "rappor/bits": good["rappor/bits"]}))
    padded = good["rappor/bits"].copy()
    padded[2, 1] |= 0x10  # bit 12 of a 12-bit report
    with pytest.raises(ValueError, match=r"4 padding bit\(s\) above bit 11 clear; report 2"):
        oracle.tally(Payload({"rappor/cohort": good["rappor/cohort"], "rappor/bits": padded}))
    with pytest.raises(ValueError, match="users on axis 0"):
        oracle.tally(Payload({"rappor/cohort": good["rappor/cohort"][:3],
                              "rappor/bits": good["rappor/bits"]}))
    with pytest.raises(ValueError, match=r"cohort as uint8 \[n\]; got float64"):
        oracle.tally(Payload({"rappor/cohort": np.zeros(4), "rappor/bits": good["rappor/bits"]}))


def test_estimators_check_the_tally_and_the_design():
    oracle = rappor(1.0, 10, num_bits=8, cohorts=2)
    tally = oracle.tally(_reports(oracle))
    with pytest.raises(ValueError, match=r"counts \(2, 8\) and cohort_n \(2,\); got"):
        oracle.bit_estimates(RapporTally(np.zeros((3, 8), dtype=np.int64), np.zeros(3)))
    with pytest.raises(ValueError, match="RapporTally"):
        oracle.estimate(np.zeros(10))
    with pytest.raises(ValueError, match="cannot merge RAPPOR tallies"):
        tally.merged(RapporTally(np.zeros((2, 9), dtype=np.int64), np.zeros(2)))
    with pytest.raises(ValueError, match="holds no reports"):
        oracle.decode(RapporTally(np.zeros((2, 8), dtype=np.int64), np.zeros(2, dtype=np.int64)))
    for alpha in (0, 1.0, -0.1, True):
        with pytest.raises(ValueError, match=f"alpha must be in .* got {alpha!r}"):
            oracle.decode(tally, alpha=alpha)
    # 10 candidates, 16 rows, but only one cohort reported: rank <= 8 < 10
    one = rappor(1.0, 10, num_bits=8, cohorts=2)
    reports = _reports(one, n=1)
    with pytest.raises(ValueError, match=r"full column rank; it has rank [0-8] \(8 rows"):
        one.estimate(one.tally(reports))
