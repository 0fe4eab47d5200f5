"""Checkpoints of a simulation: one file format, written atomically, checked on load.

A checkpoint holds everything a run needs to continue exactly as if it had never stopped: the
next round, the server state (model, optimizer and algorithm state, including any server-side
codec state such as EF21's estimate), every client's saved state (control variates,
error-feedback residuals), the ledger so far, the round records so far and the options that
determine the result.

The RNG state: the simulator holds no mutable generator. Every random stream (cohort draws,
minibatch order, stochastic rounding, FedAMD's anchor draws, the evaluation subset) is derived
afresh from `(seed, round, client, purpose)` by `lowcomm.core.rng`, so the seed *is* the whole
RNG state; the checkpoint stores it (`seed`), and a resumed round draws the same cohort, the same
minibatches and the same rounding as the uninterrupted run.

File layout: 8-byte magic, 32-byte SHA-256 of the body, body (`torch.save` of a dict). The body
carries the format version, the options and their hash; `load` refuses a file whose magic,
digest, version or options do not match, with a one-line error naming the file (and, for other
options, which ones differ). Writing goes to a temporary file in the same directory, is fsynced,
then `os.replace`d over the target, so a write that is killed leaves the previous checkpoint
intact (and a stray `.tmp` file, which `load` never reads). With `keep` > 1 the previous file is
hard-linked to `last.ckpt.1` before the rename, so `last.ckpt` is there at every moment.

The small functions at the end are the save/resume steps a runtime calls (the simulator, and a
star runtime's server): `round_checkpoint` + `save_round` after a round, `resume_point` to load,
`check_options` and `restore` to continue.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from lowcomm.cost.ledger import Ledger
from lowcomm.runtime.state import ClientStateStore

VERSION = 2
MAGIC = b"LCCKPT01"
LAST = "last.ckpt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, corrupted, other version or other options)."""


