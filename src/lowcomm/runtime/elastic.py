"""Elastic membership in the runtimes of replicated algorithms: who is live in a step, what
happens at a boundary, and the join transfer, alike for `train_workers` and `train_rank`.

A `Membership` (`lowcomm.runtime.membership`) changes the live workers only at outer-step
boundaries. Global step t (1-based) is taken by `membership.live_at(t - 1)`; the boundary
*after* step t (membership step t) happens once step t's collectives have been delivered:

- the run refuses to change membership while a collective result is still in flight;
- every joiner is initialised from the common initial model (`algorithm.init`) and then
  receives the `root`'s `algorithm.shared(state)` (the global model and the outer optimizer's
  state) through a binomial-tree broadcast on channel `join-state` among the root and the
  joiners: real serialized bytes, recorded in the ledger at round t like any collective;
  it `adopt`s them;
- the root is the lowest-id worker that stays (a leaver only if every worker leaves);
- a leaver takes no further step; the all-reduces of later steps average over the live
  workers only (the ring is the live workers in id order).

Only algorithms that declare `shared` and `adopt` (replicas identical after every sync: DDP,
DiLoCo, Local SGD) accept a schedule with events; the others are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lowcomm.algorithms.replicated import Broadcast, Received, ReplicatedAlgorithm
from lowcomm.core import Payload
from lowcomm.runtime.membership import Membership, parse_membership

JOIN_CHANNEL = "join-state"


@dataclass(frozen=True)
class Boundary:
    """The membership change after global step `step`."""

    step: int
    before: tuple[int, ...]  # live during step `step`
    after: tuple[int, ...]  # live from step `step + 1`
    root: int  # who sends the joiners the shared state
    joiners: tuple[int, ...]
    leavers: tuple[int, ...]

    @property
    def group(self) -> tuple[int, ...]:
        """The members of the join transfer: the root, then the joiners (ids ascending)."""
        return (self.root, *self.joiners)


def static_membership(algorithm: ReplicatedAlgorithm, workers: int, steps: int) -> Membership:
    """The membership of a run without a schedule: workers 0..p-1 throughout, its boundaries
    the algorithm's syncs (every `inner_steps`, else every step)."""
    return parse_membership(None, initial_workers=workers, steps=steps,
                            inner_steps=algorithm.hyperparams.get("inner_steps", 1))


def check_membership(algorithm: ReplicatedAlgorithm, membership: Membership, *, workers: int,
                     steps: int) -> None:
    """Refuse a membership that does not fit the run or an algorithm that cannot change it."""
    if membership.initial_workers != workers or membership.steps != steps:
        raise ValueError(f"membership is for {membership.initial_workers} initial workers and "
                         f"{membership.steps} steps; the run has workers={workers}, "
                         f"steps={steps}")
    for t in range(1, steps + 1):
        algorithm.check_workers(len(membership.live_at(t - 1)))
    if not membership.events:
        return
    if not algorithm.elastic:
        raise ValueError(f"{algorithm.name} does not support elastic membership: its replicas "
                         "do not hold one identical state after a sync, so a joiner has no "
                         "state to receive (elastic: ddp, diloco, localsgd)")
    h = algorithm.hyperparams.get("inner_steps", 1)
    if membership.inner_steps % h:
        raise ValueError(f"membership boundaries every {membership.inner_steps} steps are not "
                         f"sync points of {algorithm.name}, which syncs every inner_steps={h}")


def boundary(membership: Membership, step: int) -> Boundary | None:
    """The change after global step `step` (1-based), or None."""
    if not 0 < step < membership.steps or not membership.changes_at(step):
        return None
    before, after = membership.live_at(step - 1), membership.live_at(step)
    stayers = [w for w in before if w in after]
    root = stayers[0] if stayers else before[0]
    return Boundary(step, before, after, root, tuple(w for w in after if w not in before),
                    tuple(w for w in before if w not in after))


def join_post(algorithm: ReplicatedAlgorithm, state: Any, w: int, b: Boundary) -> Broadcast:
    """Worker w's part of the join transfer: the root posts its shared state, joiners (whose
    `state` is None) post None."""
    return Broadcast(JOIN_CHANNEL, algorithm.shared(state) if w == b.root else None,
                     root=b.root)


def joined_state(algorithm: ReplicatedAlgorithm, params: Any, w: int, b: Boundary,
                 received: Received) -> Any:
    """A joiner's state: initialised from the common initial model, then adopting the state
    it received."""
    value = received.value
    if received.channel != JOIN_CHANNEL or not isinstance(value, Payload):
        raise ValueError(f"worker {w} expected the join state at step {b.step}; got "
                         f"{received.channel!r}")
    return algorithm.adopt(algorithm.init(params, w, len(b.after)), value)
