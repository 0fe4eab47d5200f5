"""Checkpoints of a run over torch.distributed, a star run (`star.py`) or a replicated one
(`rank.py`): every rank writes its part in `lowcomm.runtime.checkpoint`'s one format (atomic:
temporary file, fsync, rename), and the ranks agree where to resume. Below, for a star run
(a replicated run's steps are its rounds; its rank r > 0, holding one worker, is the client
rank; rank 0's `last.ckpt` holds its own worker's part with the records, `rank.py`).

- **Files.** Rank 0, the server, writes `DIR/last.ckpt`: the simulator's checkpoint (next
  round, server state, ledger, round records, initial evaluation, options, seed; the seed is the
  whole RNG state) without client states. Client rank r writes `DIR/rank{r}.ckpt`: the same
  format holding only the states of the clients it hosts (`ClientStateStore.snapshot()`). The
  options of every file join the world size (it places the clients on ranks).
- **When: a two-phase commit at every due round t** (`CheckpointPolicy.due`, `commit`). A
  client rank, once it has sent its uploads of round t, writes its file and tells rank 0 (control
  message);
  rank 0, once it has concluded round t, waits for the word of every client rank, writes
  `last.ckpt` (the commit point) and tells every client rank, which only then goes on. So when
  `last.ckpt` holds round t, every client rank has written round t, and none writes a later
  round before that commit. A client rank keeps its two newest files (keep >= 2), so wherever a
  kill lands (between a client rank's write and rank 0's, or after), the round of `last.ckpt`
  is on every client rank.
- **Resume** (`resume_rank`, called by every rank): rank 0 loads `last.ckpt` and sends its next
  round to every client rank; each loads its own file of that round and says whether it could.
  A missing, damaged or other-options file is a `CheckpointError` on the rank that finds it,
  and rank 0 stops the others (or is stopped) with one line naming the rank.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from lowcomm.algorithms import FederatedAlgorithm
from lowcomm.algorithms.replicated import ReplicatedAlgorithm
from lowcomm.core import Payload, serialize
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import Ledger
from lowcomm.data import FederatedDataset
from lowcomm.runtime.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointPolicy,
    held,
    resume_point,
    round_checkpoint,
    save,
)
from lowcomm.runtime.distributed.transport import RankTransport, wire_tag
from lowcomm.runtime.elastic import static_membership
from lowcomm.runtime.execution import Executor, auto
from lowcomm.runtime.faults import FaultPlan
from lowcomm.runtime.membership import Membership
from lowcomm.runtime.simulator import SimulationSettings, checkpoint_options, resolve_executor
from lowcomm.runtime.state import ClientStateStore
from lowcomm.runtime.workers import TrainingSettings, training_options

CLIENT_KEEP = 2  # a client rank's files: the round of last.ckpt and the one after it
NOTHING = -1  # rank 0's word when there is nothing to resume from


def rank_policy(policy: CheckpointPolicy | None, rank: int) -> CheckpointPolicy | None:
    """`policy` as rank `rank` of a star run follows it: rank 0 as given, a client rank with
    its own file, keeping at least `CLIENT_KEEP`."""
    if policy is None or rank == 0:
        return policy
    return dataclasses.replace(policy, file=f"rank{rank}.ckpt",
                               keep=max(policy.keep, CLIENT_KEEP))


def star_options(algorithm: FederatedAlgorithm, dataset: FederatedDataset,
                 params: torch.Tensor, flops: FlopCounter, settings: SimulationSettings,
                 executor: Executor | None, policy: CheckpointPolicy | None, *,
                 faults: FaultPlan, world_size: int) -> dict[str, Any]:
    """What determines a star run's result, for the checkpoint check: the simulator's
    `checkpoint_options` (with the execution strategy a client rank runs) and the world
    size (it places the clients on ranks). Kill faults are refused: a resumed run would bring
    the killed rank back."""
    if any(f.kind == "kill" for f in faults.faults):
        raise ValueError("checkpoints of a distributed star run do not go with kill faults: a "
                         "resumed run would bring the killed rank back")
    execution = executor.name if executor is not None and executor.name != "auto" else None
    if execution is None:  # auto: resolved from the counted FLOPs, as on a client rank
        resolved = resolve_executor(algorithm, dataset, flops, executor or auto(cores=1))
        execution = resolved.name
        resolved.close()  # only its name is needed here
    return {**checkpoint_options(algorithm, dataset, params, settings, execution, policy,
                                 faults=faults), "world_size": world_size}


def train_options(algorithm: ReplicatedAlgorithm, params: torch.Tensor,
                  settings: TrainingSettings, membership: Membership | None,
                  policy: CheckpointPolicy | None, *, world_size: int,
                  unannounced_leaves: bool = False) -> dict[str, Any]:
    """What determines a replicated run's result over torch.distributed (`train_rank`), for
    the checkpoint check: `training_options` and the world size. A changing membership and
    unannounced leaves are refused: their ranks come and go, so no round is on every rank."""
    membership = membership or static_membership(algorithm, settings.workers, settings.steps)
    if membership.events:
        raise ValueError("checkpoints of a distributed train run do not go with a membership "
                         "schedule (a leaver's or joiner's rank holds no file of every round)")
    if unannounced_leaves:
        raise ValueError("checkpoints of a distributed train run do not go with unannounced "
                         "leaves (a resumed run would bring the vanished ranks back)")
    return {**training_options(algorithm, params, settings, membership, policy),
            "world_size": world_size}


def _word(value: int) -> bytes:
    return serialize(Payload(round=np.asarray([value], np.int64)))


def _read(got: Payload) -> int:
    return int(got["round"][0])


def commit(transport: RankTransport, policy: CheckpointPolicy, t: int,
           build: Callable[[], Checkpoint], *, last: bool, protocol: str = "star") -> None:
    """The two-phase commit of round t's checkpoint (module docstring), if due (`build()`
    makes it only then): a rank other than 0 writes its file, tells rank 0 and waits for its
    commit; rank 0 waits for every other rank's word, writes its file (the commit point) and
    tells them. `protocol` keeps the control messages of one runtime apart from another's."""
    if not policy.due(t, last=last):
        return
    checkpoint = build()
    me, ranks = transport.rank, list(range(1, transport.world_size))
    written = wire_tag(f"{protocol}|{t}|checkpoint written")
    committed = wire_tag(f"{protocol}|{t}|checkpoint committed")
    what = f"the commit of the checkpoint of round {t}"
    if me == 0:
        got, _ = transport.exchange([], ranks, tag=written, control=True,
                                    what=f"the other ranks' checkpoints of round {t}")
        for r in ranks:
            if _read(got[r]) != t:
                raise CheckpointError(f"rank {r} wrote its checkpoint of round {_read(got[r])} "
                                      f"while rank 0 wrote round {t}")
        save(policy.path, checkpoint, keep=policy.keep)
        transport.exchange([(r, _word(t)) for r in ranks], [], tag=committed, control=True,
                           what=what)
        return
    save(policy.path, checkpoint, keep=policy.keep)
    transport.exchange([(0, _word(t))], [], tag=written, control=True,
                       what=f"rank {me}'s checkpoint of round {t}")
    got, _ = transport.exchange([], [0], tag=committed, control=True, what=what)
    if _read(got[0]) != t:
        raise CheckpointError(f"rank 0 committed round {_read(got[0])}; this rank wrote {t}")


