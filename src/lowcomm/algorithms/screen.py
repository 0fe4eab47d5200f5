"""What a well-formed upload of a star algorithm holds, and the check that refuses anything else.

A server must not let a client's bytes reach the model unless they are what the algorithm
expects. Every star algorithm declares its uplink as an `UploadForm`: the codec and layout its
vectors are encoded with, which vectors a payload carries (each alternative a set of `pack`
names; `()` is one unprefixed vector, the form `client_output` sends), and its integer count
fields (e.g. `num_samples`, at least 1). `UploadForm.check(payload)` decodes every vector with
the algorithm's own codec, exactly as the server update will, and raises `UploadRejectedError`
naming the reason:

- `malformed`: a field is missing, unexpected (nothing the decoder reads), of the wrong dtype or
  shape for a count, or the codec's decoder refuses it;
- `wrong-shape`: a decoded vector is not a float32 `[d]` tensor;
- `non-finite`: a decoded vector holds NaN or infinite entries (what would reach the model).

The check screens form, not honesty: a well-formed upload with a made-up `num_samples` passes
(robust aggregation is the defence there). It decodes each vector once more than the server
update does; that is O(d) per client and is the price of never feeding an undecodable upload to
`server_update`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowcomm.core import Layout, Payload

REJECT_REASONS = ("malformed", "wrong-shape", "non-finite")

# What a decoder of untrusted arrays may raise besides ValueError (an index out of range, a
# reshape torch refuses, an array of another type).
_DECODE_ERRORS = (ValueError, KeyError, IndexError, TypeError, RuntimeError, OverflowError)


class UploadRejectedError(ValueError):
    """An upload the server refuses; `reason` is a short kind, `detail` says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Count:
    """An integer field sent as int64 `[1]`, within `[low, high)` (`high=None`: no bound)."""

    name: str
    low: int = 1
    high: int | None = None


@dataclass(frozen=True)
class UploadForm:
    codec: Any  # the uplink Codec the vectors are decoded with
    layout: Layout
    vectors: tuple[tuple[str, ...], ...] = ((),)  # alternatives of packed names; () = unpacked
    counts: tuple[Count, ...] = (Count("num_samples"),)

    def check(self, payload: Payload) -> None:
        """Return if `payload` is a well-formed upload; else raise `UploadRejectedError`."""
        count_names = {c.name for c in self.counts}
        for count in self.counts:
            _check_count(payload, count)
        rest = [name for name in payload if name not in count_names]
        keys = self._alternative(rest)
        parts = ({"": rest} if keys == () else
                 {key: [n for n in rest if n.startswith(f"{key}:")] for key in keys})
        stray = sorted(set(rest) - {n for names in parts.values() for n in names})
        if stray:
            raise UploadRejectedError("malformed", f"unexpected fields {stray}")
        for key, names in parts.items():
            prefix = f"{key}:" if key else ""
            self._check_vector(key, Payload({n[len(prefix):]: payload[n] for n in names}))

    def _alternative(self, names: Sequence[str]) -> tuple[str, ...]:
        """The alternative of `vectors` whose names the payload's prefixes match."""
        prefixes = {n.split(":", 1)[0] for n in names if ":" in n}
        for keys in self.vectors:
            if (keys == () and not prefixes) or (keys and set(keys) == prefixes):
                return keys
        wanted = " or ".join(str(list(k)) if k else "one unpacked vector" for k in self.vectors)
        raise UploadRejectedError("malformed", f"the upload holds vectors {sorted(prefixes)}; the "
                                          f"algorithm expects {wanted}")

    def _check_vector(self, key: str, part: Payload) -> None:
        what = f"vector {key!r}" if key else "the vector"
        tracked = _TrackedPayload(part)
        try:
            vector = self.codec.decode(tracked, self.layout)
        except _DECODE_ERRORS as err:
            raise UploadRejectedError("malformed", f"{what}: {err}") from None
        unread = sorted(set(part) - tracked.read)
        if unread:
            raise UploadRejectedError("malformed", f"{what}: fields {unread} are not read by the "
                                              f"{self.codec.name} decoder")
        d = self.layout.size
        if not isinstance(vector, torch.Tensor) or tuple(vector.shape) != (d,):
            shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector)
            raise UploadRejectedError("wrong-shape", f"{what} decodes to {shape}; expected ({d},)")
        if vector.dtype != torch.float32:
            raise UploadRejectedError("wrong-shape", f"{what} decodes to {vector.dtype}; expected "
                                                "torch.float32")
        bad = int((~torch.isfinite(vector)).sum())
        if bad:
            raise UploadRejectedError("non-finite", f"{what} has {bad} NaN or infinite entries "
                                               f"of {d}")


def _check_count(payload: Payload, count: Count) -> None:
    if count.name not in payload:
        raise UploadRejectedError("malformed", f"count {count.name!r} is missing")
    array = payload[count.name]
    if array.dtype != np.dtype("<i8") or array.shape != (1,):
        raise UploadRejectedError("malformed", f"count {count.name!r} must be int64 [1]; got "
                                          f"{array.dtype} {list(array.shape)}")
    value = int(array[0])
    if value < count.low or (count.high is not None and value >= count.high):
        bounds = f"[{count.low}, {'inf' if count.high is None else count.high})"
        raise UploadRejectedError("malformed", f"count {count.name!r} is {value}; it must be in "
                                          f"{bounds}")


class _TrackedPayload(Payload):
    """A payload that remembers which arrays were read (a decoder that leaves a field unread
    was sent something it does not expect)."""

    __slots__ = ("read",)

    def __init__(self, payload: Payload) -> None:
        super().__init__(dict(payload.items()))
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        self.read.add(name)
        return super().__getitem__(name)

    def tensor(self, name: str) -> torch.Tensor:
        self.read.add(name)
        return super().tensor(name)
