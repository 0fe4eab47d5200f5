"""One worker of a replicated algorithm per process: `train_rank` runs `train_workers`' run for
the rank its transport belongs to.

Everything a worker does is `train_workers`' (shared with it through `lowcomm.runtime.replicas`
and `lowcomm.runtime.schedules`): the same minibatch stream `(seed, t, w, "batch")` and worker
stream `(seed, t, w, "worker-step")`, the same delivery of a result before step
`t + 1 + delay_steps` (and of what is still in flight before the final evaluation), and the
same per-member program of each collective, whose payloads here cross a real gloo link as
serialized bytes. A rank runs its collectives in its own posting order; the simulator refuses
posting orders that would deadlock here.

At every evaluation step each rank sends rank 0 (control traffic, not in the ledger, as the
simulator's evaluation is not) its minibatch losses since the last record, its sent bytes and
counted FLOPs, and the SHA-256 of its served model; only if the hashes differ do the ranks send
their models, for the spread. Rank 0 evaluates its served model, which is worker 0's. At the end
every rank sends rank 0 its final model, its `RankLog` and its `WireCounts`; rank 0 merges the
logs into the simulator's ledger (`lowcomm.runtime.distributed.merge`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lowcomm.algorithms.replicated import Received, ReplicatedAlgorithm, param_hash
from lowcomm.core import Payload, serialize
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import CommEvent, worker_name
from lowcomm.models import ModelFn
from lowcomm.runtime.distributed.merge import CollectiveLog, RankLog, log_from_payload, merge
from lowcomm.runtime.distributed.transport import RankTransport, WireCounts, wire_tag
from lowcomm.runtime.evaluate import evaluate
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


def train_rank(algorithm: ReplicatedAlgorithm, data: WorkerData, model: ModelFn,
               params: torch.Tensor, flops: FlopCounter, settings: TrainingSettings,
               transport: RankTransport, *, on_record: Callable[[StepRecord], None] | None = None,
               on_step: Callable[[int], None] | None = None) -> RankResult:
    """Run this rank's worker for `settings.steps` steps (module docstring)."""
    me, p, seed = transport.rank, transport.world_size, settings.seed
    if settings.workers != p:
        raise ValueError(f"workers ({settings.workers}) must equal the number of processes "
                         f"({p}): one worker per process")
    algorithm.check_workers(p)
    log = RankLog(me)
    state = algorithm.init(params, me, p)
    inbox = Inbox()

    def deliver(t: int, ctx_step: int) -> None:
        nonlocal state
        for _, received in inbox.take(t):
            state = algorithm.receive(state, received, step_context(seed, ctx_step, me, p))

    initial = evaluate(model, algorithm.model(state), data.val_x, data.val_y) if me == 0 else None
    records: list[StepRecord] = []
    window, window_start = Window(), (0, 0)
    step_seconds, comm_seconds = [], []
    for t in range(1, settings.steps + 1):
        started = time.perf_counter()
        deliver(t, t)
        out = algorithm.step(state, data.sample(me, batch_generator(seed, t, me)),
                             step_context(seed, t, me, p))
        state = out.state
        log.add_compute(compute_events(flops, data.input_shape, t, me, out))
        window.losses.append(out.loss)
        comm_started = time.perf_counter()
        for ready, received in run_posts(transport, log, out.posts, t=t, seed=seed):
            inbox.put(ready, me, received)
        comm_seconds.append(time.perf_counter() - comm_started)
        deliver(t + 1, t + 1)
        step_seconds.append(time.perf_counter() - started)
        if on_step is not None:
            on_step(t)
        if t % settings.eval_every == 0 or t == settings.steps:
            if t == settings.steps:
                for pending in inbox.pending():  # the run waits for what is still in flight
                    deliver(pending, settings.steps + 1)
            record = _record(transport, t, window, window_start, log, algorithm.model(state),
                             lambda served: evaluate(model, served, data.val_x, data.val_y))
            window, window_start = Window(), (log.sent_nbytes, log.flops)
            if record is not None:
                records.append(record)
                if on_record is not None:
                    on_record(record)
    served = algorithm.model(state)
    run, wire = _finish(transport, log, served, records, initial)
    return RankResult(me, p, served, state, run, wire, tuple(step_seconds), tuple(comm_seconds))