def commit_server(transport: RankTransport, policy: CheckpointPolicy, t: int,
                  settings: SimulationSettings, state: Any, ledger: Ledger,
                  records: Sequence[Any], initial: Any, options: dict[str, Any]) -> None:
    """Rank 0 of a star run after concluding round t: `commit` `last.ckpt` (the run so far)."""
    commit(transport, policy, t, partial(
        round_checkpoint, t + 1, state, store=None, ledger=ledger, records=records,
        initial=initial, options=options, seed=settings.seed), last=t == settings.rounds)


def commit_client(transport: RankTransport, policy: CheckpointPolicy, t: int,
                  settings: SimulationSettings, store: ClientStateStore | None,
                  options: dict[str, Any]) -> None:
    """A client rank of a star run after sending its uploads of round t: `commit` its file
    (its clients' states)."""
    commit(transport, policy, t, partial(
        round_checkpoint, t + 1, None, store=store, ledger=Ledger(), records=(), initial=None,
        options=options, seed=settings.seed), last=t == settings.rounds)


def resume_rank(transport: RankTransport, policy: CheckpointPolicy,
                options: dict[str, Any], *, protocol: str = "star",
                others: str = "client rank") -> Checkpoint:
    """This rank's checkpoint to resume from, checked against `options` (`star_options`, or
    `train_rank`'s); every rank of the run calls it (module docstring). `others` names the
    ranks but 0 in rank 0's error."""
    me, p = transport.rank, transport.world_size
    mine = rank_policy(policy, me)
    down, up = wire_tag(f"{protocol}|resume round"), wire_tag(f"{protocol}|resume ready")
    if me == 0:
        try:
            point = resume_point(mine.directory, options=options)
        except CheckpointError:
            transport.exchange([(r, _word(NOTHING)) for r in range(1, p)], [], tag=down,
                               control=True, what="the round to resume from")
            raise
        transport.exchange([(r, _word(point.next_round)) for r in range(1, p)], [], tag=down,
                           control=True, what="the round to resume from")
        got, _ = transport.exchange([], list(range(1, p)), tag=up, control=True,
                                    what=f"the {others}s' checkpoints")
        failed = [r for r in range(1, p) if _read(got[r]) != point.next_round]
        if failed:
            raise CheckpointError(f"{others}(s) {', '.join(map(str, failed))} could not "
                                  f"resume from round {point.next_round - 1} (see their errors)")
        return point
    got, _ = transport.exchange([], [0], tag=down, control=True,
                                what="the round to resume from")
    next_round = _read(got[0])
    if next_round == NOTHING:
        raise CheckpointError(f"rank 0 could not resume from {mine.directory} (see its "
                              "error)")
    try:
        found = held(mine.path, options=options)
        point = next((c for c in found if c.next_round == next_round), None)
        if point is None:
            raise CheckpointError(
                f"{mine.path} holds no checkpoint of round {next_round - 1} (the round of rank "
                f"0's {policy.file}); it holds rounds {[c.next_round - 1 for c in found]}")
    except CheckpointError:
        transport.exchange([(0, _word(NOTHING))], [], tag=up, control=True,
                           what=f"rank {me}'s checkpoint")
        raise
    transport.exchange([(0, _word(next_round))], [], tag=up, control=True,
                       what=f"rank {me}'s checkpoint")
    return point
