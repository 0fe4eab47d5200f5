"""Serialized payloads between torch.distributed ranks (gloo), framed, counted and checked.

A message is two gloo point-to-point transfers on one pair of ranks: a frame header, three
int64 (`FRAME_MAGIC`, the payload's length in bytes, the collective's tag), then the payload's
serialized bytes as a uint8 tensor. The receiver checks the header *before* it allocates
anything: a foreign magic, a length of 0 or above `max_nbytes`, or a tag that names another
collective (the ranks disagree about what they are running: different posts, delay_steps or
codec) is refused with a clear error. The bytes are then parsed by `lowcomm.core.deserialize`,
which refuses anything truncated, oversized, inconsistent or corrupted (CRC-32); a refusal is
logged on the `lowcomm.distributed` logger and raised as `PayloadRefusedError`.

`WireCounts` are the transport's own counters of what it moved: payload bytes (the algorithms'
traffic, which the ledger records), control bytes (evaluation summaries, the final gather, the
token handshake: instrumentation the simulator does not count either) and framing bytes (the
headers). gloo's own TCP framing is below this layer and is not counted.

`outgoing(dst, data) -> data` is the hook a fault-injection helper uses to corrupt payload bytes
on their way out (control traffic is left alone); the counters and the ledger record what
really left.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from lowcomm.core import Payload, deserialize
from lowcomm.core.payload import DEFAULT_MAX_NBYTES

log = logging.getLogger("lowcomm.distributed")

FRAME_MAGIC = 0x4C43_4652  # b"LCFR"
HEADER_NBYTES = 3 * 8

Outgoing = Callable[[int, bytes], bytes]


class PayloadRefusedError(ValueError):
    """Bytes that arrived at a rank and were refused before reaching any algorithm."""


class ScheduleMismatchError(RuntimeError):
    """Two ranks are in different collectives (they posted differently)."""


class PeerLostError(ConnectionError):
    """A peer did not answer in time or its connection closed."""


class PeerClosedError(PeerLostError):
    """A peer's connection closed: its process ended (not merely slow)."""


def wire_tag(descriptor: str) -> int:
    """A 63-bit tag naming one transfer slot (collective, step, hop) that both ends compute."""
    return int.from_bytes(hashlib.blake2b(descriptor.encode(), digest_size=8).digest(),
                          "little") >> 1


