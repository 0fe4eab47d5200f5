"""Ranks as local processes: `spawn_local(target, nproc)` runs `target(rank, nproc, endpoint)`
in `nproc` forked processes of this machine and returns their results in rank order.

The endpoint is 127.0.0.1 on a free port with a fresh random token (`secrets.token_hex(32)`),
handed to the children in memory (never on a command line). Each child uses `threads` intra-op
threads (default 1: one process per core). If a rank fails, the others get `grace_seconds` to
notice (their peer's links close) before they are killed, and `RankFailedError` reports every
failed rank's error. Across machines use `torchrun` instead (docs/distributed.md).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import secrets
import signal
import socket
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import torch


@dataclass(frozen=True)
class Endpoint:
    """Where the ranks meet (rank 0's rendezvous store) and the secret they share."""

    master_addr: str
    master_port: int
    token: str = field(repr=False)

    def join(self, rank: int, world_size: int, **options: Any) -> Any:
        """This rank's `RankTransport` of the run: `door.join` at this endpoint with its token
        (`options` are join's others, e.g. `timeout_seconds`, or another `token`)."""
        from lowcomm.runtime.distributed.door import join  # door builds on this module's peers

        return join(rank=rank, world_size=world_size, master_addr=self.master_addr,
                    master_port=self.master_port, **{"token": self.token, **options})


class RankFailedError(RuntimeError):
    """One or more ranks raised or died; `errors` maps rank -> its error and traceback."""

    def __init__(self, errors: dict[int, str]) -> None:
        self.errors = dict(sorted(errors.items()))
        heads = "; ".join(f"rank {r}: {text.splitlines()[0]}" for r, text in self.errors.items())
        details = "\n".join(f"--- rank {r} ---\n{text}" for r, text in self.errors.items())
        super().__init__(f"{heads}\n{details}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _child(target: Callable[[int, int, Endpoint], Any], rank: int, nproc: int,
           endpoint: Endpoint, threads: int, conn: Any) -> None:
    torch.set_num_threads(threads)
    # plain pickle: tensors travel by value (torch's reducers would share them through file
    # descriptors that die with this process)
    try:
        conn.send_bytes(pickle.dumps((True, target(rank, nproc, endpoint))))
    except BaseException as err:  # reported to the parent, which raises it
        text = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        conn.send_bytes(pickle.dumps((False, text)))
    finally:
        conn.close()


def _vanished(rank: int, exitcode: int | None, may_vanish: Collection[int]
              ) -> tuple[bool, Any]:
    if rank in may_vanish:
        return True, None
    how = (f"was killed by {signal.Signals(-exitcode).name}" if exitcode is not None
           and exitcode < 0 else f"exited with code {exitcode}")
    return False, f"{how} without a result"


def spawn_local(target: Callable[[int, int, Endpoint], Any], nproc: int, *,
                timeout_seconds: float | None = None, grace_seconds: float = 30.0,
                threads: int = 1, endpoint: Endpoint | None = None,
                may_vanish: Collection[int] = ()) -> list[Any]:
    """Run `target(rank, nproc, endpoint)` in `nproc` local processes (module docstring);
    with `timeout_seconds`, ranks still running after that long are killed and reported.
    A rank in `may_vanish` may end without a result (e.g. killed, to test that the others
    survive it): its result is None and the others are not cut short."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an integer >= 1; got {nproc!r}")
    if (timeout_seconds is not None and not timeout_seconds > 0) or not grace_seconds > 0:
        raise ValueError(f"timeout_seconds and grace_seconds must be > 0; got "
                         f"{timeout_seconds}, {grace_seconds}")
    endpoint = endpoint or Endpoint("127.0.0.1", free_port(), secrets.token_hex(32))
    context = mp.get_context("fork")  # the children inherit target without pickling it
    pipes = [context.Pipe(duplex=False) for _ in range(nproc)]
    procs = [context.Process(target=_child, args=(target, r, nproc, endpoint, threads, w),
                             daemon=True) for r, (_, w) in enumerate(pipes)]
    for proc in procs:
        proc.start()
    for _, writer in pipes:
        writer.close()  # the children hold them now
    outcomes: dict[int, tuple[bool, Any]] = {}
    deadline = math.inf if timeout_seconds is None else time.monotonic() + timeout_seconds
    try:
        while len(outcomes) < nproc and time.monotonic() < deadline:
            waiting = [r for r in range(nproc) if r not in outcomes]
            left = deadline - time.monotonic()
            ready = wait([pipes[r][0] for r in waiting] + [procs[r].sentinel for r in waiting],
                         timeout=None if math.isinf(left) else max(0.0, left))
            for r in waiting:
                reader = pipes[r][0]
                if reader in ready or reader.poll():
                    try:
                        outcomes[r] = pickle.loads(reader.recv_bytes())
                    except EOFError:  # it closed its pipe: it is ending
                        procs[r].join(timeout=grace_seconds)
                        outcomes[r] = _vanished(r, procs[r].exitcode, may_vanish)
                elif procs[r].sentinel in ready:
                    procs[r].join()
                    outcomes[r] = _vanished(r, procs[r].exitcode, may_vanish)
            if any(not ok for ok, _ in outcomes.values()):
                deadline = min(deadline, time.monotonic() + grace_seconds)
    finally:
        for proc in procs:
            proc.join(timeout=1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for reader, _ in pipes:
            reader.close()
    errors = {r: value for r, (ok, value) in outcomes.items() if not ok}
    errors.update({r: "still running after the others ended or the timeout (killed)"
                   for r in range(nproc) if r not in outcomes})
    if errors:
        raise RankFailedError(errors)
    return [outcomes[r][1] for r in range(nproc)]
