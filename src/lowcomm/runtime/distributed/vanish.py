"""Surviving a worker that ends without announcing it (killed between outer steps), for
`train_rank(..., unannounced_leaves=True)`.

A rank whose process has ended closes its gloo links: posting on them fails at once
(`PeerClosedError`), unlike a slow peer, which times out. With `unannounced_leaves`:

- after every boundary's record each live rank ships rank 0 its `RankLog` since the last
  boundary and its transport counters (control traffic), so what a rank did up to the boundary
  survives it;
- before every sync (each step `t` that is a multiple of `membership.inner_steps`, before the
  step's collectives) the live ranks answer rank 0's roll call; a rank whose link is closed is
  dropped, and rank 0 tells the others. The run goes on as if the rank had left at the previous
  boundary `t - inner_steps` (its compute since then is lost with it, and its contribution to
  the sync is absent): the effective membership gains `(t - inner_steps, "leave", rank)`, and
  `train_workers` with that membership gives the same ledger.

This needs a record at every boundary (`eval_every == inner_steps`) and a run that ends on a
boundary. A rank that ends during a boundary (its sync, record or roll call) or before the first
outer step, and rank 0 itself, are not survived: the run fails with `PeerLostError`.
"""

from __future__ import annotations

import numpy as np

from lowcomm.core import Payload
from lowcomm.runtime.distributed.gather import WIRE_FIELDS, from_rank0, to_rank0
from lowcomm.runtime.distributed.merge import RankLog, log_from_payload
from lowcomm.runtime.distributed.transport import (
    PeerClosedError,
    PeerLostError,
    RankTransport,
    WireCounts,
)
from lowcomm.runtime.membership import Membership


def check_unannounced(membership: Membership, *, eval_every: int, steps: int) -> None:
    h = membership.inner_steps
    if eval_every != h or steps % h:
        raise ValueError(f"unannounced leaves need a record at every boundary and a run that "
                         f"ends on one: eval_every ({eval_every}) must equal inner_steps ({h}) "
                         f"and steps ({steps}) be a multiple of it")


def roll_call(transport: RankTransport, t: int, live: tuple[int, ...]) -> tuple[int, ...]:
    """The live ranks whose process has ended, as rank 0 found them; every survivor learns."""
    what, dead = f"roll call of step {t}", []
    if transport.rank == 0:
        for r in live[1:]:
            try:
                to_rank0(transport, what, None, [r])
            except PeerClosedError:
                dead.append(r)
    else:
        to_rank0(transport, what, Payload(alive=np.ones(1, np.uint8)), [transport.rank])
    verdict = from_rank0(transport, f"verdict of the {what}",
                         Payload(dead=np.asarray(dead, np.int64)),
                         [r for r in live if r not in dead])
    return tuple(int(r) for r in verdict["dead"])


def with_leaves(membership: Membership, step: int, dead: tuple[int, ...]) -> Membership:
    """The effective membership: `dead` leave at boundary `step`, and no later event names
    them."""
    if step <= 0:
        raise PeerLostError(f"rank(s) {list(dead)} ended before the first outer step: there is "
                            "no boundary to continue from")
    fresh = [w for kind, w in membership.changes_at(step) if kind == "join" and w in dead]
    if fresh:  # it received the join state at `step`: no leave there says what happened
        raise PeerLostError(f"rank(s) {fresh} ended in the inner phase right after joining")
    kept = [e for e in membership.events if not (e[0] > step and e[2] in dead)]
    events = [*kept, *((step, "leave", w) for w in dead)]
    events.sort(key=lambda e: e[0])  # stable: the scheduled events of `step` come first
    return Membership(membership.initial_workers, membership.inner_steps, membership.steps,
                      tuple(events))


def ship_log(transport: RankTransport, t: int, log: RankLog, shipped: tuple[int, int],
             live: tuple[int, ...], received: dict[int, list]) -> tuple[int, int]:
    """Every live rank's log since `shipped` (counts of compute events and collectives) and its
    counters at rank 0, which appends them to `received[rank]`; the new `shipped`."""
    delta = RankLog(log.rank, log.compute[shipped[0]:], log.collectives[shipped[1]:])
    counts = transport.counts()
    mine = delta.to_payload().merged(
        {"wire": np.asarray([getattr(counts, f) for f in WIRE_FIELDS], np.int64)})
    got = to_rank0(transport, f"log after step {t}", mine, live)
    for r, payload in got.items():
        received.setdefault(r, []).append(
            (log_from_payload(payload, r),
             WireCounts(**dict(zip(WIRE_FIELDS, (int(v) for v in payload["wire"]),
                                   strict=True)))))
    return len(log.compute), len(log.collectives)


def vanished_logs(received: dict[int, list], dead: set[int]
                  ) -> dict[int, tuple[RankLog, WireCounts]]:
    """Each vanished rank's log, joined from what it shipped, and its last counters."""
    out = {}
    for r in sorted(dead):
        parts = received.get(r, [])
        if not parts:
            raise PeerLostError(f"rank {r} ended before it shipped any log")
        out[r] = (RankLog(r, [e for log, _ in parts for e in log.compute],
                          [c for log, _ in parts for c in log.collectives]), parts[-1][1])
    return out

