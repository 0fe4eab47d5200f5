"""Checkpoints of a simulation: one file format, written atomically, checked on load.

A checkpoint holds everything a run needs to continue exactly as if it had never stopped: the
next round, the server state (model, optimizer and algorithm state), every client's saved state,
the ledger so far and the round records so far. No RNG state is saved because the simulator holds
none: every random stream is derived from `(seed, round, ...)` (see `lowcomm.core`), so a resumed
round draws the same cohort and the same minibatches.

File layout: 8-byte magic, 32-byte SHA-256 of the body, body (`torch.save` of a dict). The body
carries the format version and a hash of the run's options; `load` refuses a file whose magic,
digest, version or options hash does not match, with a one-line error naming the file.
Writing goes to a temporary file in the same directory, is fsynced, then `os.replace`d over the
target, so a write that is killed leaves the previous checkpoint intact (and a stray `.tmp` file,
which `load` never reads).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

VERSION = 1
MAGIC = b"LCCKPT01"
LAST = "last.ckpt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, corrupted, other version or other options)."""


def options_hash(options: dict[str, Any]) -> str:
    """A stable hash of the options that determine a run's result."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    next_round: int  # the first round still to run
    state: Any  # the server state after round next_round - 1
    client_states: dict[str, Any] | None  # ClientStateStore.snapshot()
    events: list  # the ledger's events so far
    records: list  # the RoundRecords so far
    initial: Any  # the initial Evaluation


def save(path: str | Path, checkpoint: Checkpoint, *, options: str, keep: int = 1) -> Path:
    """Write `checkpoint` atomically to `path` (temp file, fsync, rename); with `keep` > 1 the
    previous files are kept as `path.1`, `path.2`, ... (oldest dropped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"version": VERSION, "options": options, **checkpoint.__dict__}, buffer)
    body = buffer.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + hashlib.sha256(body).digest() + body)
        f.flush()
        os.fsync(f.fileno())
    for i in range(keep - 1, 0, -1):  # rotate older checkpoints
        older = path.with_name(f"{path.name}.{i - 1}") if i > 1 else path
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i}"))
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def load(path: str | Path, *, options: str) -> Checkpoint:
    """Read and check a checkpoint written by `save` for a run with the same `options` hash."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    raw = path.read_bytes()
    head = len(MAGIC) + 32
    if len(raw) < head or raw[: len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path} is not a lowcomm checkpoint (bad header)")
    body = raw[head:]
    if hashlib.sha256(body).digest() != raw[len(MAGIC) : head]:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated (digest mismatch)")
    data = torch.load(io.BytesIO(body), weights_only=False)
    if data.pop("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has another format version (want {VERSION})")
    saved = data.pop("options")
    if saved != options:
        raise CheckpointError(f"checkpoint {path} was written by a run with other options "
                              f"(hash {saved}, this run {options}); resume with the same options")
    return Checkpoint(**data)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
