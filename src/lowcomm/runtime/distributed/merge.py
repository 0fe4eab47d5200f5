"""Each rank's record of what it computed, sent and received, and their merge into one ledger in
the simulator's canonical order.

A rank knows only its own part of the run: its compute events, the transfers it sent (with the
hop and its place in the hop) and received, and, for every collective it joined, the largest
transfer it sent in each hop. At the end rank 0 gathers every rank's `RankLog` and `merge`
rebuilds the ledger the simulator (`train_workers`) records for the same run, event for event:

- steps in increasing order; in each step, every worker's compute events (worker 0 first),
  then the step's collectives in the order they were first posted (worker 0's posts in its
  posting order, then worker 1's new ones, ...: the simulator's `resolve` order);
- in each collective, its transfers hop by hop, in schedule order within a hop (the ring, or
  the tree from its root), then its `CollectiveEvent`, whose `hop_nbytes[h]` is the largest
  transfer any member sent in hop h.

The distributed ledger therefore *equals* the simulator's (`Ledger.__eq__`), not merely as a
sorted multiset. The merge also checks that every transfer some rank sent was received by its
destination with the same length, and that every member of a collective reported it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from lowcomm.core import Payload
from lowcomm.cost.ledger import (
    CollectiveEvent,
    CommEvent,
    ComputeEvent,
    Event,
    Ledger,
    worker_name,
)


@dataclass
class CollectiveLog:
    """One rank's view of one collective it joined."""

    rank: int
    round: int
    descriptor: str  # what every member agrees on (`Planned.descriptor`)
    kind: str
    channel: str
    order: list[int]
    ready_round: int
    hop_max_nbytes: list[int] = field(default_factory=list)  # largest transfer this rank sent
    sent: list[tuple[int, int, CommEvent]] = field(default_factory=list)  # (hop, index, event)
    received: list[CommEvent] = field(default_factory=list)


@dataclass
class RankLog:
    rank: int
    compute: list[ComputeEvent] = field(default_factory=list)
    collectives: list[CollectiveLog] = field(default_factory=list)
    sent_nbytes: int = 0  # running totals, for the records' windows
    flops: int = 0

    def add_compute(self, events: list[ComputeEvent]) -> None:
        self.compute.extend(events)
        self.flops += sum(e.flops for e in events)

    def to_payload(self) -> Payload:
        rows = {"rank": self.rank, "compute": [asdict(e) for e in self.compute],
                "collectives": [{**{k: v for k, v in asdict(c).items()
                                    if k not in ("sent", "received")},
                                 "sent": [[h, i, asdict(e)] for h, i, e in c.sent],
                                 "received": [asdict(e) for e in c.received]}
                                for c in self.collectives]}
        return Payload(log=np.frombuffer(json.dumps(rows).encode(), np.uint8))


def log_from_payload(payload: Payload, rank: int) -> RankLog:
    """Parse a rank's log; anything malformed is a `ValueError` naming the rank."""
    try:
        rows = json.loads(bytes(payload["log"]).decode())
        if rows["rank"] != rank:
            raise ValueError(f"it says it is rank {rows['rank']}")
        collectives = [CollectiveLog(
            c["rank"], c["round"], c["descriptor"], c["kind"], c["channel"], list(c["order"]),
            c["ready_round"], list(c["hop_max_nbytes"]),
            [(h, i, CommEvent(**e)) for h, i, e in c["sent"]],
            [CommEvent(**e) for e in c["received"]]) for c in rows["collectives"]]
        return RankLog(rank, [ComputeEvent(**e) for e in rows["compute"]], collectives)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"rank {rank} sent a malformed ledger log: {err}") from err


def merge(logs: list[RankLog]) -> Ledger:
    """The run's ledger in the simulator's order (module docstring); `logs` in rank order."""
    steps = sorted({e.round for log in logs for e in log.compute}
                   | {c.round for log in logs for c in log.collectives})
    compute = {t: [] for t in steps}
    for log in logs:
        for e in log.compute:
            compute[e.round].append(e)
    posted: dict[int, dict[str, list[CollectiveLog]]] = {t: {} for t in steps}
    for log in logs:
        for c in log.collectives:  # first seen at the lowest rank, in its posting order
            posted[c.round].setdefault(c.descriptor, []).append(c)
    events: list[Event] = []
    for t in steps:
        events.extend(compute[t])
        for descriptor, views in posted[t].items():
            events.extend(_collective(descriptor, views))
    return Ledger(events)


def _collective(descriptor: str, views: list[CollectiveLog]) -> list[Event]:
    first = views[0]
    order = first.order
    reported = sorted(v.rank for v in views)
    if reported != sorted(order):
        raise ValueError(f"{descriptor}: members {sorted(order)} but workers {reported} "
                         "reported it")
    hops = {len(v.hop_max_nbytes) for v in views}
    if len(hops) != 1:
        raise ValueError(f"{descriptor}: members ran different numbers of hops {sorted(hops)}")
    sent = sorted(((h, order.index(_worker(e.src)), i, e) for v in views for h, i, e in v.sent),
                  key=lambda x: x[:3])
    transfers = [e for *_, e in sent]
    received = [e for v in views for e in v.received]
    if Counter(transfers) != Counter(received):
        missing = Counter(transfers) - Counter(received)
        extra = Counter(received) - Counter(transfers)
        raise ValueError(f"{descriptor}: the transfers sent and received differ: sent but not "
                         f"received {list(missing)}, received but not sent {list(extra)}")
    hop_nbytes = [max(v.hop_max_nbytes[h] for v in views) for h in range(hops.pop())]
    return [*transfers, CollectiveEvent(first.round, first.channel, first.kind,
                                        tuple(worker_name(w) for w in order), tuple(hop_nbytes),
                                        first.ready_round)]


def _worker(name: str) -> int:
    return int(name.removeprefix("worker:"))
