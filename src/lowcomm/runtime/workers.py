"""The in-process simulator of data-centre training: p workers stepping in lockstep.

Per global inner step t = 1..T: deliver to each worker the collective results due before step t
(in posting order), run every worker's `step` on a minibatch of its own shard (drawn from the
stream `(seed, t, w, "batch")`; the worker's own stream is `(seed, t, w, "worker-step")`), record
its counted FLOPs, then resolve the posted collectives among the workers as real serialized bytes
(`lowcomm.runtime.collectives`) and queue each result for step `t + 1 + delay_steps`. After the
last step, results still in flight are delivered (the run waits for its communication), so the
final models include them. Every `eval_every` steps the served models are evaluated on the
held-out set and hashed. The same seed gives identical parameters and an identical ledger.

With a `membership` (`lowcomm.runtime.membership`), workers join and leave between outer steps
(`lowcomm.runtime.elastic`): only the live workers step and take part in collectives, a joiner
receives the current shared state over a measured `join-state` broadcast, and every record
hashes the live replicas.

With a `CheckpointPolicy`, a checkpoint is written at the end of every k-th step and the last:
the live workers' states, the inbox of collective results still in flight (due before later
steps), the records, the open record window (ledger position and losses) and the ledger. With
`resume` (a loaded `Checkpoint` of a run with the same `training_options`), the run continues
after that step and ends with the same models (bit for bit), ledger and records (but their
measured `simulator_seconds`) as the uninterrupted run. Every random stream is derived from
`(seed, step, worker, purpose)`, so the seed is the whole RNG state.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from lowcomm.algorithms.replicated import (
    AllReduce,
    Broadcast,
    Received,
    ReplicatedAlgorithm,
    param_hash,
)
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import Ledger
from lowcomm.models import ModelFn
from lowcomm.runtime.checkpoint import (
    Checkpoint,
    CheckpointPolicy,
    check_options,
    restore,
    round_checkpoint,
    save_round,
)
from lowcomm.runtime.collectives import PeerTransport, WireTap, run_lockstep
from lowcomm.runtime.elastic import (
    Boundary,
    boundary,
    check_membership,
    join_post,
    joined_state,
    static_membership,
)
from lowcomm.runtime.evaluate import Evaluation, evaluate
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

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class WorkerData:
    """`sample(worker, generator) -> (x, y)`: one minibatch from the worker's own shard;
    `val_x, val_y`: the held-out set; `input_shape`: one sample's shape (for FLOP counting)."""

    sample: Callable[[int, torch.Generator], Batch]
    val_x: torch.Tensor
    val_y: torch.Tensor
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class TrainingSettings:
    steps: int  # T, global inner steps
    workers: int
    seed: int = 0
    eval_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "workers", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


@dataclass(frozen=True)
class StepRecord:
    step: int
    train_loss: float  # mean minibatch loss over live workers and steps since the last record
    val_loss: float | None  # the lowest-id live worker's served model on the held-out set
    val_accuracy: float | None
    replicas_identical: bool  # every live worker's served model has the same hash
    replica_spread: float  # max_w ||model_w - model_first||_2 over the live workers
    bytes_sent: int  # measured, all workers, since the last record
    flops: int  # counted, all workers, since the last record
    simulator_seconds: float  # measured wall-clock of this process since the last record


@dataclass(frozen=True)
class TrainingResult:
    models: tuple[torch.Tensor, ...]  # [d] each live worker's final served model
    states: tuple[Any, ...]
    ledger: Ledger
    records: tuple[StepRecord, ...]
    initial_val_loss: float
    workers: tuple[int, ...] = ()  # the ids of `models`: the workers live at the end


