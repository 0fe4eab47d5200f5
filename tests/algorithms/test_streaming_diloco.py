"""Streaming DiLoCo: against a plain loop of the paper's schedule, DiLoCo as its P=1 case, exact
bytes and peak bytes by the ledger, what the replicas hold after a fragment's sync, modeled
utilization with and without overlap, and bad input."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from tests.algorithms.replicated_runs import run, workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import (
    diloco,
    inner_step,
    outer_nesterov,
    param_hash,
    streaming_diloco,
    strided_fragments,
)
from lowcomm.compress import fp4, fp32
from lowcomm.core import Layout, serialize, torch_generator
from lowcomm.cost import Accelerator, peer_traffic, scenario, timeline
from lowcomm.cost.timeline import collective_seconds

INNER = adamw(1e-2, weight_decay=0.1)


def _streaming(h, p, tau, alpha, codec=None):
    return lambda m: streaming_diloco(m, inner_optimizer=INNER, inner_steps=h, fragments=p,
                                      overlap_steps=tau, mixing=alpha, codec=codec)


@cache
def _run(kind: str, *, h=6, p=3, tau=0, alpha=0.0, codec="fp32", workers=5, steps=12,
         equal_layers=True, eval_every=None):
    wire = {"fp32": fp32(), "fp4": fp4()}[codec]
    make = (_streaming(h, p, tau, alpha, wire) if kind == "streaming" else
            lambda m: diloco(m, inner_optimizer=INNER, inner_steps=h, codec=wire))
    return run(make, workers=workers, steps=steps, equal_layers=equal_layers,
               eval_every=eval_every)


@pytest.mark.parametrize(("tau", "alpha"), [(1, 0.5), (0, 0.0)])
def test_matches_a_plain_loop_of_the_staggered_schedule(tau, alpha):
    workers, h, p, steps = 3, 6, 3, 12
    result = _run("streaming", tau=tau, alpha=alpha, workers=workers, equal_layers=False)
    model, theta, worker_data, _ = workload(workers)
    parts = strided_fragments(model.layout, p)
    outer_opt = outer_nesterov()
    glob = theta.clone()  # theta_p for every p, as last synchronised
    outer_states = [outer_opt.init(theta[idx]) for idx in parts]
    local = [theta.clone() for _ in range(workers)]
    inner_states = [INNER.init(theta) for _ in range(workers)]
    in_flight = []  # (apply before step, fragment, mean outer gradient)

    def merge(due):
        for when, q, mean in [f for f in in_flight if f[0] <= due]:
            in_flight.remove((when, q, mean))
            idx = parts[q]
            new, outer_states[q] = outer_opt.apply(glob[idx], mean, outer_states[q])
            glob[idx] = new
            for m in range(workers):
                local[m][idx] = alpha * local[m][idx] + (1 - alpha) * new

    for t in range(1, steps + 1):
        merge(t)
        for m in range(workers):
            batch = worker_data.sample(m, torch_generator(0, round=t, client=m, purpose="batch"))
            local[m], inner_states[m], _ = inner_step(model, local[m], inner_states[m], INNER,
                                                      batch)
        for q in range(p):
            if t >= h * (q + 1) // p and (t - h * (q + 1) // p) % h == 0:  # offsets H/P*(q+1)
                idx = parts[q]
                mean = torch.stack([glob[idx] - local[m][idx] for m in range(workers)]).mean(0)
                in_flight.append((t + 1 + tau, q, mean))
    merge(float("inf"))  # the run waits for what is still in flight
    for served in result.models:
        torch.testing.assert_close(served, glob, rtol=1e-5, atol=1e-6)
    for m, state in enumerate(result.states):
        torch.testing.assert_close(state.params, local[m], rtol=1e-5, atol=1e-6)


def test_one_fragment_without_overlap_or_mixing_is_diloco():
    streaming = _run("streaming", h=6, p=1, steps=6, workers=3, equal_layers=False)
    plain = _run("diloco", h=6, steps=6, workers=3, equal_layers=False)
    assert [param_hash(m) for m in streaming.models] == [param_hash(m) for m in plain.models]
    assert peer_traffic(streaming.ledger).total_nbytes == peer_traffic(plain.ledger).total_nbytes


def _chunk_nbytes(codec, n: int, workers: int) -> list[int]:
    """Serialized bytes of the ring's p chunks of an n-vector (the codecs' sizes do not depend
    on the values)."""
    sizes = [len(c) for c in torch.zeros(n).tensor_split(workers)]
    return [len(serialize(codec.encode(torch.zeros(s), codec.init(
        Layout.from_shapes({"chunk": (s,)})), None)[0])) for s in sizes]


def _ring_sent(codec, n: int, workers: int) -> int:
    """What one worker sends in a ring all-reduce of n values when n splits evenly: 2(p-1)
    chunks (reduce-scatter and all-gather)."""
    chunks = _chunk_nbytes(codec, n, workers)
    assert len(set(chunks)) == 1
    return 2 * (workers - 1) * chunks[0]


@pytest.mark.parametrize("codec", ["fp32", "fp4"])
def test_same_total_bytes_as_diloco_and_peak_per_sync_divided_by_p(codec):
    workers, h, p, steps = 5, 6, 3, 12
    streaming = peer_traffic(_run("streaming", codec=codec, tau=1, alpha=0.5).ledger)
    plain = peer_traffic(_run("diloco", codec=codec).ledger)
    wire = {"fp32": fp32(), "fp4": fp4()}[codec]
    d, n = 330, 110  # three equal layers of 110 parameters, one per fragment
    syncs = steps // h  # each fragment, and DiLoCo's whole model, syncs once per H steps
    assert plain.total_nbytes == syncs * workers * _ring_sent(wire, d, workers)
    assert streaming.total_nbytes == syncs * p * workers * _ring_sent(wire, n, workers)
    assert streaming.collectives == {"allreduce": syncs * p}
    assert plain.peak_sync_nbytes == _ring_sent(wire, d, workers)
    assert streaming.peak_sync_nbytes == _ring_sent(wire, n, workers)
    # the only difference: one chunk overhead (header, and fp4's scale) per transfer of the
    # P-1 extra all-reduces; the overhead is what a chunk costs beyond its linear data bytes
    header = 2 * _chunk_nbytes(wire, 22, 1)[0] - _chunk_nbytes(wire, 44, 1)[0]
    transfers = 2 * (workers - 1)
    assert streaming.peak_sync_nbytes * p - plain.peak_sync_nbytes == (p - 1) * transfers * header
    assert (streaming.total_nbytes - plain.total_nbytes
            == syncs * workers * (p - 1) * transfers * header)


def test_served_replicas_are_identical_and_the_last_synced_fragment_is_shared_only_at_alpha_0():
    h, p, workers = 6, 3, 3
    parts = strided_fragments(workload(workers, equal_layers=True)[0].layout, p)
    for alpha in (0.0, 0.5):  # T = H: fragment P-1 syncs at the last step, the others earlier
        result = _run("streaming", alpha=alpha, steps=h, workers=workers, eval_every=1)
        assert all(r.replicas_identical for r in result.records)  # the served global model
        last = {param_hash(s.params[parts[p - 1]]) for s in result.states}
        first = {param_hash(s.params[parts[0]]) for s in result.states}
        assert (len(last) == 1) == (alpha == 0.0)
        assert len(first) == workers  # trained H - H/P steps since its own sync


def test_overlap_raises_modeled_utilization_at_equal_bytes_and_compute():
    blocking, overlapped = (_run("streaming", tau=tau, steps=6, workers=3) for tau in (0, 1))
    assert peer_traffic(blocking.ledger) == peer_traffic(overlapped.ledger)
    assert blocking.ledger.totals().flops == overlapped.ledger.totals().flops
    # A device on which one step lasts exactly as long as one fragment's all-reduce (c). Syncs
    # at steps 2, 4, 6 (H=6, P=3). Blocking: 6c of compute + 3c of waiting. tau=1: each
    # all-reduce hides behind the next step; only the last one, after step 6, is waited for.
    net = scenario("internet")
    step_flops = next(iter(blocking.ledger.compute_events())).flops
    sync_seconds = collective_seconds(next(iter(blocking.ledger.collective_events())), net)
    device = Accelerator(flops_per_second=step_flops / sync_seconds)
    slow, fast = (timeline(r.ledger, network=net, device=device) for r in (blocking, overlapped))
    assert slow.utilization == pytest.approx(6 / 9)
    assert fast.utilization == pytest.approx(6 / 7)
    assert fast.modeled_seconds == pytest.approx(7 * sync_seconds)


def test_bad_settings_fail_at_construction():
    mlp = workload(2)[0]  # three layers
    transformer = workload(2, equal_layers=True)[0]
    with pytest.raises(ValueError, match=r"dividing the number of layers \(3\); got P=2"):
        streaming_diloco(mlp, inner_optimizer=INNER, inner_steps=6, fragments=2, overlap_steps=0)
    with pytest.raises(ValueError, match=r"overlap_steps \(tau\) must be an integer in "
                                         r"\[0, H/P\) = \[0, 2\) for H=6, P=3; got 2"):
        streaming_diloco(transformer, inner_optimizer=INNER, inner_steps=6, fragments=3,
                         overlap_steps=2)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"mixing \(alpha\) must be in \[0, 1\]; got "
                                             rf"{alpha}"):
            streaming_diloco(mlp, inner_optimizer=INNER, inner_steps=6, fragments=3,
                             mixing=alpha)
    with pytest.raises(ValueError, match=r"inner_steps \(H\) must be an integer >= 1; got 0"):
        streaming_diloco(mlp, inner_optimizer=INNER, inner_steps=0, fragments=3)
    with pytest.raises(ValueError, match=r"fragments \(P=3\) must divide inner_steps \(H=4\)"):
        streaming_diloco(mlp, inner_optimizer=INNER, inner_steps=4, fragments=3)
