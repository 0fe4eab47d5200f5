"""The cost ledger: immutable events, appended and never edited.

Only runtimes append events. Bytes come from the length of the real serialized payload, FLOPs
from PyTorch's FLOP counter (see `lowcomm.cost.flops`). Seconds, joules, dollars and grams of
CO2 are never stored here: `lowcomm.cost.pricing` derives them from the events with the
declared models of `lowcomm.cost.models` and `lowcomm.cost.network`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields

SERVER = "server"


CLIENT_PREFIX = "client:"


def client_name(client_id: int) -> str:
    """The ledger name of a federated client."""
    return f"{CLIENT_PREFIX}{client_id}"


def client_id(name: str) -> int | None:
    """17 for 'client:17'; None for a party that is not a client."""
    if not name.startswith(CLIENT_PREFIX):
        return None
    try:
        return int(name[len(CLIENT_PREFIX):])
    except ValueError:
        return None


def worker_name(worker_id: int) -> str:
    """The ledger name of a data-centre worker (replica)."""
    return f"worker:{worker_id}"


@dataclass(frozen=True, slots=True)
class CommEvent:
    """`nbytes` of serialized payload sent from `src` to `dst` over `channel` in `round`."""

    round: int
    src: str
    dst: str
    channel: str
    nbytes: int
    codec: str

    def __post_init__(self) -> None:
        if self.nbytes < 0:
            raise ValueError(f"nbytes must be >= 0; got {self.nbytes}")

    @property
    def direction(self) -> str:
        """'up' (to the server), 'down' (from the server) or 'peer' (between workers)."""
        if self.dst == SERVER:
            return "up"
        if self.src == SERVER:
            return "down"
        return "peer"


@dataclass(frozen=True, slots=True)
class ComputeEvent:
    """`flops` computed by `worker` in `round` for `kind` of work (e.g. 'train')."""

    round: int
    worker: str
    flops: int
    kind: str

    def __post_init__(self) -> None:
        if self.flops < 0:
            raise ValueError(f"flops must be >= 0; got {self.flops}")


COLLECTIVES = ("allreduce", "allgather", "broadcast", "exchange")


@dataclass(frozen=True, slots=True)
class CollectiveEvent:
    """One collective operation among data-centre workers, posted after their compute of step
    `round`: its kind, the `participants` (worker names), and the serialized bytes of the
    largest transfer in each of its sequential hops (`hop_nbytes[h]`; `len(hop_nbytes)` is the
    number of latency hops). The transfers themselves are `CommEvent`s of the same round and
    channel; this event says how they are sequenced. The result is needed before the
    participants' compute of step `ready_round` (> `round`); a later `ready_round` means the
    algorithm lets the communication overlap the compute of the steps in between.
    """

    round: int
    channel: str
    collective: str
    participants: tuple[str, ...]
    hop_nbytes: tuple[int, ...]
    ready_round: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "participants", tuple(self.participants))
        object.__setattr__(self, "hop_nbytes", tuple(int(n) for n in self.hop_nbytes))
        if self.collective not in COLLECTIVES:
            raise ValueError(f"collective must be one of {COLLECTIVES}; got {self.collective!r}")
        if len(self.participants) < 1 or len(set(self.participants)) != len(self.participants):
            raise ValueError(f"participants must be distinct and non-empty; got "
                             f"{self.participants}")
        if any(n < 0 for n in self.hop_nbytes):
            raise ValueError(f"hop_nbytes must be >= 0; got {self.hop_nbytes}")
        if self.ready_round <= self.round:
            raise ValueError(f"ready_round must be > round ({self.round}); got "
                             f"{self.ready_round}")

    @property
    def hops(self) -> int:
        return len(self.hop_nbytes)


# Why a cohort member contributed nothing to its round (see lowcomm.runtime.guard): its upload
# never arrived ("lost": the connection closed or the process died; "timeout": not by the
# round's deadline), its bytes did not parse ("refused"), or the server rejected what they held.
DROP_REASONS = ("lost", "timeout", "refused", "oversized", "malformed", "wrong-shape",
                "non-finite")


@dataclass(frozen=True, slots=True)
class DropEvent:
    """`party` (a cohort member) contributed nothing to `round`, for `reason` (DROP_REASONS).

    A drop has no cost of its own: totals and pricing ignore it. The bytes that did arrive are
    `CommEvent`s as usual (a rejected upload crossed the link); this event says they were not
    used, and reports count it."""

    round: int
    party: str
    reason: str

    def __post_init__(self) -> None:
        if self.reason not in DROP_REASONS:
            raise ValueError(f"reason must be one of {DROP_REASONS}; got {self.reason!r}")


Event = CommEvent | ComputeEvent | CollectiveEvent | DropEvent


@dataclass(frozen=True)
class Totals:
    """Sums over a set of events. `flops` follow the counter's convention (see cost.flops)."""

    bytes_up: int = 0
    bytes_down: int = 0
    bytes_peer: int = 0
    flops: int = 0
    messages: int = 0

    @property
    def bytes_total(self) -> int:
        return self.bytes_up + self.bytes_down + self.bytes_peer

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "bytes_total": self.bytes_total}


