"""Elastic membership in the simulator: workers join and leave between outer steps, the joiner
receives the current state over a measured transfer, and the live replicas stay identical."""

from __future__ import annotations

import pytest
import torch
from tests.algorithms.replicated_runs import workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import ddp, diloco, noloco, streaming_diloco
from lowcomm.core import Payload, serialize
from lowcomm.cost.ledger import CollectiveEvent, worker_name
from lowcomm.runtime import TrainingSettings, train_workers
from lowcomm.runtime.elastic import JOIN_CHANNEL
from lowcomm.runtime.membership import parse_membership

H, STEPS = 2, 8


def _diloco(model):
    return diloco(model, inner_optimizer=adamw(1e-2), inner_steps=H)


def elastic_run(schedule, *, workers: int = 2, make=_diloco, steps: int = STEPS):
    membership = parse_membership(schedule, initial_workers=workers, inner_steps=H, steps=steps)
    model, params, data, flops = workload(membership.total_ids)
    settings = TrainingSettings(steps=steps, workers=workers, eval_every=H)
    result = train_workers(make(model), data, model, params, flops, settings,
                           membership=membership)
    return result, params


def _steppers(ledger, t):
    return sorted({e.worker for e in ledger.compute_events() if e.round == t})


def _allreduce(ledger, t):
    (event,) = [e for e in ledger if isinstance(e, CollectiveEvent) and e.round == t
                and e.collective == "allreduce"]
    return event


def _shared_nbytes(d: int) -> int:
    """The join transfer's size, built independently: theta and the Nesterov buffer, [d] fp32."""
    zeros = torch.zeros(d)
    return len(serialize(Payload({"outer": zeros, "outer_state.buffer": zeros})))


def test_a_joiner_receives_the_state_and_the_replicas_stay_identical():
    result, params = elastic_run({4: "join"})
    ledger = result.ledger
    assert result.workers == (0, 1, 2)
    assert _steppers(ledger, 4) == ["worker:0", "worker:1"]
    assert _steppers(ledger, 5) == ["worker:0", "worker:1", "worker:2"]
    join = [e for e in ledger.comm_events() if e.channel == JOIN_CHANNEL]
    assert [(e.round, e.src, e.dst) for e in join] == [(4, "worker:0", "worker:2")]
    assert join[0].nbytes == _shared_nbytes(params.numel())
    assert _allreduce(ledger, 4).participants == ("worker:0", "worker:1")
    ring = _allreduce(ledger, 6)  # the ring now holds the joiner: 2(p-1) hops of p transfers
    assert ring.participants == ("worker:0", "worker:1", "worker:2")
    assert len(ring.hop_nbytes) == 4
    assert sum(e.channel == "outer_grad" and e.round == 6 for e in ledger.comm_events()) == 12
    assert all(r.replicas_identical for r in result.records) and len(result.records) == 4
    assert all(torch.equal(m, result.models[0]) for m in result.models)
    assert not torch.equal(result.models[0], params)


def test_a_leaver_stops_and_the_rest_average_without_it():
    result, _ = elastic_run({4: "leave 0"}, workers=3)
    ledger = result.ledger
    assert result.workers == (1, 2)
    assert _steppers(ledger, 5) == ["worker:1", "worker:2"]
    assert all(e.round <= 4 for e in ledger if getattr(e, "worker", None) == "worker:0")
    assert _allreduce(ledger, 6).participants == ("worker:1", "worker:2")
    assert not any(e.channel == JOIN_CHANNEL for e in ledger.comm_events())
    assert all(r.replicas_identical for r in result.records)


def test_join_and_leave_at_one_boundary_and_a_second_join():
    result, _ = elastic_run({4: ["leave 0", "join"], 6: "join"})
    ledger = result.ledger
    assert result.workers == (1, 2, 3)
    join = [(e.round, e.src, e.dst) for e in ledger.comm_events() if e.channel == JOIN_CHANNEL]
    assert join == [(4, "worker:1", "worker:2"), (6, "worker:1", "worker:3")]
    assert _allreduce(ledger, 6).participants == ("worker:1", "worker:2")
    assert _allreduce(ledger, 8).participants == ("worker:1", "worker:2", "worker:3")
    assert all(r.replicas_identical for r in result.records)
    assert len({tuple(m.tolist()) for m in result.models}) == 1


