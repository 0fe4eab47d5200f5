"""CO2: bytes equal DiLoCo's at H = tau, the all-reduce overlaps the next round in the modeled
timeline, replicas stay identical, the penalty and the clip change the update, bad input."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import co2, diloco
from lowcomm.algorithms.replicated.base import Received, StepContext
from lowcomm.algorithms.replicated.co2 import clip_elements, staleness_factor
from lowcomm.cost import Accelerator, peer_traffic, scenario, timeline
from lowcomm.cost.timeline import collective_seconds

INNER = adamw(1e-2, weight_decay=0.1)
WORKERS, TAU, STEPS = 3, 4, 12


@cache
def _run(kind: str, eval_every: int | None = None, **kw):
    make = ((lambda m: diloco(m, inner_optimizer=INNER, inner_steps=TAU)) if kind == "diloco"
            else (lambda m: co2(m, inner_optimizer=INNER, inner_steps=TAU, **kw)))
    return run(make, workers=WORKERS, steps=STEPS, eval_every=eval_every)


def test_bytes_and_compute_equal_diloco_at_h_equal_tau():
    ours, sync = _run("co2"), _run("diloco")
    assert peer_traffic(ours.ledger) == peer_traffic(sync.ledger)
    events = list(ours.ledger.collective_events())
    assert len(events) == STEPS // TAU
    assert ours.ledger.totals().flops == sync.ledger.totals().flops


def test_the_all_reduce_overlaps_the_next_round():
    sync = _run("diloco")
    net = scenario("internet")
    step_flops = next(iter(sync.ledger.compute_events())).flops
    seconds = collective_seconds(next(iter(sync.ledger.collective_events())), net)
    device = Accelerator(flops_per_second=TAU * step_flops / seconds)
    blocking = timeline(sync.ledger, network=net, device=device)
    overlapped = timeline(_run("co2").ledger, network=net, device=device)
    assert blocking.utilization == pytest.approx(3 / 6)
    assert overlapped.utilization == pytest.approx(3 / 4)


def test_replicas_stay_identical():
    assert all(r.replicas_identical for r in _run("co2", eval_every=1).records)


def test_penalty_and_clip_change_the_update():
    base = _run("co2", clip_threshold=0.01).models[0]
    for kw in ({"penalty": 0.0}, {"clip": False}):
        assert not torch.equal(_run("co2", clip_threshold=0.01, **kw).models[0], base)


def test_stabilisers_bound_and_shrink():
    m = torch.tensor([3.0, -4.0, 0.5])  # element-wise: the small element keeps its value
    assert torch.equal(clip_elements(m, 1.0), torch.tensor([1.0, -1.0, 0.5]))
    assert torch.equal(clip_elements(m, 10.0), m)
    delta, gap = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert staleness_factor(delta, gap, 1.0) == pytest.approx(3.0)
    assert staleness_factor(delta, gap, 0.0) == 1.0


def test_outer_step_matches_the_written_formula():
    # m <- clip(beta*m + Delta/lambda, phi) element-wise; theta <- theta - alpha*m; the gap is
    # theta^(t) - theta^(t-1). Hand-computed on a 3-vector, penalty 1, phi 0.5.
    model = workload(2)[0]
    algorithm = co2(model, inner_optimizer=INNER, outer_lr=2.0, outer_momentum=0.5,
                    penalty=1.0, clip_threshold=0.5)
    d = model.layout.size
    state = algorithm.init(torch.zeros(d), 0, 2)
    outer, previous = torch.zeros(d), torch.zeros(d)
    outer[:3], previous[:3] = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    momentum = torch.zeros(d)
    momentum[:3] = torch.tensor([0.4, -2.0, 0.0])
    delta = torch.zeros(d)
    delta[:3] = torch.tensor([0.0, 0.0, 1.0])  # ||gap|| = ||delta|| = 1: lambda = 2
    state = replace(state, outer=outer, previous=previous, momentum=momentum)
    ctx = StepContext(step=8, worker=0, workers=2, seed=0, generator=torch.Generator())
    new = algorithm.receive(state, Received("outer_grad", 4, delta), ctx)
    assert torch.allclose(new.momentum[:3], torch.tensor([0.2, -0.5, 0.5]))
    assert torch.allclose(new.outer[:3], torch.tensor([0.6, 2.0, 0.0]))
    assert torch.equal(new.previous, outer) and torch.equal(new.params, new.outer)


@pytest.mark.parametrize(("kw", "message"), [
    ({"inner_steps": 0}, r"inner_steps \(tau\) must be an integer >= 1; got 0"),
    ({"penalty": -1.0}, "penalty must be a finite number >= 0; got -1.0"),
    ({"clip_threshold": 0.0}, "clip_threshold must be a finite number > 0; got 0.0"),
    ({"outer_momentum": 1.0}, r"outer_momentum must be in \[0, 1\); got 1.0"),
    ({"outer_lr": 0}, "outer_lr must be a finite number > 0; got 0"),
])
def test_bad_settings_fail_at_construction(kw, message):
    with pytest.raises(ValueError, match=message):
        co2(workload(2)[0], inner_optimizer=INNER, **kw)
