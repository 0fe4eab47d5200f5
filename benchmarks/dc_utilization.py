"""Modeled compute utilization of every data-centre algorithm under every bandwidth scenario.

Each algorithm registered for `lowcomm train` runs once (seed 0) on the reproduction workload of
`dc_harness.py` with `lowcomm train`'s defaults for its own options, H = 50 wherever an algorithm
has an H, for `--steps` steps. Its ledger, with measured bytes and counted FLOPs, is then priced
by `lowcomm.cost.timeline` under the three scenarios, for two declared worker throughputs:

- 1 TFLOP/s, the default `Accelerator`;
- 25 GFLOP/s, about one core of the CPU these figures were made on. This is the counted-FLOP
  rate of `benchmarks/char_transformer_step.py` in docs/models.md, and it is assumed, not measured
  here.

The utilization is compute time / (workers x modeled wall-clock). Each row also gives the
measured bytes per worker, the peak bytes one worker sent in one collective, and the latency
hops per worker.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dc_utilization.py --jobs 2 \
        --out results/dc_utilization.json
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from dc_harness import Workload, append_result, done, run_one
from lowcomm.cli.train_build import ALGORITHMS
from lowcomm.cli.train_config import TrainConfig

DEVICES = {"1 TFLOP/s": 1e12, "25 GFLOP/s": 2.5e10}


def _job(args):
    workload, name = args
    config = TrainConfig(algorithm=name, workers=workload.workers, steps=workload.steps,
                         inner_steps=50, inner_lr=3e-3, seq_len=workload.seq_len,
                         batch_size=workload.batch_size, layers=workload.layers,
                         width=workload.width, heads=workload.heads)
    row = run_one(workload, lambda m: ALGORITHMS[name](m, config), seed=0, label=name,
                  devices=DEVICES)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/dc_utilization.json")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS))
    args = parser.parse_args()
    workload = Workload(steps=args.steps)
    finished = done(args.out)
    jobs = [(workload, name) for name in args.algorithms if (name, 0) not in finished]
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(_job, jobs):
            append_result(args.out, row)
            print(f"{row['label']}: val loss {row['final_val_loss']:.4f}", flush=True)
    report(args.out)


def report(path: str) -> None:
    rows = json.loads(Path(path).read_text())
    scenarios = ("datacenter", "cross-region", "internet")
    head = " | ".join(f"{s}, {d}" for d in DEVICES for s in scenarios)
    print(f"| algorithm | bytes per worker | peak per sync | hops per worker | {head} |")
    print("|---|---|---|---|" + "---|" * (len(DEVICES) * len(scenarios)))
    for r in rows:
        cells = " | ".join(f"{100 * r['modeled_at'][d][s]['utilization']:.1f} %"
                           for d in DEVICES for s in scenarios)
        print(f"| {r['label']} | {r['bytes_per_worker']:,} | {r['peak_sync_nbytes']:,} | "
              f"{r['hops_per_worker']:,} | {cells} |")


if __name__ == "__main__":
    main()
