"""Persistent per-client state (control variates, momenta, error-feedback residuals), compactly.

A population can hold a million clients while a run touches a few thousand of them, so the store
allocates a client's row the first time that client's state is written and never for the rest:
memory (or disk) grows with the touched clients only. Rows are float32, one per client, holding
every declared field at a fixed offset. With `path`, rows live in a memory-mapped file that
grows in chunks, so a run's state can exceed RAM; otherwise they live in a growing array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

_GROWTH_ROWS = 1024  # rows added at a time (then doubling), so growth cost is amortised


class ClientStateStore:
    """`get(client) -> dict | None` and `put(client, state)` for declared fields of float32."""

    def __init__(self, fields: Mapping[str, tuple[int, ...]], *, path: str | Path | None = None
                 ) -> None:
        if not fields:
            raise ValueError("a client state store needs at least one field")
        self.fields = {name: tuple(int(s) for s in shape) for name, shape in fields.items()}
        self._offsets: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, shape in self.fields.items():
            size = math.prod(shape)
            if size < 1:
                raise ValueError(f"field {name!r} must hold at least one value; shape {shape}")
            self._offsets[name] = (offset, size)
            offset += size
        self.row_size = offset
        self.path = None if path is None else Path(path)
        self._rows: dict[int, int] = {}  # client id -> row
        self._data = self._allocate(0)

    def _allocate(self, capacity: int) -> np.ndarray:
        if self.path is None:
            grown = np.zeros((capacity, self.row_size), dtype=np.float32)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.truncate(max(capacity, 1) * self.row_size * 4)
            grown = np.memmap(self.path, dtype=np.float32, mode="r+",
                              shape=(max(capacity, 1), self.row_size))[:capacity]
        if capacity and self.path is None:
            grown[: len(self._data)] = self._data
        return grown

    def __len__(self) -> int:
        """How many clients have state."""
        return len(self._rows)

    def __contains__(self, client: int) -> bool:
        return int(client) in self._rows

    def clients(self) -> list[int]:
        """The ids of the clients that have state, in the order they were first written."""
        return list(self._rows)

    @property
    def nbytes(self) -> int:
        """Bytes held for rows (allocated capacity, which is at most about twice the used)."""
        return int(self._data.shape[0]) * self.row_size * 4

    def snapshot(self) -> dict:
        """The used rows and which client owns each, as plain copies (for checkpoints)."""
        return {"rows": dict(self._rows), "data": self._data[: len(self._rows)].copy()}

    def restore(self, snapshot: dict) -> None:
        """Replace every row by those of `snapshot` (from `snapshot()`)."""
        self._rows = {}
        self._data = self._allocate(0)
        data = snapshot["data"]
        for client, row in sorted(snapshot["rows"].items(), key=lambda kv: kv[1]):
            values = data[row]
            self.put(client, {name: torch.from_numpy(values[off : off + size].copy())
                              .view(self.fields[name])
                              for name, (off, size) in self._offsets.items()})

    def get(self, client: int) -> dict[str, torch.Tensor] | None:
        """A copy of the client's state, or None if it has never been written."""
        row = self._rows.get(int(client))
        if row is None:
            return None
        values = self._data[row]
        return {name: torch.from_numpy(values[off : off + size].copy()).view(self.fields[name])
                for name, (off, size) in self._offsets.items()}

    def put(self, client: int, state: Mapping[str, torch.Tensor]) -> None:
        """Write every field of the client's state (allocating its row on first write)."""
        if set(state) != set(self.fields):
            raise ValueError(f"client state must have fields {sorted(self.fields)}; got "
                             f"{sorted(state)}")
        row = self._rows.get(int(client))
        if row is None:
            row = len(self._rows)
            if row >= self._data.shape[0]:
                self._data = self._allocate(max(_GROWTH_ROWS, 2 * self._data.shape[0]))
            self._rows[int(client)] = row
        for name, (off, size) in self._offsets.items():
            value = state[name]
            if tuple(value.shape) != self.fields[name]:
                raise ValueError(f"field {name!r} must have shape {self.fields[name]}; got "
                                 f"{tuple(value.shape)}")
            self._data[row, off : off + size] = value.detach().reshape(-1).numpy()