@dataclass(frozen=True)
class WireCounts:
    """What one rank's transport moved, in bytes and messages (measured at the transport)."""

    payload_sent_nbytes: int = 0
    payload_received_nbytes: int = 0
    payload_messages_sent: int = 0
    payload_messages_received: int = 0
    control_sent_nbytes: int = 0
    control_received_nbytes: int = 0
    framing_nbytes: int = 0  # headers sent and received

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class RankTransport:
    """One rank's links to every other rank of a gloo process group (module docstring)."""

    def __init__(self, group: Any, *, rank: int, world_size: int, timeout_seconds: float,
                 max_nbytes: int = DEFAULT_MAX_NBYTES, outgoing: Outgoing | None = None,
                 keep: tuple = (), store: Any = None) -> None:
        if max_nbytes < 1:
            raise ValueError(f"max_nbytes must be >= 1; got {max_nbytes}")
        self._group, self.rank, self.world_size = group, rank, world_size
        self.timeout_seconds, self.max_nbytes = timeout_seconds, max_nbytes
        self._outgoing = outgoing
        self._keep = keep  # the rendezvous store and its socket live as long as the group
        self._store = store
        self._counts = dict.fromkeys(WireCounts().as_dict(), 0)
        self._sequences: dict[str, int] = {}

    def counts(self) -> WireCounts:
        return WireCounts(**self._counts)

    def exchange(self, sends: Sequence[tuple[int, bytes]], sources: Sequence[int], *, tag: int,
                 what: str, control: bool = False, max_nbytes: int | None = None
                 ) -> tuple[dict[int, Payload], list[int]]:
        """Send each `(dst, bytes)` and receive one payload from each of `sources`, all at
        once (a ring hop sends and receives concurrently). Returns what arrived, parsed, and
        the lengths really sent."""
        limit = self.max_nbytes if max_nbytes is None else max_nbytes
        kind = "control" if control else "payload"
        works, sent = [], []
        for dst, data in sends:
            if self._outgoing is not None and not control:
                data = self._outgoing(dst, data)
            header = torch.tensor([FRAME_MAGIC, len(data), tag], dtype=torch.int64)
            body = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            try:  # as for receives: a closed link refuses at once
                works.extend(self._group.send([tensor], dst, 0) for tensor in (header, body))
            except RuntimeError as err:
                raise self._lost(err, f"{what}: a send to rank {dst}") from err
            sent.append(len(data))
            self._add(f"{kind}_sent_nbytes", len(data), f"{kind}_messages_sent")
        headers = {src: torch.empty(3, dtype=torch.int64) for src in sources}
        posted = {src: self._recv(headers[src], src, f"{what}: the frame from rank {src}")
                  for src in sources}
        arrived = {}
        for src in sources:
            self._wait(posted[src], f"{what}: the frame from rank {src}")
            magic, nbytes, their_tag = headers[src].tolist()
            self._counts["framing_nbytes"] += HEADER_NBYTES
            if magic != FRAME_MAGIC:
                self._refuse(src, what, f"not a lowcomm frame (magic {magic:#x})")
            if their_tag != tag:
                raise ScheduleMismatchError(
                    f"rank {self.rank} expected {what} from rank {src} but rank {src} sent a "
                    "message of another collective: the ranks posted different collectives, "
                    "delay_steps or codecs (every rank must run the same algorithm and config)")
            if not 0 < nbytes <= limit:
                self._refuse(src, what, f"payload is oversized or empty: {nbytes} bytes "
                             f"announced, max_nbytes={limit}")
            body = torch.empty(nbytes, dtype=torch.uint8)
            self._wait(self._recv(body, src, f"{what}: the payload from rank {src}"),
                       f"{what}: the payload from rank {src}")
            self._add(f"{kind}_received_nbytes", nbytes, f"{kind}_messages_received")
            try:
                arrived[src] = deserialize(body.numpy().tobytes(), max_nbytes=limit)
            except ValueError as err:
                self._refuse(src, what, str(err))
        for work in works:
            self._wait(work, f"{what}: a send")
        self._counts["framing_nbytes"] += HEADER_NBYTES * len(sends)
        return arrived, sent

    def signal(self, name: str) -> None:
        """Wake the ranks waiting in `wait_for(name)` (a flag in the rendezvous store)."""
        self._need_store().set(f"lowcomm/signal/{name}", "1")

    def wait_for(self, name: str, *, poll_seconds: float = 0.05) -> None:
        """Block until some rank has called `signal(name)`, for as long as it takes: a rank
        standing by to join may wait longer than `timeout_seconds`. The flag carries nothing
        but the moment: what follows it arrives over the group's links as usual. If the store
        goes away (its host ended) this raises `PeerLostError`."""
        store, key = self._need_store(), f"lowcomm/signal/{name}"
        try:
            while not store.check([key]):
                time.sleep(poll_seconds)
        except RuntimeError as err:  # torch's DistStoreError / a closed connection
            raise PeerLostError(f"rank {self.rank} waiting for {name!r}: the rendezvous "
                                f"store is gone ({err})") from err

    def claim(self, key: str, value: str) -> str:
        """Set `key` in the rendezvous store to `value` unless some rank set it first; return
        what it holds now (atomic: the store's compare-and-set). Two ranks racing for one
        outcome (an upload sent, or declared late) agree on the winner."""
        try:
            return self._need_store().compare_set(f"lowcomm/claim/{key}", "", value).decode()
        except RuntimeError as err:
            raise PeerLostError(f"rank {self.rank} claiming {key!r}: the rendezvous store is "
                                f"gone ({err})") from err

    def claimed(self, key: str) -> bool:
        """Whether some rank has claimed `key`."""
        try:
            return self._need_store().check([f"lowcomm/claim/{key}"])
        except RuntimeError as err:
            raise PeerLostError(f"rank {self.rank} checking {key!r}: the rendezvous store is "
                                f"gone ({err})") from err

    def sequence(self, name: str) -> int:
        """0, 1, 2, ... on successive calls with `name`: every rank that runs the same programs
        over this transport numbers them alike (e.g. to keep their claims apart)."""
        self._sequences[name] = self._sequences.get(name, -1) + 1
        return self._sequences[name]

    def _need_store(self) -> Any:
        if self._store is None:
            raise ValueError("this transport has no rendezvous store (built without `join`)")
        return self._store

    def barrier(self) -> None:
        """Wait until every rank has reached this point (gloo's barrier; for measurements)."""
        self._wait(self._group.barrier(), "a barrier")

    def close(self) -> None:
        self._group.shutdown()

    def _add(self, nbytes_key: str, nbytes: int, messages_key: str) -> None:
        self._counts[nbytes_key] += nbytes
        if messages_key in self._counts:
            self._counts[messages_key] += 1

    def _refuse(self, src: int, what: str, reason: str) -> None:
        message = f"rank {self.rank} refused {what} from rank {src}: {reason}"
        log.warning(message)
        raise PayloadRefusedError(message)

    def _recv(self, tensor: torch.Tensor, src: int, what: str) -> Any:
        try:  # gloo refuses at once to post on a link whose peer has closed it
            return self._group.recv([tensor], src, 0)
        except RuntimeError as err:
            raise self._lost(err, what) from err

    def _wait(self, work: Any, what: str) -> None:
        try:
            work.wait(timedelta(seconds=self.timeout_seconds))
        except RuntimeError as err:
            raise self._lost(err, what) from err

    def _lost(self, err: RuntimeError, what: str) -> PeerLostError:
        text = str(err).lower()  # gloo's words for a link its peer's process closed (FIN/RST)
        closed = any(w in text for w in ("connection closed", "connection reset", "broken pipe"))
        kind = PeerClosedError if closed else PeerLostError
        return kind(f"rank {self.rank} waiting for {what}: {err} (timeout "
                    f"{self.timeout_seconds:g} s)")
