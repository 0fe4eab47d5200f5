"""One-byte scalar quantizer: grid, clipping, round trip, exact unbiasedness of stochastic
rounding (and the bias of nearest rounding), malformed codes, and the payload's bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lowcomm.compress import fp32_scalars, int8_scalars
from lowcomm.core import Payload, deserialize, serialize


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_grid_points_round_trip_exactly_and_codes_are_one_byte():
    q = int8_scalars(2.54)
    step = 2.54 / 127
    grid = torch.tensor([-127, -5, 0, 1, 64, 127], dtype=torch.float64) * step
    for stochastic in (True, False):
        quant = int8_scalars(2.54, stochastic=stochastic)
        codes = quant.encode(grid, _gen())
        assert codes.dtype == np.int8 and codes.tolist() == [-127, -5, 0, 1, 64, 127]
        torch.testing.assert_close(quant.decode(codes, 6), grid, rtol=0, atol=1e-12)
    assert q.nbytes_per_value == 1 and q.clip == 2.54 and q.unbiased


def test_nearest_rounding_error_is_at_most_half_a_step_and_clips_beyond_the_range():
    q = int8_scalars(1.0, stochastic=False)
    g = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    err = (q.decode(q.encode(g, None), 1001) - g).abs()
    assert float(err.max()) <= 0.5 / 127 + 1e-12
    big = torch.tensor([5.0, -1e9, 1.0000001])
    assert q.decode(q.encode(big, None), 3).tolist() == [1.0, -1.0, 1.0]


def test_stochastic_rounding_picks_the_two_neighbours_with_the_exact_probabilities():
    clip, n = 1.27, 200_000  # step 0.01
    q = int8_scalars(clip)
    g = 0.027  # between codes 2 and 3, 70% of the way to 3
    codes = q.encode(torch.full((n,), g, dtype=torch.float64), _gen(1))
    assert set(np.unique(codes).tolist()) == {2, 3}
    p_up = float((codes == 3).mean())
    sigma = math.sqrt(0.7 * 0.3 / n)
    assert abs(p_up - 0.7) < 5 * sigma
    mean = float(q.decode(codes, n).mean())
    assert abs(mean - g) < 5 * sigma * 0.01  # unbiased: E[Q(g)] = g


def test_nearest_rounding_is_biased_and_clipping_biases_toward_zero():
    near = int8_scalars(1.27, stochastic=False)
    g = torch.full((10,), 0.027, dtype=torch.float64)
    assert near.decode(near.encode(g, None), 10).unique().tolist() == [pytest.approx(0.03)]
    assert not near.unbiased
    stoch = int8_scalars(1.27)
    beyond = stoch.decode(stoch.encode(torch.full((1000,), 3.0), _gen()), 1000)
    assert beyond.unique().tolist() == [pytest.approx(1.27)]  # E[Q(3)] = 1.27 != 3


def test_fp32_scalars_are_exact_for_float32_values():
    q = fp32_scalars()
    g = torch.tensor([1e-30, -3.5, 123456.78], dtype=torch.float32).to(torch.float64)
    codes = q.encode(g, None)
    assert codes.dtype == np.float32 and q.nbytes_per_value == 4 and q.clip == math.inf
    assert torch.equal(q.decode(codes, 3), g)


def test_payload_of_k_codes_is_k_bytes_plus_the_framing():
    k = 6
    codes = int8_scalars(1.0).encode(torch.rand(k, generator=_gen()), _gen())
    payload = Payload(g=codes)
    data = serialize(payload)
    assert len(data) == payload.nbytes == k + 19  # 7 header + 8 descriptor + 4 CRC
    back = deserialize(data)
    assert np.array_equal(back["g"], codes)


@pytest.mark.parametrize(("codes", "count", "message"), [
    (np.zeros(3, dtype=np.int8), 4, r"expected 4 values of int8; got int8\[3\]"),
    (np.zeros(4, dtype=np.uint8), 4, "expected 4 values of int8; got uint8"),
    (np.array([0, -128], dtype=np.int8), 2, "code -128 is never sent"),
])
def test_malformed_codes_are_rejected(codes, count, message):
    with pytest.raises(ValueError, match=message):
        int8_scalars(1.0).decode(codes, count)


@pytest.mark.parametrize("clip", [0, -1.0, math.inf, math.nan, True, "1"])
def test_bad_clip_fails_at_construction_naming_the_value(clip):
    with pytest.raises(ValueError, match=f"clip must be a finite number > 0; got {clip!r}"):
        int8_scalars(clip)


def test_non_finite_scalars_and_a_missing_generator_are_refused():
    with pytest.raises(ValueError, match="scalars must be finite"):
        int8_scalars(1.0).encode(torch.tensor([math.nan]), _gen())
    with pytest.raises(ValueError, match=r"pass a torch\.Generator"):
        int8_scalars(1.0).encode(torch.tensor([0.5]), None)
