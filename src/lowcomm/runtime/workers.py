"""The in-process simulator of data-centre training: p workers stepping in lockstep.

Per global inner step t = 1..T: deliver to each worker the collective results due before step t
(in posting order), run every worker's `step` on a minibatch of its own shard (drawn from the
stream `(seed, t, w, "batch")`; the worker's own stream is `(seed, t, w, "worker-step")`), record
its counted FLOPs, then resolve the posted collectives among the workers as real serialized bytes
(`lowcomm.runtime.collectives`) and queue each result for step `t + 1 + delay_steps`. After the
last step, results still in flight are delivered (the run waits for its communication), so the
final models include them. Every `eval_every` steps the served models are evaluated on the
held-out set and hashed. The same seed gives identical parameters and an identical ledger.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lowcomm.algorithms.replicated import (
    AllGather,
    AllReduce,
    Broadcast,
    Exchange,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    param_hash,
)
from lowcomm.core import torch_generator
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import ComputeEvent, Ledger, worker_name
from lowcomm.models import ModelFn
from lowcomm.runtime.collectives import (
    PeerTransport,
    WireTap,
    pair_exchange,
    ring_allgather,
    ring_allreduce_mean,
    tree_broadcast,
)
from lowcomm.runtime.evaluate import evaluate

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
    train_loss: float  # mean minibatch loss over workers and steps since the last record
    val_loss: float | None  # worker 0's served model on the held-out set
    val_accuracy: float | None
    replicas_identical: bool  # every worker's served model has the same hash
    replica_spread: float  # max_w ||model_w - model_0||_2
    bytes_sent: int  # measured, all workers, since the last record
    flops: int  # counted, all workers, since the last record
    simulator_seconds: float  # measured wall-clock of this process since the last record


@dataclass(frozen=True)
class TrainingResult:
    models: tuple[torch.Tensor, ...]  # [d] each worker's final served model
    states: tuple[Any, ...]
    ledger: Ledger
    records: tuple[StepRecord, ...]
    initial_val_loss: float


def train_workers(algorithm: ReplicatedAlgorithm, data: WorkerData, model: ModelFn,
                  params: torch.Tensor, flops: FlopCounter, settings: TrainingSettings, *,
                  on_record: Callable[[StepRecord], None] | None = None,
                  on_step: Callable[[int], None] | None = None, tap: WireTap | None = None,
                  ledger: Ledger | None = None) -> TrainingResult:
    """Run `settings.steps` inner steps of `algorithm` on `settings.workers` workers."""
    p, seed = settings.workers, settings.seed
    algorithm.check_workers(p)
    ledger = Ledger() if ledger is None else ledger
    if len(ledger):
        raise ValueError(f"ledger must start empty; it holds {len(ledger)} events")
    transport = PeerTransport(ledger, tap=tap)
    states = [algorithm.init(params, w, p) for w in range(p)]
    inbox: dict[int, list[tuple[int, Received]]] = defaultdict(list)  # step -> deliveries

    def context(t: int, w: int) -> StepContext:
        return StepContext(t, w, p, seed, torch_generator(seed, round=t, client=w,
                                                          purpose="worker-step"))

    def deliver(t: int, ctx_step: int) -> None:
        for w, received in inbox.pop(t, ()):
            states[w] = algorithm.receive(states[w], received, context(ctx_step, w))

    initial = evaluate(model, algorithm.model(states[0]), data.val_x, data.val_y)
    records: list[StepRecord] = []
    window = _Window(len(ledger))
    for t in range(1, settings.steps + 1):
        deliver(t, t)
        posts = {}
        for w in range(p):
            batch = data.sample(w, torch_generator(seed, round=t, client=w, purpose="batch"))
            out = algorithm.step(states[w], batch, context(t, w))
            states[w] = out.state
            _record_compute(ledger, flops, data.input_shape, t, w, out)
            posts[w] = out.posts
            window.losses.append(out.loss)
        for ready, w, received in resolve(transport, posts, t, seed):
            inbox[ready].append((w, received))
        deliver(t + 1, t + 1)  # due before step t+1: nothing happens in between, so apply now
        if on_step is not None:
            on_step(t)
        if t % settings.eval_every == 0 or t == settings.steps:
            if t == settings.steps:
                for pending in sorted(inbox):  # the run waits for what is still in flight
                    deliver(pending, settings.steps + 1)
            record = window.close(t, ledger, model, data, [algorithm.model(s) for s in states])
            records.append(record)
            if on_record is not None:
                on_record(record)
    return TrainingResult(tuple(algorithm.model(s) for s in states), tuple(states), ledger,
                          tuple(records), initial.loss)


class _Window:
    """What accumulates between two records."""

    def __init__(self, start_event: int) -> None:
        self.start_event = start_event
        self.started = time.perf_counter()
        self.losses: list[float] = []

    def close(self, t: int, ledger: Ledger, model: ModelFn, data: WorkerData,
              served: list[torch.Tensor]) -> StepRecord:
        totals = ledger.totals(start=self.start_event)
        result = evaluate(model, served[0], data.val_x, data.val_y)
        identical = len({param_hash(m) for m in served}) == 1
        spread = max(float(torch.linalg.vector_norm(m - served[0])) for m in served)
        record = StepRecord(t, sum(self.losses) / len(self.losses), result.loss,
                            result.accuracy, identical, spread, totals.bytes_total,
                            totals.flops, time.perf_counter() - self.started)
        self.__init__(len(ledger))
        return record


def _record_compute(ledger: Ledger, flops: FlopCounter, input_shape: tuple[int, ...], t: int,
                    w: int, out) -> None:
    name = worker_name(w)
    train = sum(n * flops.step((size, *input_shape)) for size, n in out.steps.items())
    forward = sum(n * flops.step((size, *input_shape), kind="eval")
                  for size, n in out.forward_steps.items())
    if train or not (forward or out.extra_flops):
        ledger.record(ComputeEvent(t, name, train, "train"))
    if forward:
        ledger.record(ComputeEvent(t, name, forward, "forward"))
    for kind, amount in sorted(out.extra_flops.items()):
        ledger.record(ComputeEvent(t, name, int(amount), kind))


def _channel(post, group: tuple[int, ...], workers: int) -> str:
    """The ledger channel: the post's channel, tagged with its group when it is not everyone."""
    if len(group) == workers:
        return post.channel
    return f"{post.channel}@{'-'.join(map(str, group))}"


