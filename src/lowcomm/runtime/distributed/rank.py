"""One worker of a replicated algorithm per process: `train_rank` runs `train_workers`' run for
the rank its transport belongs to.

Everything a worker does is `train_workers`' (shared with it through `lowcomm.runtime.replicas`
and `lowcomm.runtime.schedules`): the same minibatch stream `(seed, t, w, "batch")` and worker
stream `(seed, t, w, "worker-step")`, the same delivery of a result before step
`t + 1 + delay_steps` (and of what is still in flight before the final evaluation), and the
same per-member program of each collective, whose payloads here cross a real gloo link as
serialized bytes. A rank runs its collectives in its own posting order; the simulator refuses
posting orders that would deadlock here.

Rank 0 gathers the records and the final ledger over control traffic
(`lowcomm.runtime.distributed.gather`).

Elastic membership (`lowcomm.runtime.elastic`): the run has one process per worker id the
membership ever uses (`total_ids`), all of which rendezvous and prove the token at the start
(`lowcomm.runtime.distributed.door`), so every link a later epoch uses belongs to the
authenticated group. A rank whose worker has not joined yet stands by (`wait_for` a flag in
the rendezvous store, which carries no data); at its boundary rank 0, the root, raises the
flag and sends it the shared state over their gloo link (`join-state`, in the ledger). A leaver
sends rank 0 its farewell (control) and its process ends; later collectives run among the live
ranks only (point-to-point links of the same group: no new process group is needed). Worker 0
cannot leave here: its rank gathers the run.

Checkpoints (`lowcomm.runtime.distributed.checkpoint`, static membership only): at every due
step each rank saves, in the one checkpoint format, its worker state, its `RankLog` so far, its
`Inbox` of results in flight and its open record window; rank 0's file (`last.ckpt`) also holds
the records and the initial evaluation, and is written last (the star runtime's two-phase
commit). A resumed run restores every rank's part and ends with the uninterrupted run's models
and merged ledger; `first_step` says which steps this process ran (its wire counters cover
those only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from lowcomm.algorithms.replicated import Received, ReplicatedAlgorithm
from lowcomm.core import Payload, serialize
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import CommEvent, Ledger, worker_name
from lowcomm.models import ModelFn
from lowcomm.runtime.checkpoint import Checkpoint, CheckpointPolicy, check_options, round_checkpoint
from lowcomm.runtime.distributed import checkpoint as rank_checkpoint
from lowcomm.runtime.distributed.gather import (
    final_payload,
    finish,
    gather_record,
    to_rank0,
    window_summary,
)
from lowcomm.runtime.distributed.merge import CollectiveLog, RankLog
from lowcomm.runtime.distributed.transport import RankTransport, WireCounts, wire_tag
from lowcomm.runtime.distributed.vanish import (
    check_unannounced,
    roll_call,
    ship_log,
    vanished_logs,
    with_leaves,
)
from lowcomm.runtime.elastic import (
    Boundary,
    boundary,
    check_membership,
    join_post,
    joined_state,
    static_membership,
)
from lowcomm.runtime.evaluate import evaluate
from lowcomm.runtime.membership import Membership
from lowcomm.runtime.replicas import (
    Inbox,
    Planned,
    batch_generator,
    compute_events,
    local_result,
    plan,
    program,
    step_context,
)
from lowcomm.runtime.schedules import Program
from lowcomm.runtime.workers import StepRecord, TrainingResult, TrainingSettings, Window, WorkerData


@dataclass(frozen=True)
class RankResult:
    """What one rank ends with. `run` (rank 0 only) is the whole run as `train_workers` returns
    it: every rank's final served model, the merged ledger and the records (its `states` are
    empty: each rank keeps its own, `state`). `wire` is every rank's transport counters on rank
    0 and this rank's elsewhere. `step_seconds` and `comm_seconds` are this rank's measured
    wall-clock per step and the part of it spent in collectives (measurements, not costs)."""

    rank: int
    world_size: int
    model: torch.Tensor  # [d] this rank's final served model
    state: Any
    run: TrainingResult | None
    wire: tuple[WireCounts, ...]
    step_seconds: tuple[float, ...]
    comm_seconds: tuple[float, ...]
    membership: Membership | None = None  # the effective one (with unannounced leaves)
    first_step: int = 1  # a resumed run's: the steps before it, and their traffic, were restored


def train_rank(algorithm: ReplicatedAlgorithm, data: WorkerData, model: ModelFn,
               params: torch.Tensor, flops: FlopCounter, settings: TrainingSettings,
               transport: RankTransport, *, on_record: Callable[[StepRecord], None] | None = None,
               on_step: Callable[[int], None] | None = None,
               membership: Membership | None = None,
               unannounced_leaves: bool = False, checkpoint: CheckpointPolicy | None = None,
               resume: Checkpoint | None = None) -> RankResult:
    """Run this rank's worker for `settings.steps` steps (module docstring); with
    `unannounced_leaves`, survive workers that end without notice between outer steps
    (`lowcomm.runtime.distributed.vanish`). `checkpoint` makes every rank write its part at
    the due steps, and `resume` is this rank's part to continue from (`resume_rank`)."""
    me, world, seed, steps = transport.rank, transport.world_size, settings.seed, settings.steps
    options = None
    if checkpoint is not None or resume is not None:
        options = rank_checkpoint.train_options(algorithm, params, settings, membership,
                                                checkpoint, world_size=world,
                                                unannounced_leaves=unannounced_leaves)
    policy = rank_checkpoint.rank_policy(checkpoint, me)
    membership = membership or static_membership(algorithm, settings.workers, steps)
    check_membership(algorithm, membership, workers=settings.workers, steps=steps)
    check_processes(membership, world)
    if unannounced_leaves:
        check_unannounced(membership, eval_every=settings.eval_every, steps=steps)
    h = membership.inner_steps
    shipped, logs_at_rank0, vanished = (0, 0), {}, set()  # unannounced leaves
    log, inbox = RankLog(me), Inbox()
    live = membership.live_at(0)
    state = algorithm.init(params, me, len(live)) if me in live else None

    def deliver(t: int, ctx_step: int) -> None:
        nonlocal state
        for _, received in inbox.take(t):
            state = algorithm.receive(state, received,
                                      step_context(seed, ctx_step, me, len(live)))

    initial = None
    records: list[StepRecord] = []
    window, window_start, window_first, first = Window(), (0, 0), 1, 1
    if resume is not None:
        check_options(resume, options)
        saved, initial, records, first = (resume.state, resume.initial, list(resume.records),
                                          resume.next_round)
        state, log, inbox = saved["state"], saved["log"], saved["inbox"]
        window.losses = list(saved["window_losses"])
        window_start, window_first = tuple(saved["window_start"]), saved["window_first"]
    elif me == 0:
        initial = evaluate(model, algorithm.model(state), data.val_x, data.val_y)
    departed: dict[int, Payload] = {}  # rank 0: windows of the ranks that left since a record
    farewells: dict[int, Payload] = {}  # rank 0: final payloads of the ranks that left
    step_seconds, comm_seconds = [], []
    for t in range(first, steps + 1):
        if me in live:
            started = time.perf_counter()
            deliver(t, t)
            out = algorithm.step(state, data.sample(me, batch_generator(seed, t, me)),
                                 step_context(seed, t, me, len(live)))
            state = out.state
            log.add_compute(compute_events(flops, data.input_shape, t, me, out))
            window.losses.append(out.loss)
            if unannounced_leaves and t % h == 0:  # before the sync: who is still there?
                dead = roll_call(transport, t, live)
                if dead:
                    membership = with_leaves(membership, t - h, dead)
                    live = membership.live_at(t - 1)
                    vanished.update(dead)
            comm_started = time.perf_counter()
            for ready, received in run_posts(transport, log, out.posts, t=t, seed=seed,
                                             live=live):
                inbox.put(ready, me, received)
            comm_seconds.append(time.perf_counter() - comm_started)
            deliver(t + 1, t + 1)
            step_seconds.append(time.perf_counter() - started)
        change = boundary(membership, t)
        if change is not None and (me in change.before or me in change.joiners):
            if inbox.pending():
                raise ValueError(f"membership changes after step {t}, but collective results "
                                 f"due before steps {inbox.pending()} are still in flight")
            if me in change.leavers:
                served = algorithm.model(state)
                farewell = window_summary(window, window_start, log, served).merged(
                    final_payload(log, served, transport.counts()))
                to_rank0(transport, f"farewell after step {t}", farewell, [me])
                return RankResult(me, world, served, state, None, (transport.counts(),),
                                  tuple(step_seconds), tuple(comm_seconds), membership)
            if me == 0 and change.leavers:
                got = to_rank0(transport, f"farewell after step {t}", None, change.leavers)
                departed.update(got)
                farewells.update(got)
            if change.joiners:
                state = _join(algorithm, params, transport, log, state, change, seed)
            live = change.after
        if me not in live:
            continue  # standing by until this rank's worker joins
        if on_step is not None:
            on_step(t)
        if t % settings.eval_every == 0 or t == steps:
            if t == steps:
                for pending in inbox.pending():  # the run waits for what is still in flight
                    deliver(pending, steps + 1)
            served = algorithm.model(state)
            order = [w for j in range(window_first, t + 1) for w in membership.live_at(j - 1)]
            record = gather_record(
                transport, t, window_summary(window, window_start, log, served), window=window,
                live=live, order=order, departed=departed, served=served,
                evaluate_served=lambda m: evaluate(model, m, data.val_x, data.val_y))
            window, window_start, window_first = Window(), (log.sent_nbytes, log.flops), t + 1
            departed = {}
            if unannounced_leaves and t < steps:
                shipped = ship_log(transport, t, log, shipped, live, logs_at_rank0)
            if record is not None:
                records.append(record)
                if on_record is not None:
                    on_record(record)
        if policy is not None:  # a step boundary: every rank's part, committed by rank 0
            rank_checkpoint.commit(transport, policy, t, partial(
                round_checkpoint, t + 1,
                {"state": state, "log": log, "inbox": inbox, "window_start": window_start,
                 "window_losses": window.losses, "window_first": window_first},
                store=None, ledger=Ledger(), records=records, initial=initial, options=options,
                seed=seed), last=t == steps, protocol="train")
    served = algorithm.model(state)
    run, wire = finish(transport, log, served, live=live, farewells=farewells, records=records,
                       initial=initial,
                       vanished=vanished_logs(logs_at_rank0, vanished) if me == 0 else {})
    return RankResult(me, world, served, state, run, wire, tuple(step_seconds),
                      tuple(comm_seconds), membership, first)


