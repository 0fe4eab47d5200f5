"""The torch.distributed runtime (gloo, loopback, 2-3 processes) against the simulator: the
same ledger event for event, the same parameters bit for bit, the transport's byte counters
equal to the ledger, and bad bytes, wrong tokens and diverging ranks refused with clear errors."""

from __future__ import annotations

import logging
import sys

import pytest
import torch
import torch.distributed as dist
from tests.algorithms.replicated_runs import BATCH, workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import (
    AllGather,
    AllReduce,
    Broadcast,
    Exchange,
    ReplicatedAlgorithm,
    StepOutput,
    ddp,
    diloco,
)
from lowcomm.algorithms.replicated.inner import gradient
from lowcomm.compress import fp16, fp32
from lowcomm.core import Payload
from lowcomm.cost.ledger import worker_name
from lowcomm.runtime import TrainingSettings, train_workers
from lowcomm.runtime.distributed import RankFailedError, join, spawn_local, train_rank

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

TIMEOUT_SECONDS = 300.0  # process start on a loaded machine; never a measured threshold


def every_collective(model) -> ReplicatedAlgorithm:
    """A test algorithm posting all four collectives, a sub-group all-reduce and delays."""
    def step(params, batch, ctx):
        loss, g = gradient(model, params, batch)
        w, p = ctx.worker, ctx.workers
        posts = [AllReduce("g", g, fp16(), delay_steps=ctx.step % 2),
                 AllGather("ag", Payload(x=g[: 3 + w].numpy())),
                 Broadcast("b", Payload(y=g[:5].numpy()) if w == p - 1 else None, root=p - 1),
                 AllReduce("sub", g[:50], fp32(), group=(0, 2) if w in (0, 2) else (w,))]
        if w ^ 1 < p:
            posts.append(Exchange("pair", Payload(z=g[: 7 + w].numpy()), w ^ 1))
        return StepOutput(params, loss, tuple(posts), steps={len(batch[1]): 1})

    def receive(params, received, ctx):
        if received.channel == "g":
            return params - 0.1 * received.value
        if received.channel == "ag":  # payloads from the others change the model too
            return params + 1e-3 * float(sum(r["x"].sum() for r in received.value))
        return params

    return ReplicatedAlgorithm("every_collective", {}, lambda params, w, p: params.clone(),
                               step, receive, lambda params: params, model.layout.size, "test")


ALGORITHMS = {
    "ddp": lambda m: ddp(m, optimizer=adamw(1e-2)),
    "diloco": lambda m: diloco(m, inner_optimizer=adamw(1e-2), inner_steps=2),
    "diloco-fp16": lambda m: diloco(m, inner_optimizer=adamw(1e-2), inner_steps=3, codec=fp16()),
    "every-collective": every_collective,
}


def _setup(make, workers: int, steps: int):
    model, params, data, flops = workload(workers)
    flops.step((BATCH, *data.input_shape))  # counted once here; the forked ranks inherit it
    settings = TrainingSettings(steps=steps, workers=workers, eval_every=3)
    return make(model), data, model, params, flops, settings


def _distributed(parts, workers: int, *, tokens: dict | None = None, **options):
    def rank(r, nproc, ep):
        # the ranks' refusals are logged: show them on the (captured) standard error
        logging.getLogger("lowcomm.distributed").addHandler(logging.StreamHandler(sys.__stderr__))
        transport = ep.join(r, nproc, token=(tokens or {}).get(r, ep.token),
                            timeout_seconds=TIMEOUT_SECONDS, **options)
        return train_rank(*parts, transport)

    return spawn_local(rank, workers, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)


def _without_seconds(record):
    return {**record.__dict__, "simulator_seconds": None}


@pytest.mark.parametrize(("name", "workers"), [("ddp", 2), ("diloco", 3), ("diloco-fp16", 2),
                                               ("every-collective", 3)])
