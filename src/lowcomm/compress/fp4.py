"""`fp4()`: a 4-bit float (E3M0) with a float32 scale per block, for low-precision outer gradients.

Streaming DiLoCo (Douillard et al. 2025, arXiv 2501.18512, §2) sends its outer gradients as
4-bit floats while the reduction accumulates in float32; the implementer's card names the format
E3M0 (1 sign bit, 3 exponent bits, no mantissa) [U: taken from the card; the paper's section on
quantization could not be read through this project's search tool]. With no mantissa an E3M0
number is a signed power of two, so each block of values is scaled first:

    s = max_i |x_i| (sent as float32),   r_i = |x_i| / s in [0, 1]
    field e_i in 0..7: e = 0 is zero, e >= 1 is the magnitude 2^(e - 7), i.e. 2^-6 .. 2^0
    decode: sign_i * s * 2^(e_i - 7)

Rounding is to the nearest representable magnitude on the linear scale (between 2^k and 2^(k+1)
the midpoint is 1.5 * 2^k; below 2^-7 the value becomes zero), deterministic, so the decode is a
function of the bytes alone. The largest entry of each block is reproduced exactly (r = 1); the
relative error of any other entry is at most 1/3 of its magnitude, plus the flush to zero below
s * 2^-7.

Each entry is a 4-bit field: the sign bit (1 = negative; always 0 for zero, and a zero field
with the sign bit set is rejected as malformed), then the 3 exponent bits. Blocks are
consecutive runs of `block_size` entries of the vector (the last may be shorter), or the whole
vector when `block_size` is None: in a ring all-reduce the codec sees one ring chunk at a time,
so None means one scale per chunk. Payload: `fp4/scales` float32 [blocks], `fp4/codes` uint8
(the packed fields, `lowcomm.compress.bits`). Bytes: ceil(n / 2) + 4 * blocks plus the header.
"""

from __future__ import annotations

import numpy as np
import torch

from lowcomm.compress import bits
from lowcomm.compress.codec import Codec, as_update, check_array, expect_arrays, is_int, no_state
from lowcomm.compress.quantize import bucket_sizes
from lowcomm.core import Layout, Payload

EXPONENT_BIAS = 7  # field e in 1..7 is 2^(e - 7); the largest magnitude is the scale itself
WIDTH_BITS = 4


def _blocks(d: int, block_size: int | None) -> np.ndarray:
    if d == 0:
        return np.zeros(0, dtype=np.int64)
    return bucket_sizes(d, block_size or d)


def _segment_abs_max(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    starts = np.cumsum(sizes) - sizes
    return np.maximum.reduceat(np.abs(values), starts) if len(sizes) else np.zeros(0, np.float32)


def e3m0_fields(ratio: np.ndarray) -> np.ndarray:
    """The exponent field (0..7) nearest to each `ratio` in [0, 1] on the linear scale."""
    mantissa, exponent = np.frexp(ratio)  # ratio = mantissa * 2^exponent, mantissa in [0.5, 1)
    k = exponent - 1 + (mantissa >= 0.75)  # round to nearest: 2^(exponent-1) or 2^exponent
    field = np.clip(k + EXPONENT_BIAS, 1, EXPONENT_BIAS)
    # 2^-7 is the midpoint between zero and the smallest magnitude 2^-6: below it, zero
    return np.where(ratio >= 2.0 ** -EXPONENT_BIAS, field, 0)


def fp4(*, block_size: int | None = None) -> Codec:
    """E3M0 4-bit floats with one float32 scale per `block_size` entries (None: per vector)."""
    if block_size is not None and (not is_int(block_size) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer or None; got {block_size}")
    block_size = None if block_size is None else int(block_size)

    def encode(x: torch.Tensor, state: None, generator: torch.Generator | None):
        flat = as_update(x, "fp4")
        sizes = _blocks(len(flat), block_size)
        scales = _segment_abs_max(flat, sizes).astype(np.float32)  # what is sent
        scale = np.repeat(scales, sizes).astype(np.float64)
        ratio = np.divide(np.abs(flat), scale, out=np.zeros(len(flat)), where=scale > 0)
        field = e3m0_fields(ratio)
        negative = (flat < 0) & (field > 0)
        codes = (negative.astype(np.uint64) << np.uint64(3)) | field.astype(np.uint64)
        return Payload({"fp4/scales": scales,
                        "fp4/codes": bits.pack_fixed(codes, WIDTH_BITS)}), state

    def decode(payload: Payload, layout: Layout) -> torch.Tensor:
        scales, packed = expect_arrays(payload, "fp4", ("scales", "codes"))
        sizes = _blocks(layout.size, block_size)
        check_array(scales, "fp4", "scales", dtype="<f4", shape=(len(sizes),))
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise ValueError("fp4 payload: fp4/scales must be finite and >= 0")
        codes = bits.unpack_fixed(packed, WIDTH_BITS, layout.size, what="fp4/codes")
        field = (codes & np.uint64(7)).astype(np.int64)
        negative = (codes >> np.uint64(3)).astype(bool)
        if (negative & (field == 0)).any():
            raise ValueError("fp4 payload: a zero field carries the sign bit (code 8 is invalid)")
        magnitude = np.where(field > 0, np.ldexp(1.0, field - EXPONENT_BIAS), 0.0)
        values = np.repeat(scales.astype(np.float64), sizes) * magnitude
        return torch.from_numpy(np.where(negative, -values, values).astype(np.float32))

    return Codec("fp4", no_state, encode, decode)