def resolve(transport: PeerTransport, posts: dict[int, tuple], t: int, seed: int
            ) -> list[tuple[int, int, Received]]:
    """Run the collectives the workers posted at step t; (ready step, worker, result) each."""
    workers = len(posts)
    groups: dict[tuple, dict[int, Any]] = defaultdict(dict)
    for w, worker_posts in posts.items():
        for post in worker_posts:
            members = _members(post, w, workers)
            key = (type(post).__name__, post.channel, members)
            if w in groups[key]:
                raise ValueError(f"worker {w} posted {key[0]} {post.channel!r} twice at step {t}")
            groups[key][w] = post
    out = []
    for (kind, channel, members), by_worker in groups.items():
        missing = sorted(set(members) - set(by_worker))
        if missing:
            raise ValueError(f"step {t}: workers {sorted(by_worker)} posted {kind} {channel!r} "
                             f"for group {list(members)} but workers {missing} did not")
        delays = {post.delay_steps for post in by_worker.values()}
        if len(delays) != 1:
            raise ValueError(f"step {t}: {kind} {channel!r} has mixed delay_steps {delays}")
        ready = t + 1 + delays.pop()
        name = _channel(next(iter(by_worker.values())), members, workers)
        for w, value in _run(transport, kind, name, by_worker, members, t, ready, seed).items():
            out.append((ready, w, Received(channel, t, value)))
    return out


def _members(post, w: int, workers: int) -> tuple[int, ...]:
    if isinstance(post, Exchange):
        if not 0 <= post.peer < workers or post.peer == w:
            raise ValueError(f"worker {w} cannot exchange with peer {post.peer}")
        return tuple(sorted((w, post.peer)))
    if isinstance(post, AllReduce) and post.group is not None:
        if w not in post.group:
            raise ValueError(f"worker {w} posted an all-reduce for group {post.group} "
                             "that does not include it")
        return tuple(sorted(post.group))
    return tuple(range(workers))


def _run(transport: PeerTransport, kind: str, channel: str, by_worker: dict[int, Any],
         members: tuple[int, ...], t: int, ready: int, seed: int) -> dict[int, Any]:
    if len(members) == 1:  # a group of one: nothing crosses a link
        (w, post), = by_worker.items()
        local = {AllReduce.__name__: lambda: post.vector.clone(),
                 AllGather.__name__: lambda: (post.payload,),
                 Broadcast.__name__: lambda: post.payload}
        return {w: local[kind]()}
    if kind == AllReduce.__name__:
        codecs = {post.codec.name for post in by_worker.values()}
        if len(codecs) != 1:
            raise ValueError(f"step {t}: all-reduce {channel!r} mixes codecs {sorted(codecs)}")
        codec = by_worker[members[0]].codec
        mean = ring_allreduce_mean(transport, {w: p.vector for w, p in by_worker.items()},
                                   codec, round=t, channel=channel, ready_round=ready,
                                   seed=seed)
        return {w: mean.clone() for w in members}
    if kind == AllGather.__name__:
        gathered = ring_allgather(transport, {w: p.payload for w, p in by_worker.items()},
                                  round=t, channel=channel, ready_round=ready)
        return dict.fromkeys(members, gathered)
    if kind == Exchange.__name__:
        a, b = members
        at_a, at_b = pair_exchange(transport, a, by_worker[a].payload, b, by_worker[b].payload,
                                   round=t, channel=channel, ready_round=ready)
        return {a: at_a, b: at_b}
    if kind == Broadcast.__name__:
        roots = {post.root for post in by_worker.values()}
        holders = [w for w, post in by_worker.items() if post.payload is not None]
        if len(roots) != 1 or holders != [next(iter(roots))]:
            raise ValueError(f"step {t}: broadcast {channel!r} needs one root holding the "
                             f"payload; roots {sorted(roots)}, holders {holders}")
        root = holders[0]
        value = tree_broadcast(transport, by_worker[root].payload, root=root,
                               participants=members, round=t, channel=channel,
                               ready_round=ready)
        return {w: (by_worker[root].payload if w == root else value) for w in members}
    raise TypeError(f"unknown collective post {kind}")