def test_two_joiners_at_once_receive_over_a_tree():
    result, _ = elastic_run({4: ["join", "join"]})
    join = [(e.src, e.dst) for e in result.ledger.comm_events() if e.channel == JOIN_CHANNEL]
    assert join == [("worker:0", "worker:2"), ("worker:0", "worker:3")]  # one hop each
    assert all(r.replicas_identical for r in result.records)


def test_ddp_joins_with_its_optimizer_state():
    membership = parse_membership({4: "join"}, initial_workers=2, inner_steps=1, steps=6)
    model, params, data, flops = workload(3)
    result = train_workers(ddp(model, optimizer=adamw(1e-2)), data, model, params, flops,
                           TrainingSettings(steps=6, workers=2, eval_every=1),
                           membership=membership)
    (join,) = [e for e in result.ledger.comm_events() if e.channel == JOIN_CHANNEL]
    d = params.numel()
    expected = Payload({"params": torch.zeros(d), "opt_state.m": torch.zeros(d),
                        "opt_state.v": torch.zeros(d), "opt_state.count": torch.zeros(1)})
    assert join.nbytes == len(serialize(expected))
    assert all(r.replicas_identical for r in result.records)


def test_an_empty_schedule_is_the_static_run():
    model, params, data, flops = workload(2)
    settings = TrainingSettings(steps=STEPS, workers=2, eval_every=H)
    static = train_workers(_diloco(model), data, model, params, flops, settings)
    empty = train_workers(_diloco(model), data, model, params, flops, settings,
                          membership=parse_membership({}, initial_workers=2, inner_steps=H,
                                                      steps=STEPS))
    assert empty.ledger == static.ledger and static.workers == empty.workers == (0, 1)
    assert all(torch.equal(a, b) for a, b in zip(empty.models, static.models, strict=True))
    assert [worker_name(w) for w in static.workers] == _steppers(static.ledger, 1)


@pytest.mark.parametrize("make, words", [
    (lambda m: noloco(m, inner_optimizer=adamw(1e-2), inner_steps=H),
     "noloco does not support elastic membership"),
    (lambda m: streaming_diloco(m, inner_optimizer=adamw(1e-2), inner_steps=H, fragments=1,
                                overlap_steps=0),
     "streaming_diloco does not support elastic membership"),
    (lambda m: diloco(m, inner_optimizer=adamw(1e-2), inner_steps=4),
     "not sync points of diloco, which syncs every inner_steps=4"),
])
def test_algorithms_that_cannot_change_membership_are_refused(make, words):
    with pytest.raises(ValueError, match=words):
        elastic_run({4: "join"}, make=make)


def test_a_membership_of_another_run_is_refused():
    membership = parse_membership({4: "join"}, initial_workers=3, inner_steps=H, steps=STEPS)
    model, params, data, flops = workload(4)
    with pytest.raises(ValueError, match="membership is for 3 initial workers and 8 steps"):
        train_workers(_diloco(model), data, model, params, flops,
                      TrainingSettings(steps=STEPS, workers=2), membership=membership)


def test_an_optimizer_state_crosses_as_named_arrays_and_back():
    from lowcomm.algorithms.optim import state_arrays, state_from_arrays
    from lowcomm.core import deserialize

    optimizer = adamw(1e-2)
    params = torch.arange(5.0)
    _, state = optimizer.apply(params, torch.ones(5), optimizer.init(params))
    wire = deserialize(serialize(Payload(state_arrays("s", state))))
    back = state_from_arrays("s", optimizer.init(params), wire)
    assert all(torch.equal(getattr(back, f), getattr(state, f)) for f in ("m", "v", "count"))
    with pytest.raises(ValueError, match=r"'s.m' is torch.float32\[3\]; expected"):
        state_from_arrays("s", state, {**state_arrays("s", state), "s.m": torch.zeros(3)})
