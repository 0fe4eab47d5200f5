"""Bad input to the frequency oracles: clear errors that name the offending value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowcomm.analytics import (
    blh,
    grr,
    hm,
    hr,
    local_hashing,
    mss,
    olh,
    oue,
    pgr,
    rappor,
    ss,
    sue,
)
from lowcomm.core import Payload, numpy_rng

FACTORIES = [grr, oue, sue, olh, blh, pgr, mss]


@pytest.mark.parametrize("factory", [*FACTORIES, rappor])
@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, 1e6, 701.0, "1", True])
def test_bad_epsilon_is_refused(factory, epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        factory(epsilon, 16)


@pytest.mark.parametrize("factory", [*FACTORIES, rappor])
@pytest.mark.parametrize("k", [1, 0, -3, 2.5, True])
def test_bad_domain_is_refused(factory, k):
    with pytest.raises(ValueError, match=f"k must be an integer >= 2; got {k!r}"):
        factory(1.0, k)


def test_numpy_scalars_are_accepted():
    oracle = oue(np.float32(0.5), np.int64(16))
    assert (oracle.epsilon, oracle.k) == (0.5, 16) and type(oracle.k) is int
    assert grr(np.int64(2), 8).epsilon == 2.0


def test_domains_beyond_the_hash_prime_are_refused():
    with pytest.raises(ValueError, match="at most 2147483647"):
        olh(1.0, 2**31)
    with pytest.raises(ValueError, match="g must be an integer"):
        local_hashing("lh", 1.0, 16, g=1)


@pytest.mark.parametrize("factory", [*FACTORIES, hm, hr, ss])
def test_values_outside_the_domain_are_named(factory):
    oracle = factory(1.0, 10)
    rng = numpy_rng(0, purpose="analytics-test-bad")
    with pytest.raises(ValueError, match=r"\[0, 10\); got 10 at index 2"):
        oracle.encode(np.array([0, 9, 10, 3]), rng)
    with pytest.raises(ValueError, match=r"got -1 at index 0 \(2 values"):
        oracle.encode(np.array([-1, 4, 12]), rng)
    with pytest.raises(ValueError, match="dtype float64"):
        oracle.encode(np.array([0.0, 1.0]), rng)
    with pytest.raises(ValueError, match="shape"):
        oracle.encode(np.zeros((2, 2), dtype=np.int64), rng)
    with pytest.raises(ValueError, match="numpy Generator"):
        oracle.encode(np.array([1, 2]), None)


@pytest.mark.parametrize("factory", FACTORIES)
def test_reports_of_another_oracle_or_out_of_range_are_refused(factory):
    oracle = factory(1.0, 10)
    with pytest.raises(ValueError, match="missing arrays"):
        oracle.support_counts(Payload({"other/value": np.zeros(3, dtype=np.uint8)}))
    with pytest.raises(ValueError, match="Payload"):
        oracle.support_counts({"grr/value": np.zeros(3, dtype=np.uint8)})


def test_malformed_reports_name_the_value():
    with pytest.raises(ValueError, match=r"\[0, 10\); got 12"):
        grr(1.0, 10).support_counts(Payload({"grr/value": np.array([1, 12], dtype=np.uint8)}))
    with pytest.raises(ValueError, match=r"bits as uint8 \[n, 2\]; got uint8 \[3, 3\]"):
        oue(1.0, 10).support_counts(Payload({"oue/bits": np.zeros((3, 3), dtype=np.uint8)}))
    bad_y = Payload({"olh/a": np.ones(2, dtype=np.uint32), "olh/b": np.ones(2, dtype=np.uint32),
                     "olh/y": np.array([0, 9], dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"y in \[0, 4\); got 9"):
        olh(1.0, 10).support_counts(bad_y)
    bad_a = Payload({"olh/a": np.zeros(2, dtype=np.uint32), "olh/b": np.ones(2, dtype=np.uint32),
                     "olh/y": np.zeros(2, dtype=np.uint8)})
    with pytest.raises(ValueError, match=r"a in \[1, 2147483647\); got 0"):
        olh(1.0, 10).support_counts(bad_a)
    ragged = Payload({"olh/a": np.ones(2, dtype=np.uint32), "olh/b": np.ones(3, dtype=np.uint32),
                      "olh/y": np.zeros(2, dtype=np.uint8)})
    with pytest.raises(ValueError, match="users on axis 0"):
        olh(1.0, 10).support_counts(ragged)


def test_estimate_checks_its_inputs():
    oracle = grr(1.0, 10)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        oracle.estimate(np.zeros(9), 5)
    with pytest.raises(ValueError, match="n must be a positive integer; got 0"):
        oracle.estimate(np.zeros(10), 0)