def test_same_ledger_parameters_and_records_as_the_simulator(name, workers):
    parts = _setup(ALGORITHMS[name], workers, steps=6)
    ranks = _distributed(parts, workers)
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    sim = train_workers(*parts)
    run = ranks[0].run
    assert all(r.run is None for r in ranks[1:])
    assert run.ledger == sim.ledger  # event for event: each transfer's bytes, hops, order
    assert run.ledger.totals() == sim.ledger.totals()
    assert len(run.ledger.comm_events()) > 0
    for ours, theirs, rank in zip(run.models, sim.models, ranks, strict=True):
        assert torch.equal(ours, theirs) and torch.equal(rank.model, theirs)
    assert [_without_seconds(r) for r in run.records] == \
        [_without_seconds(r) for r in sim.records]
    assert run.initial_val_loss == sim.initial_val_loss


def _registered(name: str):
    """`lowcomm train`'s factory of `name`, on settings that fit the tiny MLP (3 layers)."""
    from lowcomm.cli.train_build import ALGORITHMS as REGISTRY
    from lowcomm.cli.train_config import TrainConfig

    fit = {"fragments": 3, "inner_steps": 6} if name == "streaming_diloco" else {"inner_steps": 2}
    config = TrainConfig(algorithm=name, workers=2, steps=12, warmup_steps=1, **fit)
    return lambda model: REGISTRY[name](model, config)


def _registry_names():
    from lowcomm.cli.train_build import ALGORITHMS as REGISTRY

    return sorted(REGISTRY)


@pytest.mark.parametrize("name", _registry_names())
def test_every_algorithm_of_lowcomm_train_gives_the_simulators_ledger(name):
    """The contract of the runtimes: the same ledger and the same parameters, for every
    registered data-centre algorithm (new ones are covered as they are registered)."""
    parts = _setup(_registered(name), 2, steps=12 if name == "streaming_diloco" else 6)
    ranks = _distributed(parts, 2)
    torch.set_num_threads(1)
    sim = train_workers(*parts)
    assert ranks[0].run.ledger == sim.ledger and len(sim.ledger.comm_events()) > 0
    assert all(torch.equal(a, b) for a, b in zip(ranks[0].run.models, sim.models, strict=True))


@pytest.mark.parametrize(("name", "workers"), [("ddp", 3), ("every-collective", 3)])
def test_the_bytes_counted_at_the_transport_equal_the_ledger(name, workers):
    ranks = _distributed(_setup(ALGORITHMS[name], workers, steps=3), workers)
    ledger = ranks[0].run.ledger
    for w, counts in enumerate(ranks[0].wire):
        mine = worker_name(w)
        assert counts.payload_sent_nbytes == sum(e.nbytes for e in ledger.comm_events()
                                                 if e.src == mine) > 0
        assert counts.payload_received_nbytes == sum(e.nbytes for e in ledger.comm_events()
                                                     if e.dst == mine)
        assert counts.payload_messages_sent == sum(e.src == mine for e in ledger.comm_events())
        assert counts.control_sent_nbytes > 0  # counted apart, never in the ledger
    assert ranks[1].wire == (ranks[0].wire[1],)  # what rank 1 reported is what rank 0 holds


def _flip_a_byte(dst: int, data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]  # the last value before the CRC


def test_a_corrupted_payload_is_refused_by_its_receiver(capfd):
    parts = _setup(ALGORITHMS["ddp"], 2, steps=2)
    with pytest.raises(RankFailedError) as failed:
        _distributed(parts, 2, outgoing=_flip_a_byte)  # both ranks corrupt
    # Both receivers find the corruption; whichever refuses first may exit before the other
    # has read its frame (the other then sees a closed link), so at least one refusal is seen.
    refusals = {r: e for r, e in failed.value.errors.items()
                if e.startswith("PayloadRefusedError")}
    assert refusals, failed.value.errors
    logged = capfd.readouterr().err
    for r, error in refusals.items():
        assert error.startswith(f"PayloadRefusedError: rank {r} refused allreduce 'grad' of "
                                f"step 1, hop 0 from rank {1 - r}: payload is corrupted")
        assert f"rank {r} refused allreduce" in logged  # logged


def test_an_oversized_payload_is_refused_before_it_is_received():
    parts = _setup(ALGORITHMS["ddp"], 2, steps=2)
    with pytest.raises(RankFailedError) as failed:
        _distributed(parts, 2, max_nbytes=1000)
    assert "payload is oversized or empty" in failed.value.errors[0]
    assert "max_nbytes=1000" in failed.value.errors[0]


