"""A star run over torch.distributed (a server and 2 client ranks, SCAFFOLD: the client ranks
hold the control variates) stopped after a checkpoint and resumed ends with the simulator's
parameters (bit for bit), ledger, records and client states; the ranks agree on the round
when a client rank's files are a round ahead of rank 0's."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from tests.runtime.test_distributed_star import TIMEOUT_SECONDS, _parts, _without_seconds

from lowcomm.data import synthetic
from lowcomm.runtime import sequential, simulate
from lowcomm.runtime.checkpoint import CheckpointError, CheckpointPolicy, held, load
from lowcomm.runtime.distributed import RankFailedError, spawn_local
from lowcomm.runtime.distributed.checkpoint import resume_rank, star_options
from lowcomm.runtime.distributed.star import simulate_rank, wire_equals_ledger
from lowcomm.runtime.faults import FaultPlan

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

RANKS = 3


class _StopError(Exception):
    pass


def _ranks(parts, policy, *, stop_after=None, resume=False):
    def on_round(record):
        if record.round == stop_after:
            raise _StopError(f"stopped after round {stop_after}")

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        algorithm, dataset, _, params, flops, settings = parts
        point = None
        if resume:
            options = star_options(algorithm, dataset, params, flops, settings, sequential(),
                                   policy, faults=FaultPlan(), world_size=nproc)
            point = resume_rank(transport, policy, options)
        return simulate_rank(*parts, transport, executor=sequential(), checkpoint=policy,
                             resume=point, on_round=on_round)

    return spawn_local(rank, RANKS, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)


@pytest.fixture(scope="module")
def dataset():
    return synthetic(1.0, 1.0, num_clients=7, seed=0)


def test_resume_when_the_client_ranks_wrote_a_round_rank_0_did_not(dataset, tmp_path):
    parts = _parts("scaffold", dataset)  # 3 rounds
    policy = CheckpointPolicy(tmp_path, every=1, keep=2)
    with pytest.raises(RankFailedError, match="stopped after round 2"):
        _ranks(parts, policy, stop_after=2)
    assert load(tmp_path).next_round == 3
    assert [c.next_round for c in held(tmp_path / "rank1.ckpt")] == [3, 2]
    # as if rank 0 died between the client ranks' writes of round 2 and its own
    os.replace(tmp_path / "last.ckpt.1", tmp_path / "last.ckpt")
    ranks = _ranks(parts, policy, resume=True)
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    sim = simulate(*parts, executor=sequential())
    run = ranks[0].run
    assert torch.equal(run.params, sim.params)
    assert run.ledger == sim.ledger and len(sim.ledger.comm_events()) > 0
    assert [_without_seconds(r) for r in run.rounds] == [_without_seconds(r) for r in sim.rounds]
    assert run.initial == sim.initial
    assert ranks[0].ledger_start > 0 and wire_equals_ledger(ranks[0])
    held_states = {c: r.client_states for r in ranks[1:] for c in r.client_states.clients()}
    assert sorted(held_states) == sorted(sim.client_states.clients())
    for c, store in held_states.items():
        ours, theirs = store.get(c), sim.client_states.get(c)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert load(tmp_path).next_round == 4  # the last round was checkpointed
    assert load(tmp_path / "rank2.ckpt").next_round == 4


def test_a_client_rank_without_the_round_of_rank_0_stops_the_resume(dataset, tmp_path):
    parts = _parts("scaffold", dataset)
    policy = CheckpointPolicy(tmp_path, every=1)
    with pytest.raises(RankFailedError, match="stopped after round 1"):
        _ranks(parts, policy, stop_after=1)
    (tmp_path / "rank2.ckpt").unlink()
    with pytest.raises(RankFailedError) as failed:
        _ranks(parts, policy, resume=True)
    assert "client rank(s) 2 could not resume from round 1" in failed.value.errors[0]
    assert "holds no checkpoint of round 1" in failed.value.errors[2]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load(tmp_path / "rank2.ckpt")


def test_checkpoints_every_other_round_resume_from_the_last_due_one(dataset, tmp_path):
    parts = _parts("scaffold", dataset)  # 3 rounds: due after rounds 2 and 3 (the last)
    policy = CheckpointPolicy(tmp_path, every=2)
    with pytest.raises(RankFailedError, match="stopped after round 2"):
        _ranks(parts, policy, stop_after=2)
    assert load(tmp_path).next_round == 3
    assert [c.next_round for c in held(tmp_path / "rank2.ckpt")] == [3]  # nothing after round 1
    ranks = _ranks(parts, policy, resume=True)
    torch.set_num_threads(1)
    sim = simulate(*parts, executor=sequential())
    assert torch.equal(ranks[0].run.params, sim.params) and ranks[0].run.ledger == sim.ledger
