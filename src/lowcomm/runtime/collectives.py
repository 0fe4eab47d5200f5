"""Collectives among data-centre workers in one process, moved as real bytes and recorded.

Every transfer is a serialized `Payload`: its length is recorded as a `CommEvent` from
`worker:i` to `worker:j`, and the receiver gets `deserialize(bytes)`, never the sender's object.
Each operation also records one `CollectiveEvent` with its participants and the largest
transfer of each sequential hop, from which `lowcomm.cost.timeline` models its duration.

What each member sends, when, and what it does with what it receives is written once, as
per-member programs, in `lowcomm.runtime.schedules`; `run_lockstep` drives the programs of every
member hop by hop (the torch.distributed runtime drives one member's program per process). The
ledger holds a hop's transfers in schedule order (the ring, or the tree from its root), hop
after hop, then the collective's `CollectiveEvent`.

- `ring_allreduce_mean`: reduce-scatter then all-gather around a ring (Patarasuk & Yuan 2009):
  each worker sends and receives 2(p-1) chunks, about 2(p-1)/p of the vector, in 2(p-1) hops,
  with the wire codec applied per chunk and float32 accumulation.
- `ring_allgather`: every worker's payload travels p-1 hops around the ring.
- `tree_broadcast`: a binomial tree from the root, ceil(log2 p) hops.
- `pair_exchange`: two workers swap payloads in one (full-duplex) hop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lowcomm.compress import Codec
from lowcomm.core import Payload, deserialize, serialize
from lowcomm.cost.ledger import CollectiveEvent, CommEvent, Ledger, worker_name
from lowcomm.runtime.schedules import (
    Program,
    pair_exchange_program,
    ring_allgather_program,
    ring_allreduce_program,
    tree_broadcast_program,
)

WireTap = Callable[[str, str, bytes], None]  # (src, dst, bytes), for tests and debugging


class PeerTransport:
    """Worker-to-worker links recording a `CommEvent` per transfer."""

    __slots__ = ("_ledger", "_tap")

    def __init__(self, ledger: Ledger, *, tap: WireTap | None = None) -> None:
        self._ledger = ledger
        self._tap = tap

    def send(self, payload: Payload, src: int, dst: int, *, round: int, channel: str,
             codec: str) -> tuple[Payload, int]:
        """Move one payload; return what the receiver parses and the bytes moved."""
        data = serialize(payload)
        self._ledger.record(CommEvent(round, worker_name(src), worker_name(dst), channel,
                                      len(data), codec))
        if self._tap is not None:
            self._tap(worker_name(src), worker_name(dst), data)
        return deserialize(data), len(data)

    def collective(self, *, round: int, channel: str, kind: str, participants: Sequence[int],
                   hop_nbytes: Sequence[int], ready_round: int) -> None:
        self._ledger.record(CollectiveEvent(round, channel, kind,
                                            tuple(worker_name(w) for w in participants),
                                            tuple(hop_nbytes), ready_round))


def run_lockstep(transport: PeerTransport, programs: dict[int, Program], *, order: Sequence[int],
                 kind: str, round: int, channel: str, codec: str, ready_round: int
                 ) -> dict[int, Any]:
    """Drive every member's program hop by hop; each member's result. `order` is the members
    in schedule order: the order in which a hop's transfers are sent and recorded."""
    hops = {w: next(programs[w]) for w in order}
    results: dict[int, Any] = {}
    hop_nbytes = []
    while hops:
        arrived: dict[int, dict[int, Payload]] = {w: {} for w in order}
        biggest = 0
        for w in order:
            for dst, payload in hops[w].sends if w in hops else ():
                arrived[dst][w], nbytes = transport.send(payload, w, dst, round=round,
                                                         channel=channel, codec=codec)
                biggest = max(biggest, nbytes)
        hop_nbytes.append(biggest)
        following = {}
        for w, hop in hops.items():
            if set(arrived[w]) != set(hop.receives):
                raise RuntimeError(f"{kind} {channel!r} hop {len(hop_nbytes) - 1}: worker {w} "
                                   f"awaits {sorted(hop.receives)} but got {sorted(arrived[w])}")
            try:
                following[w] = programs[w].send(arrived[w])
            except StopIteration as done:
                results[w] = done.value
        if following and results:
            raise RuntimeError(f"{kind} {channel!r}: members finished after different hops")
        hops = following
    transport.collective(round=round, channel=channel, kind=kind, participants=order,
                         hop_nbytes=hop_nbytes, ready_round=ready_round)
    return results


