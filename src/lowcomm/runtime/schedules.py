"""The collectives as per-member programs: the one implementation of their chunking, wire
encoding, float32 accumulation and hop schedule.

The in-process simulator drives the programs of every member in lockstep
(`lowcomm.runtime.collectives`); the torch.distributed runtime drives one member's program per
process (`lowcomm.runtime.distributed`). Both move each payload as real serialized bytes, so the
transfers, their sizes and the results are the same by construction.

A program is a generator for one member of one collective. At every hop it yields a `Hop`: the
payloads it sends, to whom, and the members it receives from; it is resumed with what arrived
(`{src: Payload}`, each the `deserialize` of the bytes that crossed the link) and finally returns
the member's result. Every member of a collective yields the same number of hops (a hop may be
empty for some), so hop h lines up across members and its largest transfer paces it
(`CollectiveEvent.hop_nbytes[h]`).

- ring all-reduce (Patarasuk & Yuan 2009): the vector is cut into p chunks; in each of p-1
  reduce-scatter hops member i sends its running sum of chunk (i - h) mod p, encoded by the wire
  codec, to member i+1, which decodes it and adds it in float32; member i then owns chunk
  (i + 1) mod p, divides it by p and encodes it once; in p-1 all-gather hops the encoded chunks
  are forwarded unchanged. Every member's result is the decode of the same bytes, so replicas
  stay bit-identical; a lossy codec re-encodes the partial sums at every hop, as on a real ring.
  The encoder of member w at hop h draws from the stream `(seed, round, w,
  "allreduce:<channel>:<h>")`.
- ring all-gather: every member's payload travels p-1 hops around the ring.
- binomial-tree broadcast from the first member of `order`: ceil(log2 p) hops.
- pair exchange: the two members swap payloads in one full-duplex hop.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lowcomm.compress import Codec
from lowcomm.core import Layout, Payload, torch_generator


@dataclass(frozen=True)
class Hop:
    """One member's part of one hop: `(destination, payload)` sends and the sources it awaits."""

    sends: tuple[tuple[int, Payload], ...] = ()
    receives: tuple[int, ...] = ()


Program = Generator[Hop, dict[int, Payload], Any]


def check_members(members: Sequence[int], me: int, what: str) -> int:
    """`me`'s position among `members` (at least two, distinct)."""
    if len(members) < 2:
        raise ValueError(f"{what} needs at least 2 workers; got {sorted(members)}")
    if len(set(members)) != len(members) or me not in members:
        raise ValueError(f"{what}: worker {me} is not one of the distinct members {members}")
    return list(members).index(me)


def allreduce_hops(p: int) -> int:
    return 2 * (p - 1)


def ring_allreduce_program(vector: torch.Tensor, codec: Codec, *, ring: Sequence[int], me: int,
                           round: int, channel: str, seed: int = 0) -> Program:
    """Member `me`'s part of the mean of the members' `[n]` vectors (module docstring)."""
    if codec.stateful:
        raise ValueError(f"codec {codec.name!r} keeps state; a ring all-reduce re-encodes "
                         "partial sums at every hop and needs a stateless codec")
    i = check_members(ring, me, "an all-reduce")
    p = len(ring)
    if vector.dim() != 1:
        raise ValueError(f"all-reduce vectors must be [n] tensors; got shape "
                         f"{tuple(vector.shape)}")
    if vector.numel() < p:
        raise ValueError(f"all-reduce of {vector.numel()} values over {p} workers: need at "
                         "least one value per worker (use an all-gather for tiny messages)")
    # [p] chunks: this member's running partial sums
    acc = [c.clone() for c in torch.tensor_split(vector.detach().to(torch.float32), p)]
    layouts = [Layout.from_shapes({"chunk": (c.numel(),)}) for c in acc]
    nxt, prv = ring[(i + 1) % p], ring[(i - 1) % p]

    def encode(hop: int, chunk: int, values: torch.Tensor) -> Payload:
        generator = torch_generator(seed, round=round, client=me,
                                    purpose=f"allreduce:{channel}:{hop}")
        return codec.encode(values, codec.init(layouts[chunk]), generator)[0]

    def program() -> Program:
        for hop in range(p - 1):  # reduce-scatter
            out, into = (i - hop) % p, (i - 1 - hop) % p
            got = yield Hop(((nxt, encode(hop, out, acc[out])),), (prv,))
            acc[into] += codec.decode(got[prv], layouts[into])  # fp32 accumulation
        final: list[Payload | None] = [None] * p  # chunk -> the encoded mean
        owned = (i + 1) % p
        final[owned] = encode(p - 1, owned, acc[owned] / p)
        for hop in range(p - 1):  # all-gather: forward the encoded chunks unchanged
            out, into = (i + 1 - hop) % p, (i - hop) % p
            got = yield Hop(((nxt, final[out]),), (prv,))
            final[into] = got[prv]
        return torch.cat([codec.decode(final[c], layouts[c]) for c in range(p)])

    return program()


def ring_allgather_program(payload: Payload, *, ring: Sequence[int], me: int) -> Program:
    """Every member's payload, in ring order, as member `me` receives them."""
    i = check_members(ring, me, "an all-gather")
    p = len(ring)
    nxt, prv = ring[(i + 1) % p], ring[(i - 1) % p]

    def program() -> Program:
        held = {i: payload}  # origin index -> the payload as this member holds it
        for hop in range(p - 1):
            out, into = (i - hop) % p, (i - 1 - hop) % p
            got = yield Hop(((nxt, held[out]),), (prv,))
            held[into] = got[prv]
        return tuple(held[k] for k in range(p))

    return program()


def tree_broadcast_program(payload: Payload | None, *, order: Sequence[int], me: int) -> Program:
    """`order[0]`'s payload over a binomial tree; only `order[0]` holds one (others: None)."""
    pos = check_members(order, me, "a broadcast")
    if (payload is None) == (pos == 0):
        raise ValueError(f"a broadcast's root {order[0]} holds the payload and nobody else "
                         f"does; worker {me} {'lacks' if pos == 0 else 'also holds'} one")
    n = len(order)

    def program() -> Program:
        value, span = payload, 1
        while span < n:
            sends = ((order[pos + span], value),) if pos < span and pos + span < n else ()
            source = (order[pos - span],) if span <= pos < 2 * span else ()
            got = yield Hop(sends, source)
            if source:
                value = got[source[0]]
            span *= 2
        return value

    return program()


def broadcast_hops(p: int) -> int:
    return math.ceil(math.log2(p))


def pair_exchange_program(payload: Payload, *, pair: Sequence[int], me: int) -> Program:
    """Member `me` sends `payload` to the other member of `pair` and returns what it sent."""
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"a worker cannot exchange with itself; got pair {tuple(pair)}")
    check_members(pair, me, "an exchange")
    other = pair[1] if me == pair[0] else pair[0]

    def program() -> Program:
        got = yield Hop(((other, payload),), (other,))
        return got[other]

    return program()