def run_posts(transport: RankTransport, log: RankLog, posts: tuple, *, t: int, seed: int
              ) -> list[tuple[int, Received]]:
    """Run this rank's posts of step t in posting order; (ready step, result) for each."""
    me, p = transport.rank, transport.world_size
    seen, out = set(), []
    for post in posts:
        planned = plan(post, me, tuple(range(p)), t)
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


def _to_rank0(transport: RankTransport, what: str, payload: Payload | None
              ) -> dict[int, Payload]:
    """Every other rank's payload at rank 0 (control traffic); {} elsewhere."""
    me, others = transport.rank, range(1, transport.world_size)
    if me == 0:
        return transport.exchange([], list(others), tag=wire_tag(f"control|{what}"), what=what,
                                  control=True)[0]
    transport.exchange([(0, serialize(payload))], [], tag=wire_tag(f"control|{what}"),
                       what=what, control=True)
    return {}


def _from_rank0(transport: RankTransport, what: str, payload: Payload | None) -> Payload:
    me, others = transport.rank, range(1, transport.world_size)
    tag = wire_tag(f"control|{what}")
    if me == 0:
        transport.exchange([(r, serialize(payload)) for r in others], [], tag=tag, what=what,
                           control=True)
        return payload
    return transport.exchange([], [0], tag=tag, what=what, control=True)[0][0]


def _record(transport: RankTransport, t: int, window: Window, start: tuple[int, int],
            log: RankLog, served: torch.Tensor,
            evaluate_served: Callable[[torch.Tensor], Any]) -> StepRecord | None:
    """Rank 0's record of step t from every rank's window (module docstring); None elsewhere."""
    me, p = transport.rank, transport.world_size
    mine = Payload(losses=np.asarray(window.losses, np.float64),
                   counts=np.asarray([log.sent_nbytes - start[0], log.flops - start[1]],
                                     np.int64),
                   hash=np.frombuffer(bytes.fromhex(param_hash(served)), np.uint8))
    summaries = {0: mine, **_to_rank0(transport, f"summary of step {t}", mine)}
    hashes = [bytes(summaries[w]["hash"]).hex() for w in sorted(summaries)]
    verdict = _from_rank0(transport, f"verdict of step {t}",
                          Payload(identical=np.asarray([len(set(hashes)) == 1])))
    models = {0: served}
    if not bool(verdict["identical"][0]):  # the spread needs the models themselves
        sent = _to_rank0(transport, f"models of step {t}", Payload(model=served))
        models.update({r: payload.tensor("model") for r, payload in sent.items()})
    if me != 0:
        return None
    steps = len(window.losses)
    losses = [float(summaries[w]["losses"][j]) for j in range(steps) for w in range(p)]
    return window.close(t, losses=losses,
                        bytes_sent=sum(int(s["counts"][0]) for s in summaries.values()),
                        flops=sum(int(s["counts"][1]) for s in summaries.values()),
                        evaluation=evaluate_served(served), hashes=hashes,
                        served=lambda: [models[w] for w in range(p)])


def _finish(transport: RankTransport, log: RankLog, served: torch.Tensor,
            records: list[StepRecord], initial: Any
            ) -> tuple[TrainingResult | None, tuple[WireCounts, ...]]:
    """Gather every rank's final model, log and counters at rank 0 and merge the ledger."""
    counts = transport.counts()  # before the gather: payload traffic is complete
    fields = list(WireCounts.__dataclass_fields__)
    mine = log.to_payload().merged(
        {"model": served, "wire": np.asarray([getattr(counts, f) for f in fields], np.int64)})
    got = _to_rank0(transport, "final gather", mine)
    if transport.rank != 0:
        return None, (counts,)
    ranks = range(1, transport.world_size)
    logs = [log, *(log_from_payload(got[r], r) for r in ranks)]
    wire = (counts, *(WireCounts(**dict(zip(fields, (int(v) for v in got[r]["wire"]),
                                            strict=True))) for r in ranks))
    models = (served, *(got[r].tensor("model") for r in ranks))
    return TrainingResult(models, (), merge(logs), tuple(records), initial.loss), wire