def check_processes(membership: Membership, world_size: int) -> None:
    """One process per worker id the membership uses; worker 0 (rank 0) never leaves."""
    if membership.total_ids != world_size:
        if not membership.events:
            raise ValueError(f"workers ({membership.initial_workers}) must equal the number of "
                             f"processes ({world_size}): one worker per process")
        raise ValueError(f"the membership uses {membership.total_ids} worker ids "
                         f"({membership.initial_workers} initial + joiners): start one "
                         f"process per id ({membership.total_ids}); got {world_size}")
    if any(kind == "leave" and w == 0 for _, kind, w in membership.events):
        raise ValueError("worker 0 cannot leave a distributed run: its rank gathers the "
                         "records and the ledger (let another worker leave)")


def _join(algorithm: ReplicatedAlgorithm, params: torch.Tensor, transport: RankTransport,
          log: RankLog, state: Any, change: Boundary, seed: int) -> Any:
    """The join transfer at `change` (root or joiner); this rank's state after it."""
    me, name = transport.rank, f"join after step {change.step}"
    if me not in change.group:
        return state
    if me == change.root:
        transport.signal(name)
    else:
        transport.wait_for(name)  # standing by: as long as it takes
    post = join_post(algorithm, state, me, change)
    ((_, received),) = run_posts(transport, log, (post,), t=change.step, seed=seed,
                                 live=change.group)
    return state if me == change.root else joined_state(algorithm, params, me, change,
                                                         received)


