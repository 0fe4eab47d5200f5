"""fp4 (E3M0 with a float32 scale per block): nearest representable value against a brute-force
search, exact bytes, the largest entry kept, malformed payloads refused, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lowcomm.compress import fp4
from lowcomm.core import Layout, Payload, serialize

MAGNITUDES = [0.0] + [2.0 ** k for k in range(-6, 1)]  # E3M0: zero and 2^-6 .. 2^0


def _nearest(x: float, scale: float) -> float:
    """The plain-loop reference: the closest of the 15 representable values s * (+-2^k, 0)."""
    grid = sorted({sign * scale * m for m in MAGNITUDES for sign in (1.0, -1.0)})
    return min(grid, key=lambda v: (abs(x - v), -abs(v)))


@pytest.mark.parametrize("block_size", [None, 16, 7])
def test_every_entry_is_the_nearest_representable_value(block_size):
    x = torch.randn(61, generator=torch.Generator().manual_seed(0)) * 3
    x[5] = 0.0
    layout = Layout.from_shapes({"w": (61,)})
    codec = fp4(block_size=block_size)
    decoded = codec.decode(codec.encode(x, None, None)[0], layout)
    size = block_size or 61
    for start in range(0, 61, size):
        block = x[start:start + size].tolist()
        scale = float(np.float32(max(abs(v) for v in block)))
        for i, value in enumerate(block):
            assert decoded[start + i].item() == pytest.approx(_nearest(value, scale), rel=1e-6)


def test_the_largest_entry_is_exact_and_zeros_stay_zero():
    codec, layout = fp4(), Layout.from_shapes({"w": (5,)})
    x = torch.tensor([0.0, -3.25, 1.0, 0.01, 2.0])
    decoded = codec.decode(codec.encode(x, None, None)[0], layout)
    assert decoded[1].item() == -3.25 and decoded[0].item() == 0.0
    assert decoded[3].item() == 0.0  # 0.01 / 3.25 < 2^-7: flushed to zero
    assert decoded[4].item() == 3.25 * 0.5  # 2/3.25 = 0.615 is nearer 0.5 than 1
    zeros = torch.zeros(5)
    assert torch.equal(codec.decode(codec.encode(zeros, None, None)[0], layout), zeros)


@pytest.mark.parametrize(("n", "block_size"), [(1, None), (7, None), (100, None), (100, 16)])
def test_bytes_are_half_a_byte_per_entry_plus_a_scale_per_block(n, block_size):
    payload, _ = fp4(block_size=block_size).encode(torch.randn(n), None, None)
    blocks = math.ceil(n / (block_size or n))
    assert payload["fp4/codes"].nbytes == math.ceil(n / 2)
    assert payload["fp4/scales"].nbytes == 4 * blocks
    framing = serialize(Payload({"fp4/scales": np.zeros(0, np.float32),
                                 "fp4/codes": np.zeros(0, np.uint8)}))  # header, no data
    assert len(serialize(payload)) == len(framing) + math.ceil(n / 2) + 4 * blocks


def test_malformed_payloads_are_refused():
    codec, layout = fp4(), Layout.from_shapes({"w": (2,)})
    good, _ = codec.encode(torch.tensor([1.0, -0.5]), None, None)
    negative_zero = Payload({"fp4/scales": good["fp4/scales"],
                             "fp4/codes": np.array([0x78], dtype=np.uint8)})  # fields 7, 8
    with pytest.raises(ValueError, match="code 8 is invalid"):
        codec.decode(negative_zero, layout)
    bad_scale = Payload({"fp4/scales": np.array([-1.0], dtype=np.float32),
                         "fp4/codes": good["fp4/codes"]})
    with pytest.raises(ValueError, match="finite and >= 0"):
        codec.decode(bad_scale, layout)
    with pytest.raises(ValueError, match="needs a finite update"):
        codec.encode(torch.tensor([1.0, float("nan")]), None, None)


@pytest.mark.parametrize("block_size", [0, -1, 2.5, True])
def test_bad_block_size_is_refused(block_size):
    with pytest.raises(ValueError, match=f"block_size must be a positive integer or None; got "
                                         f"{block_size}"):
        fp4(block_size=block_size)
