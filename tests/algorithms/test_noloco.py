"""NoLoCo: against a plain loop of the paper's update, exact bytes and hops by the ledger against
DiLoCo's ring, what pairs that just synced share, bounded replica spread, and bad input."""

from __future__ import annotations

import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms import adamw, sgd
from lowcomm.algorithms.replicated import (
    ReplicatedAlgorithm,
    diloco,
    inner_step,
    noloco,
    param_hash,
)
from lowcomm.algorithms.replicated.noloco import pairs
from lowcomm.compress import error_feedback, fp16, topk
from lowcomm.core import Payload, numpy_rng, torch_generator
from lowcomm.cost import peer_traffic
from lowcomm.runtime import TrainingSettings, train_workers

INNER = adamw(1e-2, weight_decay=0.1)


def _batches(worker_data, workers: int, steps: int, seed: int = 0):
    return {(t, w): worker_data.sample(w, torch_generator(seed, round=t, client=w,
                                                          purpose="batch"))
            for t in range(1, steps + 1) for w in range(workers)}


def _plain_noloco(p: int, h: int, steps: int, *, alpha: float, beta: float, gamma: float,
                  seed: int = 0) -> list[torch.Tensor]:
    """The paper's pseudocode, written out: H inner steps from phi_i; then, in the groups of a
    permutation seeded by the step, g_bar = mean(theta - phi), phi_bar = mean(phi),
    m_i <- beta m_i + alpha g_bar + gamma (phi_bar - phi_i), phi_i <- phi_i + m_i."""
    model, init, worker_data, _ = workload(p)
    batches = _batches(worker_data, p, steps, seed)
    phi = [init.clone() for _ in range(p)]
    m = [torch.zeros_like(init) for _ in range(p)]
    opt = [INNER.init(init) for _ in range(p)]
    for t0 in range(0, steps, h):
        theta = []
        for w in range(p):
            x = phi[w].clone()
            for t in range(t0 + 1, t0 + h + 1):
                x, opt[w], _ = inner_step(model, x, opt[w], INNER, batches[(t, w)])
            theta.append(x)
        order = list(numpy_rng(seed, round=t0 + h, purpose="noloco-pairs").permutation(p))
        new_phi, new_m = list(phi), list(m)
        for k in range(0, p, 2):
            group = order[k:k + 2]
            g_bar = torch.stack([theta[j] - phi[j] for j in group]).mean(0)
            phi_bar = torch.stack([phi[j] for j in group]).mean(0)
            for i in group:
                new_m[i] = beta * m[i] + alpha * g_bar + gamma * (phi_bar - phi[i])
                new_phi[i] = phi[i] + new_m[i]
        phi, m = new_phi, new_m
    return phi


@pytest.mark.parametrize(("p", "gamma"), [(2, None), (4, None), (4, 0.3), (3, None)],
                         ids=["2-workers", "4-workers", "4-workers-gamma-0.3", "3-workers"])
def test_noloco_matches_a_plain_loop_of_the_papers_update(p, gamma):
    h, steps, alpha, beta = 3, 12, 0.7, 0.5
    result = run(lambda m: noloco(m, inner_optimizer=INNER, inner_steps=h, outer_lr=alpha,
                                  outer_momentum=beta, averaging_strength=gamma),
                 workers=p, steps=steps)
    expected = _plain_noloco(p, h, steps, alpha=alpha, beta=beta,
                             gamma=alpha if gamma is None else gamma)
    for served, phi in zip(result.models, expected, strict=True):
        torch.testing.assert_close(served, phi, rtol=1e-5, atol=1e-6)
    if p > 2:  # replicas really differ, so the comparison is per worker
        assert len({param_hash(s) for s in result.models}) > 1


