"""Peer traffic of data-centre training, summed from the ledger: what each worker sent and
received, per collective kind, how many sequential latency hops it took part in, and the peak
bytes one worker sent in one collective (the burst that Streaming DiLoCo divides by P).

All byte figures are measured: sums of `CommEvent.nbytes`, each the length of a serialized
payload. A transfer belongs to the collective with the same round and channel.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .ledger import CollectiveEvent, CommEvent, Ledger


@dataclass(frozen=True)
class PeerTraffic:
    sent_nbytes: dict[str, int]  # worker -> bytes it sent
    received_nbytes: dict[str, int]  # worker -> bytes it received
    bytes_by_collective: dict[str, int]  # collective kind -> bytes sent by all workers
    collectives: dict[str, int]  # collective kind -> operations
    hops: dict[str, int]  # worker -> sequential latency hops of the collectives it joined
    peak_sync_nbytes: int  # max over collectives of the bytes one worker sent in it

    @property
    def total_nbytes(self) -> int:
        return sum(self.sent_nbytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"note": "measured: serialized payload bytes", "total_nbytes": self.total_nbytes,
                "sent_nbytes": self.sent_nbytes, "received_nbytes": self.received_nbytes,
                "bytes_by_collective": self.bytes_by_collective,
                "collectives": self.collectives, "hops": self.hops,
                "peak_sync_nbytes": self.peak_sync_nbytes}


def peer_traffic(ledger: Ledger) -> PeerTraffic:
    """Sum the ledger's peer transfers by worker and by collective (module docstring)."""
    kinds: dict[tuple[int, str], CollectiveEvent] = {}
    hops: dict[str, int] = defaultdict(int)
    collectives: dict[str, int] = defaultdict(int)
    for c in ledger.collective_events():
        kinds[(c.round, c.channel)] = c
        collectives[c.collective] += 1
        for p in c.participants:
            hops[p] += c.hops
    sent: dict[str, int] = defaultdict(int)
    received: dict[str, int] = defaultdict(int)
    by_kind: dict[str, int] = defaultdict(int)
    per_sync: dict[tuple[int, str, str], int] = defaultdict(int)
    for e in ledger.comm_events():
        if e.direction != "peer":
            continue
        collective = kinds.get((e.round, e.channel))
        if collective is None:
            raise ValueError(f"peer transfer {_brief(e)} belongs to no collective of round "
                             f"{e.round} and channel {e.channel!r}")
        sent[e.src] += e.nbytes
        received[e.dst] += e.nbytes
        by_kind[collective.collective] += e.nbytes
        per_sync[(e.round, e.channel, e.src)] += e.nbytes
    return PeerTraffic(dict(sorted(sent.items())), dict(sorted(received.items())),
                       dict(by_kind), dict(collectives), dict(sorted(hops.items())),
                       max(per_sync.values(), default=0))


def _brief(e: CommEvent) -> str:
    return f"{e.src} -> {e.dst} ({e.nbytes} bytes)"
