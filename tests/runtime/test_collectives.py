"""Collectives over real bytes: results, per-worker bytes and hops against the ring's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lowcomm.compress import fp16, fp32
from lowcomm.core import Payload, serialize
from lowcomm.cost import Ledger, peer_traffic
from lowcomm.runtime import (
    PeerTransport,
    pair_exchange,
    ring_allgather,
    ring_allreduce_mean,
    tree_broadcast,
)


def _vectors(p: int, n: int) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(p * 1000 + n)
    return {w: torch.randn(n, generator=g) for w in range(p)}


@pytest.mark.parametrize(("p", "n"), [(2, 10), (3, 7), (4, 1000), (5, 33)])
def test_ring_allreduce_is_the_mean(p, n):
    ledger = Ledger()
    vectors = _vectors(p, n)
    mean = ring_allreduce_mean(PeerTransport(ledger), vectors, fp32(), round=1, channel="g",
                               ready_round=2)
    expected = torch.stack(list(vectors.values())).mean(0)
    torch.testing.assert_close(mean, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [2, 3, 4, 8])
def test_ring_allreduce_bytes_and_hops_per_worker(p):
    n = 8 * 1000 + 3  # chunks of unequal size
    ledger = Ledger()
    wire: list[tuple[str, str, int]] = []
    transport = PeerTransport(ledger, tap=lambda s, d, b: wire.append((s, d, len(b))))
    ring_allreduce_mean(transport, _vectors(p, n), fp32(), round=1, channel="g",
                        ready_round=2)
    traffic = peer_traffic(ledger)
    header = len(serialize(Payload({"fp32/values": np.zeros(0, np.float32)})))  # per transfer
    for w in range(p):
        name = f"worker:{w}"
        sent = traffic.sent_nbytes[name]
        # 2(p-1) chunks of about n/p floats, each with its own header: 2(p-1)/p * 4n bytes
        ideal = 2 * (p - 1) / p * 4 * n
        assert abs(sent - 2 * (p - 1) * header - ideal) <= 2 * (p - 1) * 4
        assert traffic.received_nbytes[name] == sum(b for _, d, b in wire if d == name)
        assert traffic.hops[name] == 2 * (p - 1)
    assert sum(b for _, _, b in wire) == traffic.total_nbytes  # the ledger is the wire
    (event,) = ledger.collective_events()
    assert event.hops == 2 * (p - 1) and event.collective == "allreduce"
    assert event.hop_nbytes[0] == header + 4 * math.ceil(n / p)  # the largest chunk sets pace


def test_ring_allreduce_fp16_halves_bytes_and_keeps_replicas_identical():
    p, n = 4, 4000
    vectors = _vectors(p, n)
    sizes = {}
    results = {}
    for codec in (fp32(), fp16()):
        ledger = Ledger()
        results[codec.name] = ring_allreduce_mean(PeerTransport(ledger), vectors, codec,
                                                  round=1, channel="g", ready_round=2)
        sizes[codec.name] = peer_traffic(ledger).total_nbytes
    assert 0.49 < sizes["fp16"] / sizes["fp32"] < 0.52
    exact = torch.stack(list(vectors.values())).mean(0)
    assert results["fp16"].dtype == torch.float32
    torch.testing.assert_close(results["fp16"], exact, rtol=0, atol=5e-3)
    # the result is what the wire carried: exactly representable in half precision
    assert torch.equal(results["fp16"], results["fp16"].half().float())


def test_allreduce_refuses_bad_groups():
    with pytest.raises(ValueError, match="at least 2 workers"):
        ring_allreduce_mean(PeerTransport(Ledger()), _vectors(1, 4), fp32(), round=1,
                            channel="g", ready_round=2)
    with pytest.raises(ValueError, match="one value per worker"):
        ring_allreduce_mean(PeerTransport(Ledger()), _vectors(4, 3), fp32(), round=1,
                            channel="g", ready_round=2)


@pytest.mark.parametrize("p", [2, 3, 5])
def test_ring_allgather(p):
    ledger = Ledger()
    payloads = {w: Payload({"x": np.arange(w + 1, dtype=np.int64)}) for w in range(p)}
    got = ring_allgather(PeerTransport(ledger), payloads, round=3, channel="s", ready_round=4)
    assert [list(g["x"]) for g in got] == [list(range(w + 1)) for w in range(p)]
    traffic = peer_traffic(ledger)
    for w in range(p):  # each worker forwards every payload but its successor's
        forwarded = sum(len(serialize(payloads[o])) for o in range(p) if o != (w + 1) % p)
        assert traffic.sent_nbytes[f"worker:{w}"] == forwarded
        assert traffic.hops[f"worker:{w}"] == p - 1


@pytest.mark.parametrize("p", [2, 3, 4, 5, 8])
def test_tree_broadcast(p):
    ledger = Ledger()
    payload = Payload({"x": np.arange(10, dtype=np.float32)})
    got = tree_broadcast(PeerTransport(ledger), payload, root=p - 1,
                         participants=list(range(p)), round=1, channel="b", ready_round=2)
    assert np.array_equal(got["x"], payload["x"])
    (event,) = ledger.collective_events()
    assert event.hops == math.ceil(math.log2(p))
    assert len(ledger.comm_events()) == p - 1  # every worker but the root receives it once
    assert sorted(e.dst for e in ledger.comm_events()) == sorted(
        f"worker:{w}" for w in range(p - 1))


def test_pair_exchange():
    ledger = Ledger()
    a_payload = Payload({"x": np.ones(3, np.float32)})
    b_payload = Payload({"x": np.zeros(5, np.float32)})
    at_a, at_b = pair_exchange(PeerTransport(ledger), 0, a_payload, 2, b_payload, round=1,
                               channel="pair", ready_round=2)
    assert at_a["x"].shape == (5,) and at_b["x"].shape == (3,)
    (event,) = ledger.collective_events()
    assert event.hops == 1 and event.hop_nbytes == (len(serialize(b_payload)),)
    with pytest.raises(ValueError, match="itself"):
        pair_exchange(PeerTransport(Ledger()), 1, a_payload, 1, b_payload, round=1,
                      channel="pair", ready_round=2)
