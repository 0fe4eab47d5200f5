"""DDP, DiLoCo and Local SGD: against plain loops, exact byte ratios by the ledger, replica
hashes, determinism and bad input."""

from __future__ import annotations

import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms import adamw, sgd
from lowcomm.algorithms.replicated import (
    ReplicatedAlgorithm,
    StepOutput,
    ddp,
    diloco,
    inner_step,
    localsgd,
    param_hash,
)
from lowcomm.compress import fp16
from lowcomm.cost import peer_traffic
from lowcomm.runtime import TrainingSettings, train_workers


def _batches(worker_data, workers: int, steps: int, seed: int = 0):
    from lowcomm.core import torch_generator
    return {(t, w): worker_data.sample(w, torch_generator(seed, round=t, client=w,
                                                          purpose="batch"))
            for t in range(1, steps + 1) for w in range(workers)}


def test_diloco_matches_a_plain_loop_of_algorithm_1():
    p, h, steps = 3, 4, 12
    inner, outer = adamw(1e-2, weight_decay=0.1), sgd(0.7, momentum=0.9, nesterov=True)
    result = run(lambda m: diloco(m, inner_optimizer=inner, inner_steps=h,
                                  outer_optimizer=outer), workers=p, steps=steps)
    model, theta, worker_data, _ = workload(p)
    batches = _batches(worker_data, p, steps)
    outer_state = outer.init(theta)
    inner_states = [inner.init(theta) for _ in range(p)]
    for t0 in range(0, steps, h):
        deltas = []
        for w in range(p):
            theta_i = theta.clone()
            for t in range(t0 + 1, t0 + h + 1):
                theta_i, inner_states[w], _ = inner_step(model, theta_i, inner_states[w], inner,
                                                         batches[(t, w)])
            deltas.append(theta - theta_i)
        theta, outer_state = outer.apply(theta, torch.stack(deltas).mean(0), outer_state)
    for served in result.models:
        torch.testing.assert_close(served, theta, rtol=1e-5, atol=1e-6)


def test_ddp_matches_single_machine_training_on_the_union_batch():
    p, steps = 4, 6
    opt = adamw(1e-2)
    result = run(lambda m: ddp(m, optimizer=opt), workers=p, steps=steps)
    model, theta, worker_data, _ = workload(p)
    batches = _batches(worker_data, p, steps)
    state = opt.init(theta)
    for t in range(1, steps + 1):
        x = torch.cat([batches[(t, w)][0] for w in range(p)])
        y = torch.cat([batches[(t, w)][1] for w in range(p)])
        theta, state, _ = inner_step(model, theta, state, opt, (x, y))
    torch.testing.assert_close(result.models[0], theta, rtol=1e-4, atol=1e-5)


def test_localsgd_is_diloco_with_plain_averaging():
    inner = sgd(0.05)
    a = run(lambda m: localsgd(m, inner_optimizer=inner, inner_steps=5), workers=3, steps=10)
    b = run(lambda m: diloco(m, inner_optimizer=inner, inner_steps=5, outer_optimizer=sgd(1.0)),
            workers=3, steps=10)
    assert param_hash(a.models[0]) == param_hash(b.models[0])


@pytest.mark.parametrize("h", [2, 5, 10])
def test_diloco_sends_exactly_h_times_fewer_bytes_than_ddp(h):
    steps, p = 20, 4
    base = run(lambda m: ddp(m, optimizer=adamw(1e-3)), workers=p, steps=steps)
    ours = run(lambda m: diloco(m, inner_optimizer=adamw(1e-3), inner_steps=h), workers=p,
               steps=steps)
    ddp_bytes = peer_traffic(base.ledger)
    diloco_bytes = peer_traffic(ours.ledger)
    assert ddp_bytes.total_nbytes == h * diloco_bytes.total_nbytes
    for w, sent in diloco_bytes.sent_nbytes.items():
        assert ddp_bytes.sent_nbytes[w] == h * sent
    assert diloco_bytes.collectives == {"allreduce": steps // h}
    assert ddp_bytes.peak_sync_nbytes == diloco_bytes.peak_sync_nbytes  # same burst size
    assert base.ledger.totals().flops == ours.ledger.totals().flops  # same compute


def test_fp16_outer_gradients_halve_the_bytes():
    make = lambda codec: (lambda m: diloco(m, inner_optimizer=adamw(1e-3), inner_steps=5,  # noqa: E731
                                           codec=codec))
    full = peer_traffic(run(make(None), workers=4, steps=10).ledger).total_nbytes
    half = peer_traffic(run(make(fp16()), workers=4, steps=10).ledger).total_nbytes
    assert 0.49 < half / full < 0.52


@pytest.mark.parametrize("algorithm", [
    lambda m: ddp(m, optimizer=adamw(1e-3)),
    lambda m: diloco(m, inner_optimizer=adamw(1e-3), inner_steps=3, codec=fp16()),
], ids=["ddp", "diloco-fp16"])
def test_replicas_hold_identical_parameters_after_every_sync(algorithm):
    result = run(algorithm, workers=4, steps=9, eval_every=3)
    assert all(r.replicas_identical and r.replica_spread == 0 for r in result.records)
    assert len({param_hash(m) for m in result.models}) == 1


def test_replicas_drift_between_syncs_but_serve_the_synchronised_model():
    result = run(lambda m: localsgd(m, inner_optimizer=sgd(0.05), inner_steps=4), workers=3,
                 steps=6, eval_every=1)
    assert all(r.replicas_identical for r in result.records)  # the served (outer) model
    working = [param_hash(s.params) for s in result.states]  # two steps into a phase
    assert len(set(working)) == 3


def test_same_seed_same_ledger_and_parameters():
    make = lambda m: diloco(m, inner_optimizer=adamw(1e-3), inner_steps=4)  # noqa: E731
    a, b = run(make, workers=3, steps=8), run(make, workers=3, steps=8)
    assert a.ledger == b.ledger
    assert param_hash(a.models[0]) == param_hash(b.models[0])
    c = run(make, workers=3, steps=8, seed=1)
    assert param_hash(c.models[0]) != param_hash(a.models[0])


def test_diloco_learns():
    result = run(lambda m: diloco(m, inner_optimizer=adamw(3e-3), inner_steps=10), workers=4,
                 steps=60, hidden=32)
    assert result.records[-1].val_loss < result.initial_val_loss - 0.5


def test_bad_settings_fail_at_construction():
    model, *_ = workload(2)
    with pytest.raises(ValueError, match=r"inner_steps \(H\) must be an integer >= 1; got 0"):
        diloco(model, inner_optimizer=adamw(1e-3), inner_steps=0)
    with pytest.raises(ValueError, match="steps must be an integer >= 1; got 0"):
        TrainingSettings(steps=0, workers=2)
    with pytest.raises(ValueError, match="total_steps must be an integer > warmup_steps"):
        adamw(1e-3, warmup_steps=10, total_steps=5)


def test_a_collective_missing_a_worker_is_refused():
    model, params, worker_data, flops = workload(2)
    honest = ddp(model, optimizer=adamw(1e-3))

    def step(state, batch, ctx):
        out = honest.step(state, batch, ctx)
        posts = out.posts if ctx.worker == 0 else ()
        return StepOutput(out.state, out.loss, posts, out.steps)

    broken = ReplicatedAlgorithm(**{**honest.__dict__, "step": step})
    with pytest.raises(ValueError, match=r"workers \[0\] posted AllReduce 'grad'.*\[1\] did not"):
        train_workers(broken, worker_data, model, params, flops,
                      TrainingSettings(steps=1, workers=2))