def run_posts(transport: RankTransport, log: RankLog, posts: tuple, *, t: int, seed: int,
              live: tuple[int, ...]) -> list[tuple[int, Received]]:
    """Run this rank's posts of step t among the `live` ranks in posting order; (ready step,
    result) for each."""
    me = transport.rank
    seen, out = set(), []
    for post in posts:
        planned = plan(post, me, live, t)
        if planned.key in seen:
            raise ValueError(f"worker {me} posted {planned.key[0]} {post.channel!r} twice at "
                             f"step {t}")
        seen.add(planned.key)
        if len(planned.order) == 1:  # a group of one: nothing crosses a link
            value = local_result(post)
        else:
            value = run_program(transport, log, program(post, planned, me, t=t, seed=seed),
                                planned, t=t)
        out.append((planned.ready, Received(post.channel, t, value)))
    return out


def run_program(transport: RankTransport, log: RankLog, member: Program, planned: Planned, *,
                t: int) -> Any:
    """Drive this rank's program of one collective over real links, logging what moved."""
    me = transport.rank
    view = CollectiveLog(me, t, planned.descriptor, planned.kind, planned.channel,
                         list(planned.order), planned.ready)
    log.collectives.append(view)
    hop, h = next(member), 0
    while True:
        sends = [(dst, serialize(payload)) for dst, payload in hop.sends]
        arrived, sent = transport.exchange(
            sends, hop.receives, tag=wire_tag(f"{planned.descriptor}|hop {h}"),
            what=f"{planned.kind} {planned.channel!r} of step {t}, hop {h}")
        for i, ((dst, _), nbytes) in enumerate(zip(sends, sent, strict=True)):
            view.sent.append((h, i, CommEvent(t, worker_name(me), worker_name(dst),
                                              planned.channel, nbytes, planned.codec)))
            log.sent_nbytes += nbytes
        view.received.extend(CommEvent(t, worker_name(src), worker_name(me), planned.channel,
                                       payload.nbytes, planned.codec)
                             for src, payload in arrived.items())
        view.hop_max_nbytes.append(max(sent, default=0))
        try:
            hop, h = member.send(arrived), h + 1
        except StopIteration as done:
            return done.value
