"""Control traffic between the ranks of `train_rank` and rank 0, which speaks for the run: the
records' summaries, a leaver's farewell and the final gather. None of it is in the ledger (the
simulator's evaluation is not either); the transport counts it as control bytes.

At every evaluation step each live rank sends rank 0 its minibatch losses since the last record,
its sent bytes and counted FLOPs, and the SHA-256 of its served model; only if the hashes differ
do the ranks send their models, for the spread. A rank that leaves sends rank 0 the same summary
of its unfinished window together with its final model, `RankLog` and `WireCounts` (its
farewell), then ends. At the end every live rank sends rank 0 its final model, its log and its
counters; rank 0 merges every rank's log into the simulator's ledger
(`lowcomm.runtime.distributed.merge`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from lowcomm.algorithms.replicated import param_hash
from lowcomm.core import Payload, serialize
from lowcomm.runtime.distributed.merge import RankLog, log_from_payload, merge
from lowcomm.runtime.distributed.transport import RankTransport, WireCounts, wire_tag
from lowcomm.runtime.workers import StepRecord, TrainingResult, Window

WIRE_FIELDS = tuple(WireCounts.__dataclass_fields__)


def to_rank0(transport: RankTransport, what: str, payload: Payload | None,
             senders: Sequence[int]) -> dict[int, Payload]:
    """Each of `senders`' payload at rank 0 (control traffic); {} elsewhere."""
    tag = wire_tag(f"control|{what}")
    if transport.rank == 0:
        return transport.exchange([], [r for r in senders if r != 0], tag=tag, what=what,
                                  control=True)[0]
    transport.exchange([(0, serialize(payload))], [], tag=tag, what=what, control=True)
    return {}


def from_rank0(transport: RankTransport, what: str, payload: Payload | None,
               receivers: Sequence[int]) -> Payload:
    """Rank 0's payload at each of `receivers`."""
    tag = wire_tag(f"control|{what}")
    if transport.rank == 0:
        transport.exchange([(r, serialize(payload)) for r in receivers if r != 0], [], tag=tag,
                           what=what, control=True)
        return payload
    return transport.exchange([], [0], tag=tag, what=what, control=True)[0][0]


def window_summary(window: Window, start: tuple[int, int], log: RankLog,
                   served: torch.Tensor) -> Payload:
    """This rank's losses, sent bytes and counted FLOPs since `start`, and its model's hash."""
    return Payload(losses=np.asarray(window.losses, np.float64),
                   counts=np.asarray([log.sent_nbytes - start[0], log.flops - start[1]],
                                     np.int64),
                   hash=np.frombuffer(bytes.fromhex(param_hash(served)), np.uint8))


def final_payload(log: RankLog, served: torch.Tensor, counts: WireCounts) -> Payload:
    """What rank 0 needs of a rank at the end (or when it leaves): model, log, counters."""
    return log.to_payload().merged(
        {"model": served, "wire": np.asarray([getattr(counts, f) for f in WIRE_FIELDS],
                                             np.int64)})


def gather_record(transport: RankTransport, t: int, mine: Payload, *, window: Window,
                  live: Sequence[int], order: Sequence[int], departed: dict[int, Payload],
                  served: torch.Tensor, evaluate_served: Callable[[torch.Tensor], Any]
                  ) -> StepRecord | None:
    """Rank 0's record of step t (module docstring); None elsewhere. `live` are the ranks live
    now (rank 0 first), `order` the worker of each minibatch loss of the window in the
    simulator's (step, worker) order, `departed` the window summaries of ranks that left in
    it (rank 0)."""
    others = [w for w in live if w != 0]
    summaries = {0: mine, **to_rank0(transport, f"summary of step {t}", mine, others)}
    hashes = [bytes(summaries[w]["hash"]).hex() for w in live] if transport.rank == 0 else []
    verdict = from_rank0(transport, f"verdict of step {t}",
                         Payload(identical=np.asarray([len(set(hashes)) == 1])), others)
    models = {0: served}
    if not bool(verdict["identical"][0]):  # the spread needs the models themselves
        sent = to_rank0(transport, f"models of step {t}", Payload(model=served), others)
        models.update({r: payload.tensor("model") for r, payload in sent.items()})
    if transport.rank != 0:
        return None
    stepped = {**departed, **summaries}
    queues = {w: deque(float(x) for x in s["losses"]) for w, s in stepped.items()}
    losses = [queues[w].popleft() for w in order]
    return window.close(t, losses=losses,
                        bytes_sent=sum(int(s["counts"][0]) for s in stepped.values()),
                        flops=sum(int(s["counts"][1]) for s in stepped.values()),
                        evaluation=evaluate_served(served), hashes=hashes,
                        served=lambda: [models[w] for w in live])


def finish(transport: RankTransport, log: RankLog, served: torch.Tensor, *,
           live: Sequence[int], farewells: dict[int, Payload], records: list[StepRecord],
           initial: Any, vanished: dict[int, tuple[RankLog, WireCounts]]
           ) -> tuple[TrainingResult | None, tuple[WireCounts, ...]]:
    """Gather the live ranks' final models, logs and counters at rank 0 and merge the ledger
    with those of the ranks that left (`farewells`) or vanished (their shipped logs)."""
    counts = transport.counts()  # before the gather: payload traffic is complete
    got = to_rank0(transport, "final gather", final_payload(log, served, counts),
                   [w for w in live if w != 0])
    if transport.rank != 0:
        return None, (counts,)
    finals = {**farewells, **got}
    logs, wire = [log], [counts]
    for r in range(1, transport.world_size):
        if r in vanished:
            logs.append(vanished[r][0])
            wire.append(vanished[r][1])
            continue
        logs.append(log_from_payload(finals[r], r))
        wire.append(WireCounts(**dict(zip(WIRE_FIELDS, (int(v) for v in finals[r]["wire"]),
                                          strict=True))))
    models = tuple(served if w == 0 else got[w].tensor("model") for w in live)
    return TrainingResult(models, (), merge(logs), tuple(records), initial.loss,
                          tuple(live)), tuple(wire)
