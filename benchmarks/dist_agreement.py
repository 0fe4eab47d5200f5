"""Simulator against real processes on loopback: DDP and DiLoCo with 2 and 3 ranks over
torch.distributed (gloo), the small data-centre workload of `dc_harness` (char transformer,
2 blocks of width 64, seq 32, batch 16, python_docs); and FedAvg as a star (`fedavg_row`: the
server on rank 0, the clients on the other ranks) on the bundled MNIST subset.

Decided before running. Bytes: the distributed ledger must equal the simulator's event for event
and the bytes counted at every rank's transport must equal the ledger; the script exits with
status 1 otherwise. Parameters: bit-identical expected, reported. Time: reported side by side,
no agreement claimed: rank 0's measured wall-clock per round (DDP: a step; DiLoCo: H steps)
and per synchronisation (time inside the collectives), next to the α-β timeline
(`lowcomm.cost.timeline`) with α and bandwidth measured by a ping-pong on the same transport
(the best of 30 one-way times of 64 B and 4 MiB payloads) and the device rate calibrated from
rank 0's measured compute time per step (so modeled compute matches measured compute by
construction; the comparison that says something is the communication).

FedAvg (decided before running, the same way): the star ledger must equal the simulator's and
every rank's transport counters must equal the ledger's bytes to and from the parties it hosts
(exit status 1 otherwise); parameters allclose expected, the largest difference reported. Time
side by side, no agreement claimed: the server's measured wall-clock per round, next to
`cost.price`'s modeled round (every client on its own device and link, the slowest client
sets the round) with a constant network of the ping-pong's α and bandwidth in both directions
and a device rate calibrated from the simulator's measured seconds per round (compute
dominated) on this machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dist_agreement.py \\
        --out results/dist_agreement.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dist_agreement.py --only fedavg \\
        --out results/dist_agreement_fedavg.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dc_harness import Workload, setup
from lowcomm import cost, data, models
from lowcomm.algorithms import adamw, fedavg, sgd
from lowcomm.algorithms.replicated import AllReduce, ddp, diloco, param_hash
from lowcomm.compress import fp32
from lowcomm.core import Payload, numpy_rng, serialize
from lowcomm.cost.ledger import CommEvent, Ledger, client_id, client_name, worker_name
from lowcomm.runtime import (
    SimulationSettings,
    TrainingSettings,
    sequential,
    simulate,
    train_workers,
)
from lowcomm.runtime.distributed import RankLog, simulate_rank, spawn_local, train_rank
from lowcomm.runtime.distributed.rank import run_posts
from lowcomm.runtime.distributed.star import client_rank, wire_equals_ledger
from lowcomm.runtime.distributed.transport import wire_tag

PING_NBYTES = (64, 4 << 20)


def ping_pong(transport, *, reps: int, warmup: int = 5) -> dict[int, float]:
    """The best one-way seconds of a payload of each size between ranks 0 and 1 (control
    traffic; the sizes interleaved, the first `warmup` rounds dropped). The best, not the
    median: on a shared, loaded machine the median measures the scheduler more than the link."""
    data = {n: serialize(Payload(x=np.zeros(n, np.uint8))) for n in PING_NBYTES}
    times: dict[int, list[float]] = {len(d): [] for d in data.values()}
    for i in range(warmup + reps):
        for n, message in data.items():
            tag = wire_tag(f"ping|{n}|{i}")
            started = time.perf_counter()
            if transport.rank == 0:
                transport.exchange([(1, message)], [], tag=tag, what="ping", control=True)
                transport.exchange([], [1], tag=tag, what="pong", control=True)
            elif transport.rank == 1:
                transport.exchange([], [0], tag=tag, what="ping", control=True)
                transport.exchange([(0, message)], [], tag=tag, what="pong", control=True)
            if i >= warmup:
                times[len(message)].append((time.perf_counter() - started) / 2)
    return {n: min(t) for n, t in times.items()}


def isolated_allreduce(transport, n: int, *, reps: int, warmup: int = 3) -> list[float]:
    """Rank-local seconds of a fp32 ring all-reduce of n values, every repetition started
    together (a barrier first): the collective alone, without waiting for a peer's compute."""
    vector = torch.zeros(n)
    times = []
    for i in range(warmup + reps):
        transport.barrier()
        started = time.perf_counter()
        run_posts(transport, RankLog(transport.rank), (AllReduce("bench", vector, fp32()),),
                  t=i + 1, seed=0, live=tuple(range(transport.world_size)))
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def one(name: str, workers: int, w: Workload, h: int) -> dict:
    w = replace(w, workers=workers)
    parts = setup(w, seed=0)
    make = {"ddp": lambda m: ddp(m, optimizer=adamw(1e-3)),
            "diloco": lambda m: diloco(m, inner_optimizer=adamw(1e-3), inner_steps=h)}[name]
    algorithm = make(parts.model)
    settings = TrainingSettings(steps=w.steps, workers=workers, eval_every=w.steps)
    args = (algorithm, parts.worker_data, parts.model, parts.params, parts.flops, settings)
    parts.flops.step((w.batch_size, w.seq_len))  # counted once, inherited by the ranks

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc)
        pings = ping_pong(transport, reps=30)  # control traffic: not in the payload counts
        result = train_rank(*args, transport)  # counts payload bytes up to its final gather
        return pings, isolated_allreduce(transport, parts.params.numel(), reps=10), result

    (pings, alone, rank0), *_ = spawn_local(rank, workers, timeout_seconds=3600)
    torch.set_num_threads(1)
    sim = train_workers(*args)
    run = rank0.run
    wire_ok = all(c.payload_sent_nbytes == sum(e.nbytes for e in run.ledger.comm_events()
                                               if e.src == worker_name(k))
                  for k, c in enumerate(rank0.wire))
    (small, t_small), (large, t_large) = sorted(pings.items())
    network = cost.ClusterNetwork("loopback (ping-pong)", 8 * (large - small) / (t_large - t_small),
                                  t_small, "measured: best one-way time of 64 B and 4 MiB payloads")
    syncs = sorted({e.round for e in run.ledger.collective_events()})
    compute = [s - c for t, (s, c) in enumerate(zip(rank0.step_seconds, rank0.comm_seconds,
                                                    strict=True), 1) if t not in syncs]
    compute = compute or [s - c for s, c in zip(rank0.step_seconds, rank0.comm_seconds,
                                                strict=True)]
    flops_per_step = run.ledger.totals().flops / (workers * w.steps)
    device = cost.Accelerator(flops_per_step / statistics.median(compute),
                              "calibrated: rank 0's median measured compute time per step")
    timeline = cost.timeline(run.ledger, network=network, device=device)
    round_steps = 1 if name == "ddp" else h
    rounds = w.steps / round_steps
    collective = [cost.collective_seconds(e, network) for e in run.ledger.collective_events()]
    return {
        "algorithm": name, "workers": workers, "steps": w.steps, "inner_steps": round_steps,
        "num_params": int(parts.params.numel()),
        "ledger_equal": run.ledger == sim.ledger, "transport_equals_ledger": wire_ok,
        "params_equal": [param_hash(m) for m in run.models] == [param_hash(m)
                                                                for m in sim.models],
        "bytes_total": run.ledger.totals().bytes_total,
        "bytes_sim": sim.ledger.totals().bytes_total,
        "bytes_transport": sum(c.payload_sent_nbytes for c in rank0.wire),
        "loopback": network.describe(), "device": device.describe(),
        "measured_sync_seconds": statistics.mean(rank0.comm_seconds[t - 1] for t in syncs),
        "modeled_sync_seconds": statistics.mean(collective),
        "isolated_allreduce_seconds": {"min": min(alone), "median": statistics.median(alone)},
        "measured_round_seconds": sum(rank0.step_seconds) / rounds,
        "modeled_round_seconds": timeline.modeled_seconds / rounds,
        "load_average": os.getloadavg(),
    }