def test_a_rank_with_the_wrong_token_is_refused_and_logged(capfd):
    parts = _setup(ALGORITHMS["ddp"], 3, steps=1)
    with pytest.raises(RankFailedError) as failed:
        _distributed(parts, 3, tokens={2: "not-the-shared-secret-token"})
    errors = failed.value.errors
    assert sorted(errors) == [0, 1, 2]
    assert errors[0].startswith("TokenRefusedError: rank 0 refused rank(s) [2]")
    assert errors[2].startswith("TokenRefusedError: rank 2 refused rank(s) [0, 1]")
    assert "rank 1 refused rank(s) [2]" in capfd.readouterr().err


def test_ranks_that_run_different_collectives_fail_clearly():
    model, params, data, flops = workload(2)
    flops.step((BATCH, *data.input_shape))
    settings = TrainingSettings(steps=2, workers=2)
    codecs = [fp32(), fp16()]  # rank 1 was started with another codec

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        algorithm = ddp(model, optimizer=adamw(1e-2), codec=codecs[r])
        return train_rank(algorithm, data, model, params, flops, settings, transport)

    with pytest.raises(RankFailedError) as failed:
        spawn_local(rank, 2, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)
    assert "ScheduleMismatchError" in str(failed.value)
    assert "posted different collectives, delay_steps or codecs" in str(failed.value)


def test_bad_arguments_fail_before_anything_listens():
    with pytest.raises(ValueError, match="rank must be in"):
        join(rank=2, world_size=2, master_addr="127.0.0.1", master_port=1234, token="x" * 16)
    with pytest.raises(ValueError, match="token must be a shared secret of at least 16"):
        join(rank=0, world_size=2, master_addr="127.0.0.1", master_port=1234, token="short")
    with pytest.raises(ValueError, match="bind_address must be an address the other ranks"):
        join(rank=0, world_size=2, master_addr="127.0.0.1", master_port=1234, token="x" * 16,
             bind_address="0.0.0.0")
    with pytest.raises(ValueError, match="nproc must be an integer >= 1"):
        spawn_local(lambda *a: None, 0)


def posting_orders(model, *, cyclic: bool) -> ReplicatedAlgorithm:
    """Pair exchanges posted in different orders by different workers: worker 1 posts b (with
    2) before a (with 0). Acyclic, real processes cope; with `cyclic`, worker 0 also posts c
    (with 2) after a and worker 2 posts c before b: a < c < b < a, which would deadlock."""
    posts_of = {0: ["a", "c"] if cyclic else ["a"], 1: ["b", "a"],
                2: ["c", "b"] if cyclic else ["b"]}
    peers = {"a": (0, 1), "b": (1, 2), "c": (0, 2)}

    def step(params, batch, ctx):
        loss, g = gradient(model, params, batch)
        w = ctx.worker
        posts = tuple(Exchange(c, Payload(v=g[: 4 + w].numpy()), sum(peers[c]) - w)
                      for c in posts_of[w])
        return StepOutput(params, loss, posts, steps={len(batch[1]): 1})

    def receive(params, received, ctx):
        return params + 1e-3 * float(received.value["v"].sum())

    return ReplicatedAlgorithm("orders", {}, lambda params, w, p: params.clone(), step, receive,
                               lambda params: params, model.layout.size, "test")


def test_workers_may_post_in_different_but_compatible_orders():
    parts = _setup(lambda m: posting_orders(m, cyclic=False), 3, steps=2)
    ranks = _distributed(parts, 3)
    sim = train_workers(*parts)
    assert ranks[0].run.ledger == sim.ledger
    assert [e.channel for e in sim.ledger.collective_events()] == ["a@0-1", "b@1-2"] * 2
    assert all(torch.equal(a, b) for a, b in zip(ranks[0].run.models, sim.models, strict=True))


def test_the_simulator_refuses_posting_orders_that_would_deadlock_real_processes():
    parts = _setup(lambda m: posting_orders(m, cyclic=True), 3, steps=1)
    with pytest.raises(ValueError, match="in orders that contradict each other; real processes "
                                         "would deadlock"):
        train_workers(*parts)
