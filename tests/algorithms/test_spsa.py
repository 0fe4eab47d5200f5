"""Shared-randomness SPSA (Just One Byte / MeZO): against a plain loop of the pseudocode,
bit-identical replicas after every step, exact bytes and counted work by the ledger, learning on
a convex problem, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms.replicated import Received, StepContext, param_hash, spsa
from lowcomm.compress import fp32_scalars, int8_scalars
from lowcomm.core import deserialize, torch_generator
from lowcomm.cost import peer_traffic
from lowcomm.runtime import TrainingSettings, train_workers

FRAMING = 19  # payload header 7 + descriptor of one 1-d array named "g" 8 + CRC 4


def _plain_loop(n: int, k: int, steps: int, *, lr: float, eps: float, quantizer, seed: int = 0):
    """Centralized SPSA over the n·k (seed, minibatch) pairs of each step, as the pseudocode
    reads: z from the (step, machine, sample) seed, g = (L(θ+εz) - L(θ-εz)) / 2ε on machine
    i's minibatch, ĝ = Q(g), then θ ← θ - lr/(n·k) Σ ĝ z in machine-then-sample order."""
    model, theta, worker_data, _ = workload(n)
    d = theta.numel()
    for t in range(1, steps + 1):
        terms = []
        for i in range(n):
            x, y = worker_data.sample(i, torch_generator(seed, round=t, client=i,
                                                         purpose="batch"))
            zs, gs = [], []
            for j in range(k):
                z = torch.randn(d, generator=torch_generator(seed, round=t, client=i,
                                                             purpose=f"spsa-z:{j}"))
                with torch.no_grad():
                    plus = float(model.loss(theta + eps * z, x, y))
                    minus = float(model.loss(theta - eps * z, x, y))
                zs.append(z)
                gs.append((plus - minus) / (2 * eps))
            rounding = torch_generator(seed, round=t, client=i, purpose="worker-step")
            g_hat = quantizer.decode(quantizer.encode(torch.tensor(gs, dtype=torch.float64),
                                                      rounding), k)
            terms += list(zip(g_hat.tolist(), zs, strict=True))
        for g, z in terms:
            theta = theta.add(z, alpha=-(lr / (n * k)) * g)  # θ - c·z, one rounding per entry
    return theta


@pytest.mark.parametrize(("n", "k", "quantizer"), [
    (3, 2, int8_scalars(0.5)),  # n workers: centralized SPSA over their n·k (seed, batch) pairs
    (1, 3, fp32_scalars()),  # one worker, unquantized: MeZO's n-SPSA step with k directions
], ids=["3-workers-int8", "1-worker-fp32-is-mezo"])
def test_update_matches_a_plain_loop_of_the_pseudocode(n, k, quantizer):
    lr, eps, steps = 0.05, 1e-3, 4
    result = run(lambda m: spsa(m, lr=lr, epsilon=eps, seeds_per_step=k, quantizer=quantizer),
                 workers=n, steps=steps)
    reference = _plain_loop(n, k, steps, lr=lr, eps=eps, quantizer=quantizer)
    initial = workload(n)[1]
    assert float((reference - initial).norm()) > 1e-3  # the steps moved θ
    for served in result.models:  # the same arithmetic in the same order: bit-identical
        assert torch.equal(served, reference)


def test_replicas_are_bit_identical_after_every_step():
    result = run(lambda m: spsa(m, lr=0.05, seeds_per_step=2, quantizer=int8_scalars(0.5)),
                 workers=4, steps=6, eval_every=1)
    assert len(result.records) == 6
    assert all(r.replicas_identical and r.replica_spread == 0 for r in result.records)
    assert len({param_hash(m) for m in result.models}) == 1
    again = run(lambda m: spsa(m, lr=0.05, seeds_per_step=2, quantizer=int8_scalars(0.5)),
                workers=4, steps=6, eval_every=1)
    assert again.ledger == result.ledger and param_hash(again.models[0]) == param_hash(
        result.models[0])
    other = run(lambda m: spsa(m, lr=0.05, seeds_per_step=2, quantizer=int8_scalars(0.5)),
                workers=4, steps=6, seed=1)
    assert param_hash(other.models[0]) != param_hash(result.models[0])


@pytest.mark.parametrize(("quantizer", "value_nbytes"), [(int8_scalars(1.0), 1),
                                                         (fp32_scalars(), 4)])
