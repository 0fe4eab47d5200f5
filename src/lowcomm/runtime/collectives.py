"""Collectives among data-centre workers, moved as real bytes and recorded in the ledger.

Every transfer is a serialized `Payload`: its length is recorded as a `CommEvent` from
`worker:i` to `worker:j`, and the receiver gets `deserialize(bytes)`, never the sender's object.
Each operation also records one `CollectiveEvent` with its participants and the largest
transfer of each sequential hop, from which `lowcomm.cost.timeline` models its duration.

- `ring_allreduce_mean`: reduce-scatter then all-gather around a ring (Patarasuk & Yuan 2009):
  the vector is cut into p chunks; in each of p-1 hops every worker sends one chunk of its
  running sum to the next worker, which decodes it and adds it in float32; the owner of each
  reduced chunk divides by p, encodes it once, and the encoded chunk travels p-1 more hops. Each
  worker sends and receives 2(p-1) chunks, about 2(p-1)/p of the vector, in 2(p-1) hops. Every
  worker's result is the decode of the same bytes, so replicas stay bit-identical; with a lossy
  wire codec (fp16, 4-bit) the partial sums are re-encoded at every hop, as on a real ring.
- `ring_allgather`: every worker's payload travels p-1 hops around the ring.
- `tree_broadcast`: a binomial tree from the root, ceil(log2 p) hops.
- `pair_exchange`: two workers swap payloads in one (full-duplex) hop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lowcomm.compress import Codec
from lowcomm.core import Layout, Payload, deserialize, serialize, torch_generator
from lowcomm.cost.ledger import CollectiveEvent, CommEvent, Ledger, worker_name

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
    if codec.stateful:
        raise ValueError(f"codec {codec.name!r} keeps state; a ring all-reduce re-encodes "
                         "partial sums at every hop and needs a stateless codec")
    ring = _check_group(vectors, "an all-reduce")
    p = len(ring)
    sizes = {tuple(v.shape) for v in vectors.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"all-reduce vectors must be [n] tensors of one length; got {sizes}")
    n = next(iter(sizes))[0]
    if n < p:
        raise ValueError(f"all-reduce of {n} values over {p} workers: need at least one value "
                         "per worker (use an all-gather for tiny messages)")
    acc = {w: [c.clone() for c in torch.tensor_split(vectors[w].detach().to(torch.float32), p)]
           for w in ring}  # [p] chunks per worker: its running partial sums
    layouts = [Layout.from_shapes({"chunk": (c.numel(),)}) for c in acc[ring[0]]]

    def encode(w: int, hop: int, chunk: int, values: torch.Tensor) -> Payload:
        generator = torch_generator(seed, round=round, client=w,
                                    purpose=f"allreduce:{channel}:{hop}")
        return codec.encode(values, codec.init(layouts[chunk]), generator)[0]

    hop_nbytes = []
    for hop in range(p - 1):  # reduce-scatter
        biggest = 0
        outgoing = [(i, (i - hop) % p) for i in range(p)]
        sent = [(i, c, encode(ring[i], hop, c, acc[ring[i]][c])) for i, c in outgoing]
        for i, c, payload in sent:
            dst = ring[(i + 1) % p]
            received, nbytes = transport.send(payload, ring[i], dst, round=round,
                                              channel=channel, codec=codec.name)
            acc[dst][c] += codec.decode(received, layouts[c])  # fp32 accumulation
            biggest = max(biggest, nbytes)
        hop_nbytes.append(biggest)
    owned = {}  # chunk -> the encoded mean, encoded once by the worker that holds its full sum
    for i in range(p):
        c = (i + 1) % p
        owned[c] = (i, encode(ring[i], p - 1, c, acc[ring[i]][c] / p))
    for hop in range(p - 1):  # all-gather: forward the encoded chunks unchanged
        biggest = 0
        for i in range(p):
            c = (i + 1 - hop) % p
            _, nbytes = transport.send(owned[c][1], ring[i], ring[(i + 1) % p], round=round,
                                       channel=channel, codec=codec.name)
            biggest = max(biggest, nbytes)
        hop_nbytes.append(biggest)
    transport.collective(round=round, channel=channel, kind="allreduce", participants=ring,
                         hop_nbytes=hop_nbytes, ready_round=ready_round)
    return torch.cat([codec.decode(owned[c][1], layouts[c]) for c in range(p)])


def ring_allgather(transport: PeerTransport, payloads: dict[int, Payload], *, round: int,
                   channel: str, ready_round: int, codec: str = "payload"
                   ) -> tuple[Payload, ...]:
    """Every worker's payload, in worker order, as every participant receives it."""
    ring = _check_group(payloads, "an all-gather")
    p = len(ring)
    held = {i: payloads[ring[i]] for i in range(p)}  # origin index -> the payload as last held
    hop_nbytes = []
    for hop in range(p - 1):
        biggest = 0
        for i in range(p):
            origin = (i - hop) % p
            held[origin], nbytes = transport.send(held[origin], ring[i], ring[(i + 1) % p],
                                                  round=round, channel=channel, codec=codec)
            biggest = max(biggest, nbytes)
        hop_nbytes.append(biggest)
    transport.collective(round=round, channel=channel, kind="allgather", participants=ring,
                         hop_nbytes=hop_nbytes, ready_round=ready_round)
    return tuple(held[i] for i in range(p))


def tree_broadcast(transport: PeerTransport, payload: Payload, *, root: int,
                   participants: Sequence[int], round: int, channel: str, ready_round: int,
                   codec: str = "payload") -> Payload:
    """`payload` from `root` to every participant over a binomial tree; what they receive."""
    others = sorted(set(participants) - {root})
    if root not in participants or not others:
        raise ValueError(f"a broadcast needs its root {root} and at least one other "
                         f"participant; got {sorted(participants)}")
    order = [root, *others]
    holding = {0: payload}
    hop_nbytes = []
    span = 1
    while span < len(order):
        biggest = 0
        for i in range(span):
            if i + span < len(order):
                holding[i + span], nbytes = transport.send(
                    holding[i], order[i], order[i + span], round=round, channel=channel,
                    codec=codec)
                biggest = max(biggest, nbytes)
        hop_nbytes.append(biggest)
        span *= 2
    transport.collective(round=round, channel=channel, kind="broadcast", participants=order,
                         hop_nbytes=hop_nbytes, ready_round=ready_round)
    return holding[len(order) - 1]


def pair_exchange(transport: PeerTransport, a: int, payload_a: Payload, b: int,
                  payload_b: Payload, *, round: int, channel: str, ready_round: int,
                  codec: str = "payload") -> tuple[Payload, Payload]:
    """Swap payloads between workers a and b: (what a receives, what b receives)."""
    if a == b:
        raise ValueError(f"a worker cannot exchange with itself; got a = b = {a}")
    at_b, n_ab = transport.send(payload_a, a, b, round=round, channel=channel, codec=codec)
    at_a, n_ba = transport.send(payload_b, b, a, round=round, channel=channel, codec=codec)
    transport.collective(round=round, channel=channel, kind="exchange", participants=(a, b),
                         hop_nbytes=(max(n_ab, n_ba),), ready_round=ready_round)
    return at_a, at_b