class _Accumulator:
    __slots__ = ("bytes_down", "bytes_peer", "bytes_up", "flops", "messages")

    def __init__(self) -> None:
        self.bytes_up = self.bytes_down = self.bytes_peer = self.flops = self.messages = 0

    def add(self, event: Event) -> None:
        if isinstance(event, CommEvent):
            setattr(self, f"bytes_{event.direction}", getattr(self, f"bytes_{event.direction}")
                    + event.nbytes)
            self.messages += 1
        elif isinstance(event, ComputeEvent):
            self.flops += event.flops  # a CollectiveEvent sequences CommEvents: no bytes of its own

    def freeze(self) -> Totals:
        return Totals(self.bytes_up, self.bytes_down, self.bytes_peer, self.flops, self.messages)


class Ledger:
    """An append-only sequence of cost events with totals per round, worker and direction."""

    __slots__ = ("_events",)

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: list[Event] = []
        self.extend(events)

    def record(self, event: Event) -> None:
        if not isinstance(event, CommEvent | ComputeEvent | CollectiveEvent | DropEvent):
            raise TypeError("a ledger holds CommEvent, ComputeEvent, CollectiveEvent or "
                            f"DropEvent; got {type(event).__name__}")
        self._events.append(event)

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.record(event)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ledger) and self._events == other._events

    __hash__ = None  # type: ignore[assignment]

    def comm_events(self) -> list[CommEvent]:
        return [e for e in self._events if isinstance(e, CommEvent)]

    def compute_events(self) -> list[ComputeEvent]:
        return [e for e in self._events if isinstance(e, ComputeEvent)]

    def collective_events(self) -> list[CollectiveEvent]:
        return [e for e in self._events if isinstance(e, CollectiveEvent)]

    def drop_events(self, *, start: int = 0) -> list[DropEvent]:
        """The drops recorded, or those appended at index `start` and later."""
        return [e for e in self._events[start:] if isinstance(e, DropEvent)]

    def totals(self, *, start: int = 0) -> Totals:
        """Sums over all events, or over those appended at index `start` and later."""
        acc = _Accumulator()
        for event in self._events[start:]:
            acc.add(event)
        return acc.freeze()

    def per_round(self) -> dict[int, Totals]:
        accs: dict[int, _Accumulator] = defaultdict(_Accumulator)
        for event in self._events:
            accs[event.round].add(event)
        return {r: accs[r].freeze() for r in sorted(accs)}

    def per_worker(self) -> dict[str, Totals]:
        """Totals per non-server party: bytes it sent up or received down, FLOPs it computed."""
        accs: dict[str, _Accumulator] = defaultdict(_Accumulator)
        for event in self._events:
            if isinstance(event, CommEvent):
                party = event.src if event.direction in ("up", "peer") else event.dst
            elif isinstance(event, ComputeEvent):
                party = event.worker
            else:
                continue
            accs[party].add(event)
        return {w: accs[w].freeze() for w in sorted(accs)}

    def to_rows(self) -> list[dict]:
        """Events as plain dicts (with a 'type' key) for storage and export."""
        return [{"type": type(e).__name__,
                 **{f.name: _plain(getattr(e, f.name)) for f in fields(e)}}
                for e in self._events]

    @staticmethod
    def from_rows(rows: Iterable[dict]) -> Ledger:
        kinds = {"CommEvent": CommEvent, "ComputeEvent": ComputeEvent,
                 "CollectiveEvent": CollectiveEvent, "DropEvent": DropEvent}
        events = []
        for row in rows:
            row = dict(row)
            kind = row.pop("type", None)
            if kind not in kinds:
                raise ValueError(f"unknown ledger event type {kind!r}")
            events.append(kinds[kind](**row))
        return Ledger(events)


def _plain(value):
    """Tuples as lists, so a row is plain JSON."""
    return list(value) if isinstance(value, tuple) else value