def test_two_workers_are_one_pair_forever_so_noloco_is_heavy_ball_diloco():
    """With p = 2 the pair is everyone: m <- beta m + alpha (theta_bar - phi) is heavy-ball SGD
    on DiLoCo's outer gradient phi - theta_bar with lr alpha and momentum beta."""
    ours = run(lambda m: noloco(m, inner_optimizer=INNER, inner_steps=3), workers=2, steps=12,
               eval_every=3)
    theirs = run(lambda m: diloco(m, inner_optimizer=INNER, inner_steps=3,
                                  outer_optimizer=sgd(0.7, momentum=0.5)), workers=2, steps=12)
    assert all(r.replicas_identical for r in ours.records)
    torch.testing.assert_close(ours.models[0], theirs.models[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [4, 5, 8])
def test_bytes_and_hops_by_the_ledger_against_the_ring(p):
    h, steps = 2, 8
    syncs = steps // h
    ours = run(lambda m: noloco(m, inner_optimizer=INNER, inner_steps=h), workers=p,
               steps=steps)
    ring = run(lambda m: diloco(m, inner_optimizer=INNER, inner_steps=h), workers=p,
               steps=steps)
    d = ours.models[0].numel()
    one_theta = Payload({"theta:fp32/values": torch.zeros(d)}).nbytes  # d float32 + header
    assert 4 * d < one_theta < 4 * d + 64
    joined = {f"worker:{w}": sum(any(w in g and len(g) == 2 for g in pairs(0, t, p))
                                 for t in range(h, steps + 1, h)) for w in range(p)}
    traffic = peer_traffic(ours.ledger)
    assert traffic.collectives == {"exchange": syncs * (p // 2)}
    assert traffic.sent_nbytes == {w: n * one_theta for w, n in joined.items()}
    assert traffic.received_nbytes == traffic.sent_nbytes
    assert traffic.hops == joined  # one hop per sync it took part in
    assert traffic.peak_sync_nbytes == one_theta
    ring_traffic = peer_traffic(ring.ledger)
    assert set(ring_traffic.hops.values()) == {syncs * 2 * (p - 1)}
    if p % 2 == 0:  # everyone syncs every time: d values per worker vs the ring's 2(p-1)/p d
        assert set(joined.values()) == {syncs}
        chunk_header = Payload({"fp32/values": torch.zeros(1)}).nbytes - 4
        for w, sent in ring_traffic.sent_nbytes.items():
            ring_value_nbytes = sent - syncs * 2 * (p - 1) * chunk_header
            assert ring_value_nbytes == pytest.approx(  # chunks differ by at most one value
                syncs * 2 * (p - 1) / p * 4 * d, abs=syncs * 2 * (p - 1) * 4)
            assert traffic.sent_nbytes[w] - syncs * (one_theta - 4 * d) == syncs * 4 * d
    else:  # the odd worker out sends nothing that round; over the syncs someone sat out
        assert sum(joined.values()) == syncs * (p - 1)


def test_a_separate_averaging_strength_sends_phi_too_and_fp16_halves_it():
    make = lambda **kw: (lambda m: noloco(m, inner_optimizer=INNER, inner_steps=2, **kw))  # noqa: E731
    d = workload(2)[1].numel()
    tied = peer_traffic(run(make(), workers=2, steps=4).ledger).sent_nbytes["worker:0"]
    both = peer_traffic(run(make(averaging_strength=0.2), workers=2,
                            steps=4).ledger).sent_nbytes["worker:0"]
    half = peer_traffic(run(make(codec=fp16()), workers=2, steps=4).ledger).sent_nbytes[
        "worker:0"]
    two = Payload({"theta:fp32/values": torch.zeros(d), "slow:fp32/values": torch.zeros(d)})
    assert both == 2 * two.nbytes and tied == 2 * Payload(
        {"theta:fp32/values": torch.zeros(d)}).nbytes
    assert 0.49 < half / tied < 0.52


def _spied(algorithm: ReplicatedAlgorithm, log: list) -> ReplicatedAlgorithm:
    def receive(state, received, ctx):
        after = algorithm.receive(state, received, ctx)
        log.append((received.posted_step, ctx.worker, state, after))
        return after

    return ReplicatedAlgorithm(**{**algorithm.__dict__, "receive": receive})


def test_partners_agree_on_the_pair_mean_and_their_difference_contracts():
    """What the update implies for a pair (i, j) that just synced: both used the same theta_bar;
    the pair's mean slow weights took the heavy-ball step phi_bar + beta m_bar +
    alpha (theta_bar - phi_bar); their difference became (1 - gamma)(phi_i - phi_j) +
    beta (m_i - m_j), whatever the inner phase did; after the first sync they are identical."""
    alpha, beta, p, h = 0.7, 0.5, 6, 2
    log: list = []
    model, params, worker_data, flops = workload(p)
    algorithm = _spied(noloco(model, inner_optimizer=INNER, inner_steps=h), log)
    train_workers(algorithm, worker_data, model, params, flops,
                  TrainingSettings(steps=3 * h, workers=p))
    by_sync: dict[int, dict[int, tuple]] = {}
    for t, w, before, after in log:
        by_sync.setdefault(t, {})[w] = (before, after)
    assert sorted(by_sync) == [h, 2 * h, 3 * h]
    for t, states in by_sync.items():
        for i, j in pairs(0, t, p):
            (bi, ai), (bj, aj) = states[i], states[j]
            theta_bar = (bi.params + bj.params) / 2
            for before, after in ((bi, ai), (bj, aj)):  # each side used this theta_bar
                recovered = (after.momentum - beta * before.momentum) / alpha + before.slow
                torch.testing.assert_close(recovered, theta_bar, rtol=1e-4, atol=1e-5)
            phi_bar, m_bar = (bi.slow + bj.slow) / 2, (bi.momentum + bj.momentum) / 2
            torch.testing.assert_close((ai.slow + aj.slow) / 2,
                                       phi_bar + beta * m_bar + alpha * (theta_bar - phi_bar),
                                       rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ai.slow - aj.slow,
                                       (1 - alpha) * (bi.slow - bj.slow)
                                       + beta * (bi.momentum - bj.momentum),
                                       rtol=1e-4, atol=1e-6)
            assert torch.equal(ai.params, ai.slow)  # theta_i <- phi_i
            if t == h:  # from one common phi and m = 0, partners leave bit-identical
                assert param_hash(ai.slow) == param_hash(aj.slow)
        first = {param_hash(states[i][1].slow) for i, _ in pairs(0, h, p)}
        if t == h:
            assert len(first) == p // 2  # but different pairs differ


def test_replica_spread_stays_bounded_and_the_pull_term_is_what_bounds_it():
    make = lambda gamma: (lambda m: noloco(m, inner_optimizer=adamw(3e-3), inner_steps=3,  # noqa: E731
                                           averaging_strength=gamma))
    with_pull = run(make(None), workers=4, steps=60, eval_every=3)
    without = run(make(0.0), workers=4, steps=60, eval_every=3)
    spread = [r.replica_spread for r in with_pull.records]
    free = [r.replica_spread for r in without.records]
    third = len(spread) // 3
    assert not any(r.replicas_identical for r in with_pull.records)
    assert max(spread[-third:]) < 3 * max(spread[:third])  # no growth over the run
    assert max(free[-third:]) > 2 * max(free[:third])  # without the pull term it grows
    assert max(spread[-third:]) < 0.5 * max(free[-third:])


def test_pairings_are_a_partition_agreed_by_everyone_and_change_every_sync():
    for p in (2, 5, 8):
        for t in (3, 6):
            groups = pairs(7, t, p)
            assert sorted(w for g in groups for w in g) == list(range(p))
            assert [len(g) for g in groups] == [2] * (p // 2) + [1] * (p % 2)
    assert pairs(0, 4, 8) != pairs(0, 8, 8) and pairs(0, 4, 8) != pairs(1, 4, 8)
    make = lambda m: noloco(m, inner_optimizer=INNER, inner_steps=2)  # noqa: E731
    a, b = run(make, workers=4, steps=4), run(make, workers=4, steps=4)
    assert a.ledger == b.ledger and param_hash(a.models[1]) == param_hash(b.models[1])


def test_noloco_learns():
    result = run(lambda m: noloco(m, inner_optimizer=adamw(3e-3), inner_steps=5), workers=4,
                 steps=40, hidden=32)
    assert result.records[-1].val_loss < result.initial_val_loss - 0.3


def test_bad_settings_fail_at_construction():
    model, params, worker_data, flops = workload(2)
    make = lambda **kw: noloco(model, inner_optimizer=INNER, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"noloco needs workers >= 2; got 1"):
        train_workers(make(), worker_data, model, params, flops,
                      TrainingSettings(steps=1, workers=1))
    for kwargs, message in [
        ({"inner_steps": 0}, r"inner_steps \(H\) must be an integer >= 1; got 0"),
        ({"outer_lr": 0.0}, r"outer_lr must be a finite number in \(0.0, inf\); got 0.0"),
        ({"outer_momentum": 1.0}, r"outer_momentum must be .* \[0.0, 1.0\); got 1.0"),
        ({"averaging_strength": -0.1}, r"averaging_strength must be .*; got -0.1"),
        ({"outer_lr": float("nan")}, r"outer_lr must be a finite number .*; got nan"),
        ({"codec": error_feedback(topk(0.1))}, "needs a stateless codec"),
    ]:
        with pytest.raises(ValueError, match=message):
            make(**kwargs)