def as_placed(ledger: Ledger, ranks: int) -> Ledger:
    """The ledger with every client renamed to the rank that hosted it: `cost.price` then
    prices each client rank as one device and link carrying all its clients' bytes and FLOPs
    one after another (the placement of this run), instead of one device per client."""
    def host(name: str) -> str:
        c = client_id(name)
        return name if c is None else client_name(client_rank(c, ranks))

    return Ledger(replace(e, src=host(e.src), dst=host(e.dst)) if isinstance(e, CommEvent)
                  else replace(e, worker=host(e.worker)) for e in ledger)


def fedavg_row(ranks: int, *, rounds: int, clients: int, per_round: int) -> dict:
    """FedAvg (2NN, E = 1, B = 10, lr 0.05, fp32) on `clients` IID clients of the bundled MNIST
    subset, `per_round` a round, over `ranks` processes, next to the simulator."""
    central = data.mnist_subset(seed=0)
    parts = data.iid(len(central.y_train), clients, rng=numpy_rng(0, purpose="partition"))
    dataset = data.federate(central, parts, seed=0)
    spec = models.mlp_2nn(tuple(dataset.input_shape), dataset.num_classes)
    model, params = models.init_params(spec, seed=0)
    flops = cost.FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    flops.step((1, *dataset.input_shape))  # counted once, inherited by the ranks
    algorithm = fedavg(model, client_optimizer=sgd(0.05), epochs=1, batch_size=10)
    settings = SimulationSettings(rounds=rounds, clients_per_round=per_round, seed=0,
                                  eval_every=rounds)  # evaluated once: rounds are training only
    args = (algorithm, dataset, model, params, flops, settings)

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc)
        pings = ping_pong(transport, reps=30)  # control traffic: not in the payload counts
        return pings, simulate_rank(*args, transport, executor=sequential())

    (pings, rank0), *_ = spawn_local(rank, ranks, timeout_seconds=3600)
    torch.set_num_threads(1)
    sim = simulate(*args, executor=sequential())
    run = rank0.run
    (small, t_small), (large, t_large) = sorted(pings.items())
    bandwidth_bps = 8 * (large - small) / (t_large - t_small)
    network = cost.constant_network(
        up_bps=bandwidth_bps, down_bps=bandwidth_bps, latency_seconds=t_small,
        sources=dict.fromkeys(("up_bps", "down_bps", "latency_seconds"),
                              "measured: best one-way time of 64 B and 4 MiB payloads"))
    sim_seconds = sum(r.simulator_seconds for r in sim.rounds)
    device = cost.DeviceModel(flops_per_second=run.ledger.totals().flops / sim_seconds)
    def modeled(ledger):
        return cost.price(ledger, network=network, device=device, money=cost.MoneyModel(),
                          carbon=cost.CarbonModel()).modeled_seconds / rounds

    return {
        "algorithm": "fedavg", "ranks": ranks, "rounds": rounds, "clients": clients,
        "clients_per_round": per_round, "num_params": int(params.numel()),
        "ledger_equal": run.ledger == sim.ledger, "transport_equals_ledger":
            wire_equals_ledger(rank0),
        "params_max_abs_diff": float((run.params - sim.params).abs().max()),
        "bytes_total": run.ledger.totals().bytes_total,
        "bytes_sim": sim.ledger.totals().bytes_total,
        "bytes_transport": sum(c.payload_sent_nbytes for c in rank0.wire),
        "loopback": network.describe(), "device_flops_per_second": device.flops_per_second,
        "final_test_accuracy": run.rounds[-1].test_accuracy,
        "measured_round_seconds": statistics.mean(rank0.round_seconds),
        "simulator_round_seconds": sim_seconds / rounds,
        "modeled_round_seconds": modeled(run.ledger),
        "modeled_placed_round_seconds": modeled(as_placed(run.ledger, ranks)),
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddp-steps", type=int, default=30)
    parser.add_argument("--diloco-steps", type=int, default=60)
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--procs", default="2,3")
    parser.add_argument("--fedavg-rounds", type=int, default=10)
    parser.add_argument("--fedavg-ranks", type=int, default=3)
    parser.add_argument("--only", choices=("dc", "fedavg"), default=None)
    parser.add_argument("--out", default="results/dist_agreement.json")
    a = parser.parse_args()
    rows, star = [], []
    if a.only != "dc":
        star.append(fedavg_row(a.fedavg_ranks, rounds=a.fedavg_rounds, clients=20, per_round=6))
        print(json.dumps({k: v for k, v in star[-1].items() if k != "loopback"}), flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(star, indent=1))
    for workers in (int(p) for p in a.procs.split(",") if a.only != "fedavg"):
        for name, steps in (("ddp", a.ddp_steps), ("diloco", a.diloco_steps)):
            row = one(name, workers, Workload(steps=steps), a.inner_steps)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("loopback", "device")}),
                  flush=True)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(star + rows, indent=1))
    print_tables(rows, star)
    ok = all(r["ledger_equal"] and r["transport_equals_ledger"] for r in rows + star)
    return 0 if ok else 1


