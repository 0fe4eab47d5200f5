"""Overlap-aware modeled wall-clock of data-centre training, derived from the ledger.

Every worker has two timelines: compute and communication. The ledger says, per step t, what each
worker computed (`ComputeEvent`, counted FLOPs) and which collectives it posted after that
compute (`CollectiveEvent`: participants, serialized bytes of each sequential hop, and the step
`ready_round` before whose compute the result is needed). `timeline(ledger, network=...,
device=...)` replays them in step order:

- a worker's compute of step t starts when its compute of step t-1 has ended *and* every result
  it needs before step t has arrived, and lasts `flops / flops_per_second`;
- a collective posted at step t starts when every participant has finished step t's compute and
  every participant's link is free (one collective at a time per link, in posting order), and
  lasts `sum_h (latency_seconds + 8 * hop_nbytes[h] / bandwidth_bps)`: the α-β model of
  collectives (Thakur, Rabenseifner, Gropp 2005; for a ring all-reduce of n bytes over p
  workers it gives 2(p-1)·α + 2(p-1)/p·n·β, cost-models §5.2), with the hop's largest transfer
  setting its pace;
- a result needed at `ready_round = t + 1` blocks the next step (no overlap); a later
  `ready_round` lets the communication hide behind the compute of the steps in between, which is
  how Streaming DiLoCo, eager updates and CO2 declare their overlap.

The run ends when the last compute and the last communication have ended. Compute utilization is
`sum_w compute_w / (workers * wall)`. Everything here is **modeled** from measured bytes and
counted FLOPs; not modeled: contention between concurrent collectives on shared fabric, the
reduction arithmetic, stragglers within a step, and the optimizer's own compute.

Named bandwidth scenarios (`SCENARIOS`) are declared assumptions, printed with the results.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ._checks import finite_at_least_zero, finite_positive
from .ledger import CollectiveEvent, Ledger


@dataclass(frozen=True)
class ClusterNetwork:
    """Every worker's link: full-duplex `bandwidth_bps` and one-way `latency_seconds` per hop."""

    name: str
    bandwidth_bps: float
    latency_seconds: float
    source: str = "declared by caller"

    def __post_init__(self) -> None:
        finite_positive("bandwidth_bps", self.bandwidth_bps)
        finite_at_least_zero("latency_seconds", self.latency_seconds)

    def describe(self) -> dict[str, Any]:
        return {"model": "ClusterNetwork", "name": self.name,
                "bandwidth_bps": self.bandwidth_bps, "latency_seconds": self.latency_seconds,
                "source": self.source}


# Declared scenarios, not measurements. The bandwidths are the three regimes; the
# latencies are assumed round numbers: ~10 µs within a data-centre fabric (the α of the example in
# cost-models §5.2), ~30 ms one way between cloud regions on one continent, ~50 ms one way over
# the public internet (the same assumed latency as the federated default network).
SCENARIOS: dict[str, ClusterNetwork] = {
    "datacenter": ClusterNetwork("datacenter", 100e9, 10e-6,
                                 "assumed: 100 Gb/s fabric, 10 µs per hop"),
    "cross-region": ClusterNetwork("cross-region", 1e9, 30e-3,
                                   "assumed: 1 Gb/s between regions, 30 ms one way"),
    "internet": ClusterNetwork("internet", 100e6, 50e-3,
                               "assumed: 100 Mb/s over the internet, 50 ms one way"),
}


def scenario(name: str, *, bandwidth_bps: float | None = None,
             latency_seconds: float | None = None) -> ClusterNetwork:
    """A named scenario, optionally with the caller's bandwidth or latency (then labelled so)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown network scenario {name!r}; choose from {sorted(SCENARIOS)}")
    base = SCENARIOS[name]
    if bandwidth_bps is None and latency_seconds is None:
        return base
    bw = base.bandwidth_bps if bandwidth_bps is None else bandwidth_bps
    lat = base.latency_seconds if latency_seconds is None else latency_seconds
    return ClusterNetwork(name, bw, lat, f"{base.source}; overridden by caller: "
                          f"{bw:g} b/s, {lat:g} s")


@dataclass(frozen=True)
class Accelerator:
    """A data-centre worker's sustained training throughput (counted FLOPs per second)."""

    flops_per_second: float = 1e12
    source: str = ("assumed: 1 TFLOP/s sustained, a modest accelerator at low utilization; "
                   "declare your own")

    def __post_init__(self) -> None:
        finite_positive("flops_per_second", self.flops_per_second)

    def describe(self) -> dict[str, Any]:
        return {"model": "Accelerator", "flops_per_second": self.flops_per_second,
                "source": self.source}


