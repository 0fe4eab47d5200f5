"""Eager and delayed DiLoCo: against plain loops of the two outer-step rules, the bytes equal
DiLoCo's, which replicas stay identical, modeled utilization against blocking DiLoCo, bad input."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import diloco, eager_diloco, inner_step, outer_nesterov
from lowcomm.core import torch_generator
from lowcomm.cost import Accelerator, peer_traffic, scenario, timeline
from lowcomm.cost.timeline import collective_seconds

INNER = adamw(1e-2, weight_decay=0.1)
WORKERS, H, STEPS = 3, 4, 12


@cache
def _run(mode: str, eval_every: int | None = None):
    make = (lambda m: diloco(m, inner_optimizer=INNER, inner_steps=H)) if mode == "sync" else (
        lambda m: eager_diloco(m, inner_optimizer=INNER, inner_steps=H, mode=mode))
    return run(make, workers=WORKERS, steps=STEPS, eval_every=eval_every)


def _reference(mode: str) -> list[torch.Tensor]:
    """Every worker's outer model after the run, from the paper's rules written as a loop."""
    model, theta, worker_data, _ = workload(WORKERS)
    outer_opt = outer_nesterov()
    outer = [theta.clone() for _ in range(WORKERS)]
    outer_states = [outer_opt.init(theta) for _ in range(WORKERS)]
    inner_states = [INNER.init(theta) for _ in range(WORKERS)]
    history = []  # history[j-1][m] = Delta_m^(j)
    for j in range(1, STEPS // H + 1):
        deltas = []
        for m in range(WORKERS):
            local = outer[m].clone()
            for t in range((j - 1) * H + 1, j * H + 1):
                batch = worker_data.sample(m, torch_generator(0, round=t, client=m,
                                                              purpose="batch"))
                local, inner_states[m], _ = inner_step(model, local, inner_states[m], INNER,
                                                       batch)
            deltas.append(outer[m] - local)
        history.append(deltas)
        for m in range(WORKERS):
            previous = history[-2] if j > 1 else None
            if mode == "delayed":
                if previous is None:
                    continue  # Delta^(0) = 0: no outer step after phase 1
                step = torch.stack(previous).mean(0)
            else:  # (1/M) Delta_m^(j) + (1/M) sum_{m' != m} Delta_m'^(j-1)
                others = (sum(previous[k] for k in range(WORKERS) if k != m)
                          if previous is not None else 0)
                step = (deltas[m] + others) / WORKERS
            outer[m], outer_states[m] = outer_opt.apply(outer[m], step, outer_states[m])
    for m in range(WORKERS):  # after the run: the last mean arrives
        last = history[-1]
        step = (torch.stack(last).mean(0) if mode == "delayed"
                else sum(last[k] for k in range(WORKERS) if k != m) / WORKERS)
        outer[m], outer_states[m] = outer_opt.apply(outer[m], step, outer_states[m])
    return outer


@pytest.mark.parametrize("mode", ["delayed", "eager"])
def test_matches_a_plain_loop_of_the_outer_step_rule(mode):
    result = _run(mode)
    for served, expected in zip(result.models, _reference(mode), strict=True):
        torch.testing.assert_close(served, expected, rtol=1e-5, atol=1e-6)


def test_delayed_replicas_stay_identical_and_eager_ones_do_not():
    delayed, eager = _run("delayed", eval_every=1), _run("eager", eval_every=1)
    assert all(r.replicas_identical for r in delayed.records)
    # eager: each worker's own fresh outer gradient enters its outer step first
    assert [r.replicas_identical for r in eager.records] == [t < H for t in range(1, STEPS + 1)]
    assert all(0 < r.replica_spread < 1.0 for r in eager.records[H - 1:])


def test_bytes_and_compute_equal_diloco():
    sync = _run("sync")
    for mode in ("delayed", "eager"):
        ours = _run(mode)
        assert peer_traffic(ours.ledger) == peer_traffic(sync.ledger)
        assert ours.ledger.totals().flops == sync.ledger.totals().flops


def test_overlapping_the_outer_step_raises_modeled_utilization():
    # A device on which a phase of H steps lasts exactly as long as one all-reduce (c): DiLoCo
    # waits c after each of its 3 phases; the overlapped variants hide each all-reduce behind
    # the next phase and wait only for the last one.
    sync = _run("sync")
    net = scenario("internet")
    step_flops = next(iter(sync.ledger.compute_events())).flops
    sync_seconds = collective_seconds(next(iter(sync.ledger.collective_events())), net)
    device = Accelerator(flops_per_second=H * step_flops / sync_seconds)
    blocking = timeline(sync.ledger, network=net, device=device)
    assert blocking.utilization == pytest.approx(3 / 6)
    for mode in ("delayed", "eager"):
        overlapped = timeline(_run(mode).ledger, network=net, device=device)
        assert overlapped.utilization == pytest.approx(3 / 4)


def test_bad_settings_fail_at_construction():
    model = workload(2)[0]
    with pytest.raises(ValueError, match=r"inner_steps \(H\) must be an integer >= 1; got 0"):
        eager_diloco(model, inner_optimizer=INNER, inner_steps=0)
    with pytest.raises(ValueError, match="mode must be one of eager, delayed; got 'lazy'"):
        eager_diloco(model, inner_optimizer=INNER, inner_steps=4, mode="lazy")
