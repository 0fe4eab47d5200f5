"""Overlap-aware modeled time, checked on hand-built ledgers against hand-computed schedules."""

from __future__ import annotations

import pytest

from lowcomm.cost import (
    SCENARIOS,
    Accelerator,
    ClusterNetwork,
    CollectiveEvent,
    ComputeEvent,
    Ledger,
    collective_seconds,
    scenario,
    timeline,
)

NET = ClusterNetwork("test", bandwidth_bps=8e6, latency_seconds=0.25)  # 1 MB/s, 1/4 s per hop
DEVICE = Accelerator(flops_per_second=1e9)  # 1e9 FLOPs = 1 s


def _ledger(steps: int, *, sync_at: tuple[int, ...], delay: int, workers: int = 2,
            flops: tuple[int, ...] | None = None) -> Ledger:
    events = []
    for t in range(1, steps + 1):
        for w in range(workers):
            f = 10**9 if flops is None else flops[w]
            events.append(ComputeEvent(t, f"worker:{w}", f, "train"))
        if t in sync_at:  # two hops of 0.5 MB: 2 * (0.25 + 0.5) = 1.5 s
            events.append(CollectiveEvent(t, "g", "allreduce",
                                          tuple(f"worker:{w}" for w in range(workers)),
                                          (500_000, 500_000), t + 1 + delay))
    return Ledger(events)


def test_collective_seconds_is_alpha_beta():
    event = CollectiveEvent(1, "g", "allreduce", ("worker:0", "worker:1"), (500_000, 250_000),
                            2)
    assert collective_seconds(event, NET) == pytest.approx(0.25 + 0.5 + 0.25 + 0.25)


def test_blocking_sync_stalls_compute():
    tl = timeline(_ledger(4, sync_at=(2,), delay=0), network=NET, device=DEVICE)
    # steps 1, 2 (2 s), all-reduce 1.5 s, steps 3, 4 (2 s)
    assert tl.modeled_seconds == pytest.approx(5.5)
    assert tl.utilization == pytest.approx(4 / 5.5)
    assert tl.step_end_seconds == pytest.approx((1.0, 2.0, 4.5, 5.5))
    assert tl.seconds_at(3) == pytest.approx(4.5)


def test_overlapped_sync_hides_behind_compute():
    # needed before step 2 + 1 + 2 = 5: it runs during steps 3 and 4
    tl = timeline(_ledger(5, sync_at=(2,), delay=2), network=NET, device=DEVICE)
    assert tl.modeled_seconds == pytest.approx(5.0)
    assert tl.utilization == pytest.approx(1.0)
    # one step of overlap is not enough: step 4 waits until 2 + 1.5 = 3.5
    tl = timeline(_ledger(5, sync_at=(2,), delay=1), network=NET, device=DEVICE)
    assert tl.modeled_seconds == pytest.approx(3.5 + 2.0)


def test_collective_waits_for_the_slowest_participant_and_a_busy_link():
    tl = timeline(_ledger(2, sync_at=(1,), delay=0, flops=(10**9, 3 * 10**9)), network=NET,
                  device=DEVICE)
    # worker 1 computes 3 s; the all-reduce starts at 3 and ends at 4.5; then step 2 (3 s)
    assert tl.modeled_seconds == pytest.approx(4.5 + 3.0)
    assert tl.modeled_compute_seconds == {"worker:0": 2.0, "worker:1": 6.0}
    # two collectives posted in consecutive steps queue on the links
    tl = timeline(_ledger(3, sync_at=(1, 2), delay=5), network=NET, device=DEVICE)
    assert tl.modeled_seconds == pytest.approx(max(3.0, 1.0 + 1.5 + 1.5))
    assert tl.modeled_comm_seconds["worker:0"] == pytest.approx(3.0)


def test_unfinished_communication_ends_the_run():
    tl = timeline(_ledger(2, sync_at=(2,), delay=3), network=NET, device=DEVICE)
    assert tl.modeled_seconds == pytest.approx(3.5)


def test_scenarios_are_declared_and_overridable():
    assert set(SCENARIOS) == {"datacenter", "cross-region", "internet"}
    assert scenario("internet").bandwidth_bps == 100e6
    custom = scenario("internet", bandwidth_bps=50e6)
    assert custom.bandwidth_bps == 50e6 and "overridden" in custom.source
    assert custom.latency_seconds == SCENARIOS["internet"].latency_seconds
    with pytest.raises(ValueError, match="unknown network scenario 'lan'"):
        scenario("lan")
    with pytest.raises(ValueError, match="bandwidth_bps must be a finite number > 0; got 0"):
        ClusterNetwork("x", 0, 0.1)
    with pytest.raises(ValueError, match="flops_per_second"):
        Accelerator(flops_per_second=-1)


def test_collective_event_checks_and_round_trip():
    with pytest.raises(ValueError, match="ready_round must be > round"):
        CollectiveEvent(3, "g", "allreduce", ("worker:0",), (1,), 3)
    with pytest.raises(ValueError, match="collective must be one of"):
        CollectiveEvent(3, "g", "reduce", ("worker:0",), (1,), 4)
    ledger = _ledger(3, sync_at=(2,), delay=1)
    assert Ledger.from_rows(ledger.to_rows()) == ledger
    assert ledger.totals().flops == 6 * 10**9  # collectives carry no bytes of their own