@dataclass(frozen=True)
class Timeline:
    """Modeled wall-clock of a run; `step_end_seconds[i]` is when step `steps[i]` ended on the
    slowest worker (for loss-versus-modeled-time curves)."""

    steps: tuple[int, ...]
    step_end_seconds: tuple[float, ...]
    modeled_seconds: float
    modeled_compute_seconds: dict[str, float]  # per worker
    modeled_comm_seconds: dict[str, float]  # per worker: time its link was busy
    network: ClusterNetwork
    device: Accelerator

    @property
    def workers(self) -> int:
        return len(self.modeled_compute_seconds)

    @property
    def utilization(self) -> float:
        """Modeled compute utilization: compute time / (workers x wall time)."""
        if self.modeled_seconds == 0:
            return 1.0
        return sum(self.modeled_compute_seconds.values()) / (self.workers * self.modeled_seconds)

    def seconds_at(self, step: int) -> float:
        """Modeled wall-clock when `step` ended (0 before the first step)."""
        best = 0.0
        for s, end in zip(self.steps, self.step_end_seconds, strict=True):
            if s > step:
                break
            best = end
        return best

    def describe(self) -> dict[str, Any]:
        return {"note": "modeled from measured bytes and counted FLOPs; not measured",
                "modeled_seconds": self.modeled_seconds, "utilization": self.utilization,
                "modeled_compute_seconds": sum(self.modeled_compute_seconds.values()),
                "modeled_comm_seconds": sum(self.modeled_comm_seconds.values()),
                "models": {"network": self.network.describe(),
                           "device": self.device.describe()}}


def collective_seconds(event: CollectiveEvent, network: ClusterNetwork) -> float:
    """The α-β duration of one collective: its hops in sequence, each paced by its largest
    transfer."""
    return sum(network.latency_seconds + 8.0 * n / network.bandwidth_bps
               for n in event.hop_nbytes)


def timeline(ledger: Ledger, *, network: ClusterNetwork, device: Accelerator) -> Timeline:
    """Replay the ledger's compute and collectives on per-worker timelines (module docstring)."""
    compute: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in ledger.compute_events():
        compute[e.round][e.worker] += e.flops
    posted: dict[int, list[CollectiveEvent]] = defaultdict(list)
    for c in ledger.collective_events():
        posted[c.round].append(c)
    workers = sorted({w for per in compute.values() for w in per}
                     | {p for cs in posted.values() for c in cs for p in c.participants})
    compute_end = dict.fromkeys(workers, 0.0)
    link_free = dict.fromkeys(workers, 0.0)
    busy = dict.fromkeys(workers, 0.0)
    comm_busy = dict.fromkeys(workers, 0.0)
    arrivals: dict[tuple[str, int], float] = defaultdict(float)  # (worker, step) -> needed by
    steps = sorted(set(compute) | set(posted))
    step_ends = []
    for t in steps:
        for w in workers:
            seconds = compute[t].get(w, 0) / device.flops_per_second
            waited = max([compute_end[w]] + [v for (ww, s), v in arrivals.items()
                                              if ww == w and s <= t])
            compute_end[w] = waited + seconds
            busy[w] += seconds
        for (ww, s) in [key for key in arrivals if key[1] <= t]:
            del arrivals[(ww, s)]  # consumed: every later step starts after this one
        for c in posted.get(t, ()):
            start = max(max(compute_end[p], link_free[p]) for p in c.participants)
            seconds = collective_seconds(c, network)
            for p in c.participants:
                link_free[p] = start + seconds
                comm_busy[p] += seconds
                key = (p, c.ready_round)
                arrivals[key] = max(arrivals[key], start + seconds)
        step_ends.append(max(compute_end.values(), default=0.0))
    wall = max([*compute_end.values(), *link_free.values(), 0.0])
    return Timeline(tuple(steps), tuple(step_ends), wall, busy, comm_busy, network, device)