def train_workers(algorithm: ReplicatedAlgorithm, data: WorkerData, model: ModelFn,
                  params: torch.Tensor, flops: FlopCounter, settings: TrainingSettings, *,
                  on_record: Callable[[StepRecord], None] | None = None,
                  on_step: Callable[[int], None] | None = None, tap: WireTap | None = None,
                  ledger: Ledger | None = None, membership: Membership | None = None,
                  checkpoint: CheckpointPolicy | None = None, resume: Checkpoint | None = None
                  ) -> TrainingResult:
    """Run `settings.steps` inner steps of `algorithm` on `settings.workers` workers (or, with
    `membership`, on the workers it makes live in each step; `data` then needs a shard for
    each of its `total_ids` workers). `checkpoint` writes checkpoints; `resume` continues from
    one (its records are not passed to `on_record` again)."""
    p, seed = settings.workers, settings.seed
    membership = membership or static_membership(algorithm, p, settings.steps)
    check_membership(algorithm, membership, workers=p, steps=settings.steps)
    ledger = Ledger() if ledger is None else ledger
    if len(ledger):
        raise ValueError(f"ledger must start empty; it holds {len(ledger)} events")
    transport = PeerTransport(ledger, tap=tap)
    options = training_options(algorithm, params, settings, membership, checkpoint)
    if resume is None:
        live = membership.live_at(0)
        states = {w: algorithm.init(params, w, p) for w in live}
        inbox = Inbox()
    else:
        check_options(resume, options)
        restore(resume, ledger=ledger, store=None)
        live, states, inbox = (resume.state[k] for k in ("live", "states", "inbox"))

    def deliver(t: int, ctx_step: int) -> None:
        for w, received in inbox.take(t):
            states[w] = algorithm.receive(states[w], received,
                                          step_context(seed, ctx_step, w, len(live)))

    if resume is None:
        initial = evaluate(model, algorithm.model(states[live[0]]), data.val_x, data.val_y)
        records: list[StepRecord] = []
        window, first = Window(), 1
    else:
        initial, records, first = resume.initial, list(resume.records), resume.next_round
        window = Window(resume.state["window_start_event"])
        window.losses = list(resume.state["window_losses"])
    for t in range(first, settings.steps + 1):
        deliver(t, t)
        posts = {}
        for w in live:
            out = algorithm.step(states[w], data.sample(w, batch_generator(seed, t, w)),
                                 step_context(seed, t, w, len(live)))
            states[w] = out.state
            ledger.extend(compute_events(flops, data.input_shape, t, w, out))
            posts[w] = out.posts
            window.losses.append(out.loss)
        for ready, w, received in resolve(transport, posts, t, seed):
            inbox.put(ready, w, received)
        deliver(t + 1, t + 1)  # due before step t+1: nothing happens in between, so apply now
        change = boundary(membership, t)
        if change is not None:
            live = _change_membership(algorithm, params, transport, states, inbox, change, seed)
        if on_step is not None:
            on_step(t)
        if t % settings.eval_every == 0 or t == settings.steps:
            if t == settings.steps:
                for pending in inbox.pending():  # the run waits for what is still in flight
                    deliver(pending, settings.steps + 1)
            served = [algorithm.model(states[w]) for w in live]
            totals = ledger.totals(start=window.start_event)
            record = window.close(t, losses=window.losses, bytes_sent=totals.bytes_total,
                                  flops=totals.flops,
                                  evaluation=evaluate(model, served[0], data.val_x, data.val_y),
                                  hashes=[param_hash(m) for m in served], served=served.copy)
            window = Window(len(ledger))
            records.append(record)
            if on_record is not None:
                on_record(record)
        if checkpoint is not None:  # a step boundary: states, and what is in flight, saved
            save_round(checkpoint, t, partial(
                round_checkpoint, t + 1,
                {"live": live, "states": states, "inbox": inbox,
                 "window_start_event": window.start_event, "window_losses": window.losses},
                store=None, ledger=ledger, records=records, initial=initial, options=options,
                seed=seed), last=t == settings.steps)
    return TrainingResult(tuple(algorithm.model(states[w]) for w in live),
                          tuple(states[w] for w in live), ledger, tuple(records), initial.loss,
                          live)


def training_options(algorithm: ReplicatedAlgorithm, params: torch.Tensor,
                     settings: TrainingSettings, membership: Membership,
                     policy: CheckpointPolicy | None = None) -> dict[str, Any]:
    """What determines a training run's result, for the checkpoint check: the settings, the
    algorithm and its hyperparameters, a SHA-256 of the initial parameters, the membership and
    the policy's own `options` (e.g. the command-line config, which names the data)."""
    return {**(dict(policy.options) if policy is not None else {}),
            "settings": dataclasses.asdict(settings), "algorithm": algorithm.name,
            "hyperparams": algorithm.hyperparams, "initial_params_sha256": param_hash(params),
            "membership": dataclasses.asdict(membership)}


def _change_membership(algorithm: ReplicatedAlgorithm, params: torch.Tensor,
                       transport: PeerTransport, states: dict[int, Any], inbox: Inbox,
                       change: Boundary, seed: int) -> tuple[int, ...]:
    """Apply the boundary (`lowcomm.runtime.elastic`) to `states`; the new live workers."""
    if inbox.pending():
        raise ValueError(f"membership changes after step {change.step}, but collective "
                         f"results due before steps {inbox.pending()} are still in flight")
    if change.joiners:
        posts = {w: (join_post(algorithm, states.get(w), w, change),) for w in change.group}
        for _, w, received in resolve(transport, posts, change.step, seed):
            if w != change.root:
                states[w] = joined_state(algorithm, params, w, change, received)
    for w in change.leavers:
        del states[w]
    return change.after