def test_only_the_k_scalars_cross_the_wire_and_the_ledger_has_the_exact_bytes(quantizer,
                                                                              value_nbytes):
    n, k, steps = 4, 3, 5
    model, params, worker_data, flops = workload(n)
    wire: list[bytes] = []
    result = train_workers(spsa(model, lr=0.01, seeds_per_step=k, quantizer=quantizer),
                           worker_data, model, params, flops,
                           TrainingSettings(steps=steps, workers=n),
                           tap=lambda src, dst, data: wire.append(data))
    payload_nbytes = k * value_nbytes + FRAMING  # n·k scalar bytes per round over n payloads
    assert len(wire) == steps * n * (n - 1)  # ring all-gather: each payload makes n-1 hops
    for data in wire:
        payload = deserialize(data)
        assert list(payload) == ["g"] and payload["g"].shape == (k,)  # no seed, no scale
        assert len(data) == payload_nbytes
    traffic = peer_traffic(result.ledger)
    assert traffic.collectives == {"allgather": steps}
    assert traffic.total_nbytes == steps * n * (n - 1) * payload_nbytes
    assert set(traffic.sent_nbytes.values()) == {steps * (n - 1) * payload_nbytes}
    assert set(traffic.received_nbytes.values()) == {steps * (n - 1) * payload_nbytes}
    assert traffic.peak_sync_nbytes == (n - 1) * payload_nbytes


def test_counted_work_is_two_forwards_per_seed_plus_the_stated_formulas():
    n, k, steps = 3, 2, 4
    model, params, worker_data, flops = workload(n)
    result = train_workers(spsa(model, lr=0.01, seeds_per_step=k), worker_data, model, params,
                           flops, TrainingSettings(steps=steps, workers=n))
    d = params.numel()
    by_kind: dict[str, int] = {}
    for e in result.ledger.compute_events():
        by_kind[e.kind] = by_kind.get(e.kind, 0) + e.flops
    forward = flops.step((8, *worker_data.input_shape), kind="eval")
    assert by_kind == {"forward": steps * n * 2 * k * forward,
                       "zo_axpy": steps * n * 2 * d * k * (n + 2),
                       "zo_rng": steps * n * d * k * (n + 1)}


def test_spsa_learns_a_convex_problem():
    result = run(lambda m: spsa(m, lr=0.05, seeds_per_step=4, quantizer=int8_scalars(8.0)),
                 workers=2, steps=120, eval_every=40, convex=True)
    losses = [r.val_loss for r in result.records]
    assert losses[-1] < result.initial_val_loss - 0.3
    assert losses == sorted(losses, reverse=True)
    assert all(r.replicas_identical for r in result.records)
    assert all(s.clipped == 0 for s in result.states)


def test_a_malformed_gathered_payload_is_refused():
    model, params, _, _ = workload(2)
    algorithm = spsa(model, lr=0.01, seeds_per_step=2)
    state = algorithm.init(params, 0, 2)
    ctx = StepContext(2, 0, 2, 0, torch.Generator())
    from lowcomm.core import Payload
    good = Payload(g=np.zeros(2, dtype=np.int8))
    with pytest.raises(ValueError, match=r"expected 2 values of int8; got int8\[3\]"):
        algorithm.receive(state, Received("spsa", 1, (good, Payload(g=np.zeros(3, np.int8)))),
                          ctx)
    extra = good.merged({"seed": np.zeros(1, dtype=np.int64)})
    with pytest.raises(ValueError, match="must hold only 'g'"):
        algorithm.receive(state, Received("spsa", 1, (good, extra)), ctx)
    with pytest.raises(ValueError, match="expected 2 workers' scalars; got 1"):
        algorithm.receive(state, Received("spsa", 1, (good,)), ctx)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr": 0}, "lr must be a finite number > 0; got 0"),
    ({"lr": -0.1}, r"lr must be a finite number > 0; got -0.1"),
    ({"lr": 0.1, "epsilon": 0}, "epsilon must be a finite number > 0; got 0"),
    ({"lr": 0.1, "epsilon": -1e-3}, "epsilon must be a finite number > 0; got -0.001"),
    ({"lr": 0.1, "seeds_per_step": 0}, r"seeds_per_step \(k\) must be an integer >= 1; got 0"),
    ({"lr": 0.1, "seeds_per_step": 1.5}, r"seeds_per_step \(k\) must be an integer >= 1; got 1.5"),
])
def test_bad_settings_fail_at_construction_naming_the_value(kwargs, message):
    model, *_ = workload(2)
    with pytest.raises(ValueError, match=message):
        spsa(model, **kwargs)