def plain_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` as plain JSON values (tuples become lists), so saved and current compare."""
    return json.loads(json.dumps(dict(options), sort_keys=True, default=str))


def options_hash(options: Mapping[str, Any]) -> str:
    """A stable hash of the options that determine a run's result."""
    text = json.dumps(plain_options(options), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    next_round: int  # the first round still to run
    state: Any  # the server state after round next_round - 1
    client_states: dict[str, Any] | None  # ClientStateStore.snapshot()
    events: list  # the ledger's events so far
    records: list  # the RoundRecords so far
    initial: Any  # the initial Evaluation
    options: dict[str, Any]  # what determines the result (plain JSON values)
    seed: int  # every random stream derives from (seed, round, client, purpose): the RNG state
    source: Path | None = field(default=None, compare=False)  # the file it was loaded from


def save(path: str | Path, checkpoint: Checkpoint, *, keep: int = 1) -> Path:
    """Write `checkpoint` atomically to `path` (temp file, fsync, rename); with `keep` > 1 the
    previous files are kept as `path.1`, `path.2`, ... (oldest dropped)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1; got {keep}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {f.name: getattr(checkpoint, f.name) for f in fields(checkpoint) if f.name != "source"}
    saved["options"] = plain_options(checkpoint.options)
    buffer = io.BytesIO()
    torch.save({"version": VERSION, "options_hash": options_hash(saved["options"]), **saved},
               buffer)
    body = buffer.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + hashlib.sha256(body).digest() + body)
        f.flush()
        os.fsync(f.fileno())
    for i in range(keep - 1, 0, -1):  # rotate older checkpoints
        older = path.with_name(f"{path.name}.{i - 1}") if i > 1 else path
        if older.exists():
            (_link if i == 1 else os.replace)(older, path.with_name(f"{path.name}.{i}"))
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _link(path: Path, target: Path) -> None:
    """`target` becomes a hard link to `path`, which stays in place (a kill during a rotation
    never leaves `path` missing); moved where the file system has no hard links."""
    link = target.with_name(target.name + ".tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
    except OSError:
        os.replace(path, target)
        return
    os.replace(link, target)


def load(path: str | Path, *, options: Mapping[str, Any] | None = None) -> Checkpoint:
    """Read and check a checkpoint written by `save` (a file, or a directory's `last.ckpt`);
    with `options`, also refuse one written by a run with other options."""
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
    if data.pop("version", None) != VERSION:
        raise CheckpointError(f"checkpoint {path} has another format version (want {VERSION})")
    data.pop("options_hash")
    checkpoint = Checkpoint(**data, source=path)
    if options is not None:
        check_options(checkpoint, options)
    return checkpoint


def check_options(checkpoint: Checkpoint, options: Mapping[str, Any]) -> None:
    """Refuse a checkpoint written by a run with other options, naming the file and every
    option that differs (its value there and here)."""
    here = plain_options(options)
    if options_hash(here) == options_hash(checkpoint.options):
        return
    there, here = _flat(checkpoint.options), _flat(here)
    diffs = [f"{k}: {there.get(k, '<absent>')!r} there, {here.get(k, '<absent>')!r} here"
             for k in sorted(set(there) | set(here)) if there.get(k) != here.get(k)]
    raise CheckpointError(f"checkpoint {checkpoint.source or '(in memory)'} was written by a run "
                          f"with other options ({'; '.join(diffs)}); resume with the same options")


def _flat(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested options as one level of dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class CheckpointPolicy:
    """Write a checkpoint to `directory/file` (`last.ckpt`) after every `every`-th round and
    after the last one, keeping the `keep` newest files. `options` are what else determines the
    result beyond what the runtime sees itself (e.g. the command-line config); they join the
    check. (A star run over torch.distributed gives each client rank its own `file`.)"""

    directory: str | Path
    every: int = 1
    keep: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    file: str = LAST

    def __post_init__(self) -> None:
        for name in ("every", "keep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"checkpoint {name} must be an integer >= 1; got {value!r}")

    @property
    def path(self) -> Path:
        return Path(self.directory) / self.file

    def due(self, t: int, *, last: bool) -> bool:
        """Whether to write after round `t` (`last`: the run ends after it)."""
        return last or t % self.every == 0


def round_checkpoint(next_round: int, state: Any, *, store: ClientStateStore | None,
                     ledger: Ledger, records: Sequence[Any], initial: Any,
                     options: Mapping[str, Any], seed: int) -> Checkpoint:
    """The checkpoint of a run whose rounds before `next_round` are done."""
    return Checkpoint(next_round, state, None if store is None else store.snapshot(),
                      list(ledger), list(records), initial, plain_options(options), seed)


def save_round(policy: CheckpointPolicy | None, t: int, build: Callable[[], Checkpoint], *,
               last: bool) -> Path | None:
    """Save the checkpoint of round `t` when `policy` says it is due; `build()` makes it only
    then (it copies the ledger and the client states)."""
    if policy is None or not policy.due(t, last=last):
        return None
    return save(policy.path, build(), keep=policy.keep)


def resume_point(directory: str | Path, *, options: Mapping[str, Any] | None = None
                 ) -> Checkpoint:
    """The last checkpoint in `directory` (checked against `options` if given); a clear
    `CheckpointError` when there is none."""
    path = Path(directory) / LAST
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from in {directory} (no {LAST}); run "
                              "without resume to start fresh")
    return load(path, options=options)


def held(path: str | Path, *, options: Mapping[str, Any] | None = None) -> list[Checkpoint]:
    """Every checkpoint `save` keeps at `path` (`path`, `path.1`, ...: newest first), each
    loaded and checked as `load` does."""
    path = Path(path)
    older = sorted((int(f.name.rsplit(".", 1)[1]), f) for f in path.parent.glob(f"{path.name}.*")
                   if f.name.rsplit(".", 1)[1].isdigit())
    return [load(f, options=options) for f in [path, *(f for _, f in older)] if f.is_file()]


def restore(checkpoint: Checkpoint, *, ledger: Ledger, store: ClientStateStore | None) -> None:
    """Put the checkpoint's events into the (empty) `ledger` and its client states into
    `store`."""
    if len(ledger):
        raise ValueError(f"ledger must start empty to restore into; it holds {len(ledger)} "
                         "events")
    if (store is None) != (checkpoint.client_states is None):
        has, keeps = ("has", "does not keep") if store is None else ("lacks", "keeps")
        raise CheckpointError(f"checkpoint {checkpoint.source} {has} client states that this "
                              f"algorithm {keeps}")
    ledger.extend(checkpoint.events)
    if store is not None:
        store.restore(checkpoint.client_states)


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
