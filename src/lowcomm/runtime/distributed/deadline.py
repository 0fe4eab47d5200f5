"""The round's deadline in the star runtime over torch.distributed, and its injected faults.

gloo cannot time out a receive and go on: a `wait(timeout)` that expires closes the pair (and, as
we measured, the other pairs of the group with it), and a send completes only once its receiver
has posted the matching receive. So the server never posts a receive that may not be answered.
With `round_timeout_seconds`, every upload is first *claimed* in the rendezvous store (an atomic
compare-and-set on a key per run, round and client): the client's rank claims `sent` just before
it sends; at the deadline the server claims `late` for every upload not yet claimed. Whoever
claims first wins, so both ends agree: a `sent` upload is received (however long it takes), a
`late` one is never sent and the server drops the client (`timeout`). A client rank that is gone
is found by the next send to it, which gloo fails at once ("connection closed by peer") without
harming the other pairs: the server drops that rank's clients (`lost`) from then on.

Faults are injected on the client ranks: `kill` ends the rank's process with SIGKILL after it
received the round's models (every client it hosts dies with it), `stall` holds the client's
upload until the server has declared it late (a real stall, without guessing a sleep), and
`corrupt` rewrites the upload's bytes as they leave (`FaultPlan.outgoing`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

from lowcomm.runtime.distributed.transport import PeerLostError, RankTransport

SENT, LATE = "sent", "late"


def _key(run: int, t: int, c: int) -> str:
    return f"star/{run}/{t}/{c}"


def late_uploads(transport: RankTransport, run: int, t: int, clients: Sequence[int], *,
                 timeout_seconds: float, poll_seconds: float = 0.005) -> set[int]:
    """The server: wait until every upload of `clients` is claimed sent, or the deadline;
    return the clients it then claimed late."""
    deadline = time.monotonic() + timeout_seconds
    waiting = list(clients)
    while waiting:
        waiting = [c for c in waiting if not transport.claimed(_key(run, t, c))]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(poll_seconds)
    return {c for c in waiting if transport.claim(_key(run, t, c), LATE) == LATE}


def may_send(transport: RankTransport, run: int, t: int, c: int) -> bool:
    """A client's rank: claim the upload sent; False if the server had declared it late."""
    return transport.claim(_key(run, t, c), SENT) == SENT


def hold_until_late(transport: RankTransport, run: int, t: int, c: int, *,
                    poll_seconds: float = 0.005) -> None:
    """A stalled client: wait until the server has declared its upload late (at most the
    transport's timeout)."""
    deadline = time.monotonic() + transport.timeout_seconds
    while not transport.claimed(_key(run, t, c)):
        if time.monotonic() >= deadline:
            raise PeerLostError(f"rank {transport.rank}: the server never declared client {c}'s "
                                f"upload of round {t} late")
        time.sleep(poll_seconds)


def die() -> None:
    """This process ends now, as a crash would end it: no cleanup, no goodbye."""
    os.kill(os.getpid(), signal.SIGKILL)
