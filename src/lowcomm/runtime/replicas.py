"""What every runtime of replicated (data-centre) algorithms does alike, whether it runs the p
workers in one process (`train_workers`) or one worker per process (`train_rank`): the streams a
worker draws from, the compute events of a step, which collective a post joins and with whom,
and the queue of results waiting for the step they are due before.
"""

from __future__ import annotations

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
    StepContext,
    StepOutput,
)
from lowcomm.core import torch_generator
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import ComputeEvent, worker_name
from lowcomm.runtime.schedules import (
    Program,
    pair_exchange_program,
    ring_allgather_program,
    ring_allreduce_program,
    tree_broadcast_program,
)

KINDS = {AllReduce: "allreduce", AllGather: "allgather", Broadcast: "broadcast",
         Exchange: "exchange"}  # post type -> the ledger's collective name


def step_context(seed: int, t: int, w: int, workers: int) -> StepContext:
    """Worker w's context at step t; its own stream is `(seed, t, w, "worker-step")`."""
    return StepContext(t, w, workers, seed, torch_generator(seed, round=t, client=w,
                                                            purpose="worker-step"))


def batch_generator(seed: int, t: int, w: int) -> torch.Generator:
    """The stream of worker w's minibatch of step t: `(seed, t, w, "batch")`."""
    return torch_generator(seed, round=t, client=w, purpose="batch")


def compute_events(flops: FlopCounter, input_shape: tuple[int, ...], t: int, w: int,
                   out: StepOutput) -> list[ComputeEvent]:
    """The counted FLOPs of worker w's step t: training passes, forward passes, extra kinds."""
    name = worker_name(w)
    train = sum(n * flops.step((size, *input_shape)) for size, n in out.steps.items())
    forward = sum(n * flops.step((size, *input_shape), kind="eval")
                  for size, n in out.forward_steps.items())
    events = []
    if train or not (forward or out.extra_flops):
        events.append(ComputeEvent(t, name, train, "train"))
    if forward:
        events.append(ComputeEvent(t, name, forward, "forward"))
    for kind, amount in sorted(out.extra_flops.items()):
        events.append(ComputeEvent(t, name, int(amount), kind))
    return events


@dataclass(frozen=True)
class Planned:
    """A post as the collective it joins: `key` identifies the collective among a step's posts;
    `order` is its members in schedule order (the ring, or the root first); `channel` is the
    ledger's (tagged with the group when it is not everyone); `ready` is the step before which
    the result is delivered; `descriptor` is what every member must agree on."""

    key: tuple[str, str, tuple[int, ...]]
    kind: str
    order: tuple[int, ...]
    channel: str
    codec: str
    ready: int
    descriptor: str


def members(post: Any, w: int, live: tuple[int, ...]) -> tuple[int, ...]:
    """The sorted workers of the collective worker w's `post` joins; `live` is every worker
    taking part in the step, sorted (`range(p)` unless membership is elastic)."""
    if isinstance(post, Exchange):
        if post.peer not in live or post.peer == w:
            raise ValueError(f"worker {w} cannot exchange with peer {post.peer}")
        return tuple(sorted((w, post.peer)))
    if isinstance(post, AllReduce) and post.group is not None:
        if w not in post.group:
            raise ValueError(f"worker {w} posted an all-reduce for group {post.group} "
                             "that does not include it")
        return tuple(sorted(post.group))
    return live


def plan(post: Any, w: int, live: tuple[int, ...], t: int) -> Planned:
    """What worker w's `post` at step t joins (see `Planned`) among the `live` workers."""
    group = members(post, w, live)
    kind = KINDS[type(post)]
    channel = post.channel if group == live else \
        f"{post.channel}@{'-'.join(map(str, group))}"
    order, codec, extra = group, "payload", ""
    if isinstance(post, AllReduce):
        codec, extra = post.codec.name, f"|{post.codec.name}|{post.vector.numel()}"
    elif isinstance(post, Broadcast):
        order, extra = (post.root, *(m for m in group if m != post.root)), f"|root {post.root}"
    descriptor = f"step {t}|{kind}|{post.channel}|{list(group)}|delay {post.delay_steps}{extra}"
    return Planned((type(post).__name__, post.channel, group), kind, order, channel, codec,
                   t + 1 + post.delay_steps, descriptor)


def program(post: Any, planned: Planned, w: int, *, t: int, seed: int) -> Program:
    """Worker w's part of the collective its `post` joins (`lowcomm.runtime.schedules`)."""
    if isinstance(post, AllReduce):
        return ring_allreduce_program(post.vector, post.codec, ring=planned.order, me=w,
                                      round=t, channel=planned.channel, seed=seed)
    if isinstance(post, AllGather):
        return ring_allgather_program(post.payload, ring=planned.order, me=w)
    if isinstance(post, Broadcast):
        if post.root not in planned.order:
            raise ValueError(f"broadcast {post.channel!r}: root {post.root} is not a worker")
        return tree_broadcast_program(post.payload, order=planned.order, me=w)
    return pair_exchange_program(post.payload, pair=planned.order, me=w)


def local_result(post: Any) -> Any:
    """The result of a collective whose group is one worker: nothing crosses a link."""
    local: dict[type, Callable[[], Any]] = {AllReduce: lambda: post.vector.clone(),
                                            AllGather: lambda: (post.payload,),
                                            Broadcast: lambda: post.payload}
    if type(post) not in local:
        raise ValueError(f"a {type(post).__name__} needs two workers")
    return local[type(post)]()


class Inbox:
    """Collective results waiting for the step they are due before, in arrival order."""

    def __init__(self) -> None:
        self._due: dict[int, list[tuple[int, Received]]] = defaultdict(list)

    def put(self, ready: int, w: int, received: Received) -> None:
        self._due[ready].append((w, received))

    def take(self, step: int) -> list[tuple[int, Received]]:
        return self._due.pop(step, [])

    def pending(self) -> list[int]:
        """The steps that still have results due, in order (the run waits for them)."""
        return sorted(self._due)