def print_tables(rows: list[dict], star: list[dict]) -> None:
    if star:
        print("| algorithm | ranks | rounds | ledger = simulator's | transport = ledger | "
              "largest parameter difference | bytes | round, measured (server) | "
              "round, simulator | round, modeled (a device per client) | round, modeled (a "
              "device per client rank) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in star:
        ms = {k: f"{1e3 * r[k]:.1f} ms" for k in ("measured_round_seconds",
                                                 "simulator_round_seconds",
                                                 "modeled_round_seconds",
                                                 "modeled_placed_round_seconds")}
        print(f"| fedavg | {r['ranks']} | {r['rounds']} | {r['ledger_equal']} | "
              f"{r['transport_equals_ledger']} | {r['params_max_abs_diff']:.1e} | "
              f"{r['bytes_total']:,} | {ms['measured_round_seconds']} | "
              f"{ms['simulator_round_seconds']} | {ms['modeled_round_seconds']} | "
              f"{ms['modeled_placed_round_seconds']} |")
    if not rows:
        return
    print("| algorithm | ranks | steps | ledger = simulator's | transport = ledger | "
          "parameters identical | bytes | all-reduce alone, measured (min / median) | "
          "sync in training, measured | sync, modeled (α-β) | round, measured | "
          "round, modeled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        alone = r["isolated_allreduce_seconds"]
        ms = {k: f"{1e3 * r[k]:.1f} ms" for k in ("measured_sync_seconds", "modeled_sync_seconds",
                                                 "measured_round_seconds",
                                                 "modeled_round_seconds")}
        print(f"| {r['algorithm']} | {r['workers']} | {r['steps']} | {r['ledger_equal']} | "
              f"{r['transport_equals_ledger']} | {r['params_equal']} | {r['bytes_total']:,} | "
              f"{1e3 * alone['min']:.1f} / {1e3 * alone['median']:.1f} ms | "
              f"{ms['measured_sync_seconds']} | {ms['modeled_sync_seconds']} | "
              f"{ms['measured_round_seconds']} | {ms['modeled_round_seconds']} |")


if __name__ == "__main__":
    sys.exit(main())
