"""Quantizers of a few scalars per message: `int8_scalars` (one byte each) and `fp32_scalars`.

Written for the projected gradients of zeroth-order training with shared randomness (Just One
Byte, Zelikman et al. 2023, arXiv 2306.10015), where a worker sends k scalars per step and the
receivers regenerate the perturbation directions themselves. The paper's abstract says the
projected gradients are "single-byte"; its public code (`app.py`) sends JSON floats and has no
quantizer, so the quantizer here is lowcomm's own, stated in full:

- **scale**: a fixed, declared clip C shared by every worker (a construction constant, so no
  scale crosses the wire); the grid is {c·Δ : c in -127..127} with Δ = C / 127;
- **clipping**: g is first clamped to [-C, C] (code ±127);
- **rounding**: stochastic (default): x = clamp(g, -C, C) / Δ goes to floor(x) + 1 with
  probability x - floor(x), else to floor(x), drawn from the caller's generator, so
  E[decode(encode(g))] = g exactly whenever |g| <= C, with variance (x - floor x)(1 - x +
  floor x)·Δ² <= Δ²/4; `stochastic=False` rounds to nearest (ties to even), which is
  deterministic and biased (error <= Δ/2). Beyond the clip both are biased toward zero;
- **wire**: int8 codes (-128 is never produced and is rejected on decode), one byte each.

`fp32_scalars()` sends the float32 values themselves (4 bytes each; lossless for float32
inputs): what the authors' code exchanges, in binary rather than JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_LEVELS = 127


@dataclass(frozen=True)
class ScalarQuantizer:
    """`encode(values [m], generator) -> codes [m]` (the wire array) and `decode(codes, count)
    -> [m] float64` (rejecting a malformed array); `clip`: the largest magnitude represented
    (inf when nothing is clipped); `unbiased`: E[decode(encode(g))] = g for |g| <= clip."""

    name: str
    encode: Callable[[torch.Tensor, torch.Generator | None], np.ndarray]
    decode: Callable[[np.ndarray, int], torch.Tensor]
    nbytes_per_value: int
    clip: float
    unbiased: bool

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "nbytes_per_value": self.nbytes_per_value,
                "clip": self.clip, "unbiased_within_clip": self.unbiased}


def _check_values(values: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(f"scalars must be a [m] vector; got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"scalars must be finite; got {values.tolist()}")
    return values


def _check_codes(codes: np.ndarray, count: int, dtype: np.dtype, name: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype != dtype or codes.shape != (count,):
        raise ValueError(f"{name} payload: expected {count} values of {dtype}; got "
                         f"{codes.dtype}{list(codes.shape)}")
    return codes


def int8_scalars(clip: float, *, stochastic: bool = True) -> ScalarQuantizer:
    """One byte per scalar on the grid (C/127)·{-127..127} (module docstring)."""
    if (isinstance(clip, bool) or not isinstance(clip, int | float) or not math.isfinite(clip)
            or clip <= 0):
        raise ValueError(f"clip must be a finite number > 0; got {clip!r}")
    step = float(clip) / _LEVELS  # Δ
    name = f"int8(clip={clip:g}, {'stochastic' if stochastic else 'nearest'})"

    def encode(values: torch.Tensor, generator: torch.Generator | None) -> np.ndarray:
        x = _check_values(values).clamp(-clip, clip) / step  # [m] in [-127, 127]
        if stochastic:
            if not isinstance(generator, torch.Generator):
                raise ValueError(f"{name} rounds at random: pass a torch.Generator")
            low = torch.floor(x)
            up = torch.rand(x.shape, generator=generator, dtype=torch.float64) < (x - low)
            codes = low + up
        else:
            codes = torch.round(x)
        return codes.clamp(-_LEVELS, _LEVELS).to(torch.int8).numpy()

    def decode(codes: np.ndarray, count: int) -> torch.Tensor:
        codes = _check_codes(codes, count, np.dtype("i1"), name)
        if (codes == -128).any():
            raise ValueError(f"{name} payload: code -128 is never sent")
        return torch.from_numpy(codes.astype(np.float64)) * step

    return ScalarQuantizer(name, encode, decode, 1, float(clip), stochastic)


def fp32_scalars() -> ScalarQuantizer:
    """The scalars as float32, 4 bytes each (no clipping; exact for float32 inputs)."""
    def encode(values: torch.Tensor, generator: torch.Generator | None) -> np.ndarray:
        return _check_values(values).to(torch.float32).numpy()

    def decode(codes: np.ndarray, count: int) -> torch.Tensor:
        codes = _check_codes(codes, count, np.dtype("<f4"), "fp32")
        return torch.from_numpy(codes.astype(np.float64))

    return ScalarQuantizer("fp32", encode, decode, 4, math.inf, True)