def _check_group(vectors_or_payloads: dict[int, object], what: str) -> list[int]:
    group = sorted(vectors_or_payloads)
    if len(group) < 2:
        raise ValueError(f"{what} needs at least 2 workers; got {group}")
    return group


def ring_allreduce_mean(transport: PeerTransport, vectors: dict[int, torch.Tensor],
                        codec: Codec, *, round: int, channel: str, ready_round: int,
                        seed: int = 0) -> torch.Tensor:
    """The mean of the workers' `[n]` vectors over a ring (module docstring); every
    participant receives this same tensor. `seed` feeds randomised wire codecs: the stream of
    (worker w, hop h) is `(seed, round, w, "allreduce:<channel>:<h>")`."""
    ring = _check_group(vectors, "an all-reduce")
    sizes = {tuple(v.shape) for v in vectors.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"all-reduce vectors must be [n] tensors of one length; got {sizes}")
    programs = {w: ring_allreduce_program(vectors[w], codec, ring=ring, me=w, round=round,
                                          channel=channel, seed=seed) for w in ring}
    results = run_lockstep(transport, programs, order=ring, kind="allreduce", round=round,
                           channel=channel, codec=codec.name, ready_round=ready_round)
    return results[ring[0]]


def ring_allgather(transport: PeerTransport, payloads: dict[int, Payload], *, round: int,
                   channel: str, ready_round: int, codec: str = "payload"
                   ) -> tuple[Payload, ...]:
    """Every worker's payload, in worker order, as every participant receives it."""
    ring = _check_group(payloads, "an all-gather")
    programs = {w: ring_allgather_program(payloads[w], ring=ring, me=w) for w in ring}
    results = run_lockstep(transport, programs, order=ring, kind="allgather", round=round,
                           channel=channel, codec=codec, ready_round=ready_round)
    return results[ring[0]]


def tree_broadcast(transport: PeerTransport, payload: Payload, *, root: int,
                   participants: Sequence[int], round: int, channel: str, ready_round: int,
                   codec: str = "payload") -> Payload:
    """`payload` from `root` to every participant over a binomial tree; what they receive."""
    others = sorted(set(participants) - {root})
    if root not in participants or not others:
        raise ValueError(f"a broadcast needs its root {root} and at least one other "
                         f"participant; got {sorted(participants)}")
    order = [root, *others]
    programs = {w: tree_broadcast_program(payload if w == root else None, order=order, me=w)
                for w in order}
    results = run_lockstep(transport, programs, order=order, kind="broadcast", round=round,
                           channel=channel, codec=codec, ready_round=ready_round)
    return results[order[-1]]


def pair_exchange(transport: PeerTransport, a: int, payload_a: Payload, b: int,
                  payload_b: Payload, *, round: int, channel: str, ready_round: int,
                  codec: str = "payload") -> tuple[Payload, Payload]:
    """Swap payloads between workers a and b: (what a receives, what b receives)."""
    if a == b:
        raise ValueError(f"a worker cannot exchange with itself; got a = b = {a}")
    pair = (a, b)
    programs = {a: pair_exchange_program(payload_a, pair=pair, me=a),
                b: pair_exchange_program(payload_b, pair=pair, me=b)}
    results = run_lockstep(transport, programs, order=pair, kind="exchange", round=round,
                           channel=channel, codec=codec, ready_round=ready_round)
    return results[a], results[b]
