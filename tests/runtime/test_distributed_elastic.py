"""Elastic membership over torch.distributed (gloo, loopback, 3 processes): a worker joins and
another leaves between outer steps; the ledger equals the simulator's membership run, the live
replicas are identical, and the transport's byte counters equal the ledger."""

from __future__ import annotations

import os
import signal
import types

import pytest
import torch
import torch.distributed as dist
from tests.algorithms.replicated_runs import BATCH, workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import diloco
from lowcomm.cost.ledger import worker_name
from lowcomm.runtime import TrainingSettings, train_workers
from lowcomm.runtime.distributed import spawn_local, train_rank
from lowcomm.runtime.elastic import JOIN_CHANNEL
from lowcomm.runtime.membership import parse_membership

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

TIMEOUT_SECONDS = 300.0  # process start on a loaded machine; never a measured threshold
H, STEPS = 2, 8


def _parts(schedule, workers: int):
    membership = parse_membership(schedule, initial_workers=workers, inner_steps=H,
                                  steps=STEPS)
    model, params, data, flops = workload(membership.total_ids)
    flops.step((BATCH, *data.input_shape))  # counted once here; the forked ranks inherit it
    algorithm = diloco(model, inner_optimizer=adamw(1e-2), inner_steps=H)
    settings = TrainingSettings(steps=STEPS, workers=workers, eval_every=H)
    return (algorithm, data, model, params, flops, settings), membership


def _without_seconds(record):
    return {**record.__dict__, "simulator_seconds": None}


def test_join_and_leave_over_gloo_give_the_simulators_run():
    parts, membership = _parts({4: "join", 6: "leave 1"}, workers=2)

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        return train_rank(*parts, transport, membership=membership)

    ranks = spawn_local(rank, membership.total_ids, timeout_seconds=TIMEOUT_SECONDS,
                        grace_seconds=20.0)
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    sim = train_workers(*parts, membership=membership)
    run = ranks[0].run
    assert run.ledger == sim.ledger  # event for event, the join transfer included
    join_events = [e for e in run.ledger.comm_events() if e.channel == JOIN_CHANNEL]
    assert [(e.round, e.src, e.dst) for e in join_events] == [(4, "worker:0", "worker:2")]
    assert run.workers == sim.workers == (0, 2)
    assert all(torch.equal(a, b) for a, b in zip(run.models, sim.models, strict=True))
    assert torch.equal(ranks[2].model, sim.models[1])
    assert [_without_seconds(r) for r in run.records] == \
        [_without_seconds(r) for r in sim.records]
    assert all(r.replicas_identical for r in run.records)
    assert len(ranks[1].step_seconds) == 6 and len(ranks[2].step_seconds) == 4  # left, joined
    for w, counts in enumerate(ranks[0].wire):
        mine = worker_name(w)
        assert counts.payload_sent_nbytes == sum(e.nbytes for e in run.ledger.comm_events()
                                                 if e.src == mine)
        assert counts.payload_received_nbytes == sum(e.nbytes for e in run.ledger.comm_events()
                                                     if e.dst == mine) > 0
    assert ranks[0].wire[2].payload_received_nbytes >= join_events[0].nbytes


@pytest.mark.parametrize("schedule, processes, words", [
    ({4: "leave 0"}, 2, "worker 0 cannot leave a distributed run"),
    ({4: "join"}, 2, "the membership uses 3 worker ids .* start one process per id \\(3\\); "
                     "got 2"),
])
def test_memberships_the_processes_cannot_run_are_refused_before_any_traffic(
        schedule, processes, words):
    parts, membership = _parts(schedule, workers=2)
    transport = types.SimpleNamespace(rank=0, world_size=processes)  # never used: refused first
    with pytest.raises(ValueError, match=words):
        train_rank(*parts, transport, membership=membership)


@pytest.mark.parametrize("schedule, workers, victim, effective", [
    (None, 3, 2, {4: "leave 2"}),
    ({2: "join"}, 2, 1, {2: "join", 4: "leave 1"}),  # a joiner, and a victim inside the ring
])
def test_a_worker_killed_between_outer_steps_is_survived_as_a_leave(schedule, workers, victim,
                                                                     effective):
    parts, membership = _parts(schedule, workers=workers)
    killed_at = 5  # after boundary 4's sync and record, inside the next inner phase

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)

        def on_step(t):
            if r == victim and t == killed_at:
                os.kill(os.getpid(), signal.SIGKILL)  # no farewell, no clean exit

        return train_rank(*parts, transport, on_step=on_step, unannounced_leaves=True,
                          membership=membership)

    ranks = spawn_local(rank, 3, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0,
                        may_vanish=(victim,))
    assert ranks[victim] is None
    effective = parse_membership(effective, initial_workers=workers, inner_steps=H,
                                 steps=STEPS)
    survivors = [r for r in ranks if r is not None]
    assert all(r.membership == effective for r in survivors) and len(survivors) == 2
    torch.set_num_threads(1)
    sim = train_workers(*parts, membership=effective)
    run = ranks[0].run
    assert run.ledger == sim.ledger  # the victim's part up to boundary 4 included
    assert run.workers == tuple(r.rank for r in survivors)
    assert all(torch.equal(a, b) for a, b in zip(run.models, sim.models, strict=True))
    assert [_without_seconds(r) for r in run.records] == \
        [_without_seconds(r) for r in sim.records]
    assert all(r.replicas_identical for r in run.records)
    assert ranks[0].wire[victim].payload_sent_nbytes == sum(
        e.nbytes for e in run.ledger.comm_events() if e.src == worker_name(victim)) > 0


def test_unannounced_leaves_need_a_record_at_every_boundary():
    parts, membership = _parts({4: "join"}, workers=2)
    settings = TrainingSettings(steps=STEPS, workers=2, eval_every=4)
    transport = types.SimpleNamespace(rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"eval_every \(4\) must equal inner_steps \(2\)"):
        train_rank(*parts[:5], settings, transport, unannounced_leaves=True,
                   membership=membership)
