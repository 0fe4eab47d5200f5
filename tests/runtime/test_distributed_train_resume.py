"""A replicated run over torch.distributed (`train_rank`, one worker per process) stopped after
a checkpointed step and resumed ends with the simulator's models (bit for bit), merged ledger
and records: DiLoCo, and CO2 with its outer all-reduce in flight at the checkpoint. The ranks
agree on rank 0's step; what the checkpoints do not support is refused."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from tests.runtime.test_distributed import (
    ALGORITHMS,
    TIMEOUT_SECONDS,
    _registered,
    _setup,
    _without_seconds,
)

from lowcomm.cost.ledger import worker_name
from lowcomm.runtime import train_workers
from lowcomm.runtime.checkpoint import CheckpointPolicy, held, load
from lowcomm.runtime.distributed import RankFailedError, spawn_local, train_rank
from lowcomm.runtime.distributed.checkpoint import resume_rank, train_options
from lowcomm.runtime.membership import parse_membership

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


class _StopError(Exception):
    pass


def _ranks(parts, workers, policy, *, stop_after=None, resume=False):
    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        algorithm, _, _, params, _, settings = parts
        point = None
        if resume:
            options = train_options(algorithm, params, settings, None, policy, world_size=nproc)
            point = resume_rank(transport, policy, options, protocol="train", others="rank")

        def on_step(t):  # rank 0 stops once step `stop_after` is committed
            if r == 0 and stop_after is not None and t == stop_after + 1:
                raise _StopError(f"stopped after step {stop_after}")

        return train_rank(*parts, transport, on_step=on_step, checkpoint=policy, resume=point)

    return spawn_local(rank, workers, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)


def _assert_the_simulators_run(parts, ranks, first_step):
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    sim = train_workers(*parts)
    run = ranks[0].run
    assert run.ledger == sim.ledger and len(sim.ledger.comm_events()) > 0
    for ours, theirs, rank in zip(run.models, sim.models, ranks, strict=True):
        assert torch.equal(ours, theirs) and torch.equal(rank.model, theirs)
    assert [_without_seconds(r) for r in run.records] == \
        [_without_seconds(r) for r in sim.records]
    assert run.initial_val_loss == sim.initial_val_loss
    assert ranks[0].first_step == first_step
    comm = [e for e in run.ledger.comm_events() if e.round >= first_step]  # this process's
    for r, wire in enumerate(ranks[0].wire):
        assert wire.payload_sent_nbytes == sum(e.nbytes for e in comm if e.src == worker_name(r))
        assert wire.payload_received_nbytes == sum(e.nbytes for e in comm
                                                   if e.dst == worker_name(r))


def test_diloco_stopped_after_a_checkpoint_resumes_to_the_simulators_run(tmp_path):
    parts = _setup(ALGORITHMS["diloco"], 3, steps=6)  # records after steps 3 and 6
    policy = CheckpointPolicy(tmp_path, every=2)
    with pytest.raises(RankFailedError, match="stopped after step 4"):
        _ranks(parts, 3, policy, stop_after=4)
    assert load(tmp_path).next_round == 5 and len(load(tmp_path).records) == 1
    assert [c.next_round for c in held(tmp_path / "rank2.ckpt")] == [5, 3]
    ranks = _ranks(parts, 3, policy, resume=True)
    _assert_the_simulators_run(parts, ranks, first_step=5)
    assert load(tmp_path).next_round == 7 and load(tmp_path / "rank1.ckpt").next_round == 7


def test_co2_resumed_with_its_outer_all_reduce_in_flight(tmp_path):
    parts = _setup(_registered("co2"), 2, steps=6)  # inner_steps=2: a sync in flight
    policy = CheckpointPolicy(tmp_path, every=1, keep=2)
    with pytest.raises(RankFailedError, match="stopped after step 3"):
        _ranks(parts, 2, policy, stop_after=3)
    rank1 = held(tmp_path / "rank1.ckpt")  # rank 1 wrote step 4 too: rank 0 never committed
    assert [c.next_round for c in rank1] == [5, 4]
    for point in (load(tmp_path), rank1[1]):
        assert point.next_round == 4 and point.state["inbox"].pending()  # in flight
    ranks = _ranks(parts, 2, policy, resume=True)
    _assert_the_simulators_run(parts, ranks, first_step=4)


def test_resume_when_rank_1_wrote_a_step_rank_0_did_not(tmp_path):
    parts = _setup(ALGORITHMS["diloco"], 2, steps=6)
    policy = CheckpointPolicy(tmp_path, every=1, keep=2)
    with pytest.raises(RankFailedError, match="stopped after step 2"):
        _ranks(parts, 2, policy, stop_after=2)
    # as if rank 0 died between rank 1's write of step 2 and its own
    (tmp_path / "last.ckpt.1").replace(tmp_path / "last.ckpt")
    assert [c.next_round for c in held(tmp_path / "rank1.ckpt")] == [3, 2]
    ranks = _ranks(parts, 2, policy, resume=True)
    _assert_the_simulators_run(parts, ranks, first_step=2)


def test_checkpoints_refuse_a_membership_and_unannounced_leaves(tmp_path):
    algorithm, _, _, params, _, settings = _setup(ALGORITHMS["diloco"], 2, steps=6)
    policy = CheckpointPolicy(tmp_path)
    membership = parse_membership({2: "leave 1"}, initial_workers=2, inner_steps=2, steps=6)
    with pytest.raises(ValueError, match="do not go with a membership schedule"):
        train_options(algorithm, params, settings, membership, policy, world_size=2)
    with pytest.raises(ValueError, match="do not go with unannounced leaves"):
        train_options(algorithm, params, settings, None, policy, world_size=2,
                      unannounced_leaves=True)