class Window:
    """What accumulates between two records: the ledger position, the wall-clock start and the
    minibatch losses in (step, worker) order."""

    def __init__(self, start_event: int = 0) -> None:
        self.start_event = start_event
        self.started = time.perf_counter()
        self.losses: list[float] = []

    def close(self, t: int, *, losses: list[float], bytes_sent: int, flops: int,
              evaluation: Evaluation, hashes: list[str],
              served: Callable[[], list[torch.Tensor]]) -> StepRecord:
        """The record of step t; `served()` (every worker's served model, in worker order) is
        only called when the hashes differ (identical replicas are 0 apart)."""
        identical = len(set(hashes)) == 1
        spread = 0.0
        if not identical:
            models = served()
            spread = max(float(torch.linalg.vector_norm(m - models[0])) for m in models)
        return StepRecord(t, sum(losses) / len(losses), evaluation.loss, evaluation.accuracy,
                          identical, spread, bytes_sent, flops,
                          time.perf_counter() - self.started)


def resolve(transport: PeerTransport, posts: dict[int, tuple], t: int, seed: int
            ) -> list[tuple[int, int, Received]]:
    """Run the collectives the workers posted at step t; (ready step, worker, result) each.

    Collectives run in the order they were first posted (worker 0's posts first, then worker
    1's new ones, ...). On real processes each worker runs its collectives in its own posting
    order and a collective runs when all its members reach it, so the orders in which the
    workers post must not contradict each other (they would deadlock); this is checked here.
    Each worker receives its results in the order it posted them."""
    live = tuple(sorted(posts))
    groups: dict[tuple, dict[int, Any]] = defaultdict(dict)
    for w, worker_posts in posts.items():
        for post in worker_posts:
            key = plan(post, w, live, t).key
            if w in groups[key]:
                raise ValueError(f"worker {w} posted {key[0]} {post.channel!r} twice at step {t}")
            groups[key][w] = post
    _check_acyclic({w: [plan(post, w, live, t).key for post in worker_posts]
                    for w, worker_posts in posts.items()}, t)
    results: dict[tuple, tuple[int, dict[int, Any]]] = {}
    for key, by_worker in groups.items():
        kind, channel, members = key
        missing = sorted(set(members) - set(by_worker))
        if missing:
            raise ValueError(f"step {t}: workers {sorted(by_worker)} posted {kind} {channel!r} "
                             f"for group {list(members)} but workers {missing} did not")
        delays = {post.delay_steps for post in by_worker.values()}
        if len(delays) != 1:
            raise ValueError(f"step {t}: {kind} {channel!r} has mixed delay_steps {delays}")
        first = by_worker[members[0]]
        planned = plan(first, members[0], live, t)
        _check_agreement(kind, channel, by_worker, t)
        results[key] = planned.ready, _run(transport, planned, by_worker, t, seed)
    out = []  # each worker receives its results in the order it posted them
    for w, worker_posts in posts.items():
        for post in worker_posts:
            ready, values = results[plan(post, w, live, t).key]
            out.append((ready, w, Received(post.channel, t, values[w])))
    return out


def _check_acyclic(keys: dict[int, list[tuple]], t: int) -> None:
    """Refuse posting orders with a cycle (worker a posts X before Y, b posts Y before X, ...):
    real processes that each run their collectives in posting order would wait forever."""
    after: dict[tuple, set[tuple]] = defaultdict(set)
    for worker_keys in keys.values():
        shared = [k for k in worker_keys if len(k[2]) > 1]  # a group of one waits for nobody
        for a, b in itertools.pairwise(shared):
            after[a].add(b)
    indegree = defaultdict(int, {k: 0 for ks in keys.values() for k in ks})
    for successors in after.values():
        for b in successors:
            indegree[b] += 1
    ready = [k for k, n in indegree.items() if n == 0]
    while ready:
        for b in after.pop(ready.pop(), ()):
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    if after:
        cycle = sorted(f"{k[0]} {k[1]!r}" for k in after)
        raise ValueError(f"step {t}: the workers post collectives {cycle} in orders that "
                         "contradict each other; real processes would deadlock")


def _check_agreement(kind: str, channel: str, by_worker: dict[int, Any], t: int) -> None:
    if kind == AllReduce.__name__:
        codecs = {post.codec.name for post in by_worker.values()}
        if len(codecs) != 1:
            raise ValueError(f"step {t}: all-reduce {channel!r} mixes codecs {sorted(codecs)}")
    if kind == Broadcast.__name__:
        roots = {post.root for post in by_worker.values()}
        holders = [w for w, post in by_worker.items() if post.payload is not None]
        if len(roots) != 1 or holders != [next(iter(roots))]:
            raise ValueError(f"step {t}: broadcast {channel!r} needs one root holding the "
                             f"payload; roots {sorted(roots)}, holders {holders}")


def _run(transport: PeerTransport, planned: Planned, by_worker: dict[int, Any], t: int,
         seed: int) -> dict[int, Any]:
    if len(planned.order) == 1:  # a group of one: nothing crosses a link
        (w, post), = by_worker.items()
        return {w: local_result(post)}
    programs = {w: program(post, planned, w, t=t, seed=seed) for w, post in by_worker.items()}
    return run_lockstep(transport, programs, order=planned.order, kind=planned.kind, round=t,
                        channel=planned.channel, codec=planned.codec,
                        ready_round=planned.ready)
