"""Faults in the star runtime over torch.distributed (gloo, loopback, a server and 2 client
ranks): a client rank killed by SIGKILL, a stalled upload and corrupted bytes drop their
clients, the round completes with the rest, and the server ends with the simulator's ledger
and parameters under the same faults."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from tests.conftest import make_model

from lowcomm.algorithms import fedavg, sgd
from lowcomm.cost import ComputeEvent, DropEvent, FlopCounter, Ledger
from lowcomm.data import synthetic
from lowcomm.runtime import SimulationSettings, sequential, simulate
from lowcomm.runtime.distributed import spawn_local
from lowcomm.runtime.distributed.star import simulate_rank
from lowcomm.runtime.faults import FaultPlan

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

TIMEOUT_SECONDS = 300.0  # process start and transfers on a loaded machine; never measured
ROUND_TIMEOUT_SECONDS = 5.0  # the server's deadline for uploads (a stall waits this long)
RANKS = 3  # the server; rank 1 hosts clients 0 and 2, rank 2 hosts clients 1 and 3


def _parts():
    dataset = synthetic(1.0, 1.0, num_clients=4, seed=0)
    spec, model, params = make_model("mlp", input_shape=tuple(dataset.input_shape))
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    flops.step((1, *dataset.input_shape))  # counted once here; the forked ranks inherit it
    settings = SimulationSettings(rounds=3, clients_per_round=4, seed=1,
                                  round_timeout_seconds=ROUND_TIMEOUT_SECONDS)
    algorithm = fedavg(model, client_optimizer=sgd(0.1), batch_size=8)
    return algorithm, dataset, model, params, flops, settings


def test_killed_stalled_and_corrupting_clients_drop_out_as_in_the_simulator():
    parts = _parts()
    faults = FaultPlan.parse(["corrupt client 1 at round 1",  # bytes: the CRC refuses them
                              "kill client 2 at round 2",  # rank 1's process dies (SIGKILL)
                              "stall client 3 at round 2",  # misses the deadline
                              "corrupt nan client 3 at round 3"])  # the guard refuses it

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        return simulate_rank(*parts, transport, executor=sequential(), faults=faults)

    ranks = spawn_local(rank, RANKS, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0,
                        may_vanish=(1,))
    assert ranks[1] is None  # the killed rank left no result: it really died
    run = ranks[0].run
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    # in the simulator a kill strikes one client; over gloo it kills the rank, and so both of
    # the clients rank 1 hosts
    sim = simulate(*parts, executor=sequential(), faults=dataclasses.replace(
        faults, faults=(*faults.faults, FaultPlan.parse(["kill client 0 at round 2"]).faults[0])))
    assert run.ledger.drop_events() == sim.ledger.drop_events() == [
        DropEvent(1, "client:1", "refused"),
        DropEvent(2, "client:0", "timeout"), DropEvent(2, "client:2", "timeout"),
        DropEvent(2, "client:3", "timeout"),
        DropEvent(3, "client:0", "lost"), DropEvent(3, "client:2", "lost"),
        DropEvent(3, "client:3", "non-finite")]
    # event for event, but for the stalled client's FLOPs: the server never got its control
    # message (the simulator knows the client trained)
    stalled = ComputeEvent(2, "client:3", 0, "train")
    expected = Ledger(e for e in sim.ledger if not (isinstance(e, ComputeEvent) and (
        e.round, e.worker) == (stalled.round, stalled.worker)))
    assert run.ledger == expected
    assert torch.equal(run.params, sim.params)  # nothing of the dropped clients reached it
    assert torch.isfinite(run.params).all()
    assert [(r.clients, r.dropped, r.updated) for r in run.rounds] == \
        [(r.clients, r.dropped, r.updated) for r in sim.rounds] == \
        [(3, 1, True), (1, 3, True), (1, 3, True)]
