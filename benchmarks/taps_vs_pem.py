"""Reproduction in spirit of TAPS (Zhang, Ye, Hu, SIGMOD 2025, arXiv 2412.14832): federated
heavy hitters across parties against the baseline of independent per-party PEM merged at the end.

The claim (abstract): TAPS's target-aligning prefix trees with adaptive extension and
consensus-based pruning identify the global top-k (F1, NCR) better than the baselines on real
and synthetic data. Here: the real market baskets of ../shared/data (FIMI retail, the Kosarak
partial copy), one of each basket's distinct items drawn uniformly as its user's item
(`data.basket_items`, with the original 15-bit ids through `data.item_ids`), users split
into P parties (iid: a seeded shuffle; dirichlet: each item's holders divided among parties in
Dir(0.5) proportions), top-k at several epsilon, OLH at every level, seeds 0, 1, 2 (the seed
draws the items, the split and all LDP noise). Printed per cell: mean F1 and NCR, measured bits
per user (serialized report, framing included; and the candidate list each user receives), the
bits the parties' aggregators exchange, and the rounds.

Rows: `taps` (defaults), `taps, keep k` (adaptive keep off: max_keep = k), `per-party pem` (the
baseline) and `pem, pooled` (one PEM over all users as if they were one party: a non-federated
reference, not a competitor).

    python benchmarks/taps_vs_pem.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lowcomm import analytics, data
from lowcomm.core import numpy_rng

METHODS = ("taps", "taps, keep k", "per-party pem", "pem, pooled")


BITS = 15  # both files' item ids are below 2^15 (retail 16,470 distinct ids, kosarak 17,035)


def one_run(name: str, data_dir, *, parties: int, split: str, epsilon: float, k: int,
            seed: int) -> list:
    items = data.item_ids(data.basket_items(name, data_dir, k=1 << BITS, seed=seed))
    split_rng = numpy_rng(seed, purpose="bench-split")
    groups = data.party_split(items, parties, how=split, rng=split_rng, alpha=0.5)
    tree = analytics.prefix_tree(bits=BITS, k=k, epsilon=epsilon)
    runs = {
        "taps": lambda: analytics.taps(groups, tree, seed=seed),
        "taps, keep k": lambda: analytics.taps(groups, tree, seed=seed, max_keep=k),
        "per-party pem": lambda: analytics.per_party_pem(groups, tree, seed=seed),
        "pem, pooled": lambda: analytics.pem(items, tree, seed=seed),
    }
    rows = []
    for method, run in runs.items():
        started = time.perf_counter()
        r = run()
        rows.append({"dataset": name, "parties": parties, "split": split,
                     "epsilon": epsilon, "k": k, "seed": seed, "method": method,
                     "bits": BITS, "f1": r.f1, "ncr": r.ncr, "rounds": r.rounds,
                     "bits_per_user": r.bits_per_user, "data_bits_per_user": r.data_bits_per_user,
                     "down_bits_per_user": r.down_bits_per_user, "party_bits": r.party_bits,
                     "seconds": time.perf_counter() - started})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | P | split | ε | method | F1 (per seed) | NCR | bits/user up | "
             "bits/user down | party kB | rounds |", "|---|---:|---|---:|---|---|---:|---:|---:|"
             "---:|---:|"]
    cells = sorted({(r["dataset"], r["parties"], r["split"], r["epsilon"]) for r in rows},
                   key=lambda c: (c[0] != "retail", c[1], c[2], c[3]))
    for cell in cells:
        for method in METHODS:
            mine = [r for r in rows if (r["dataset"], r["parties"], r["split"], r["epsilon"])
                    == cell and r["method"] == method]
            f1 = [r["f1"] for r in mine]
            lines.append(
                f"| {cell[0]} | {cell[1]} | {cell[2]} | {cell[3]:g} | {method} | "
                f"{np.mean(f1):.3f} ({', '.join(f'{x:.2f}' for x in f1)}) | "
                f"{np.mean([r['ncr'] for r in mine]):.3f} | "
                f"{np.mean([r['bits_per_user'] for r in mine]):.0f} | "
                f"{np.mean([r['down_bits_per_user'] for r in mine]):.0f} | "
                f"{np.mean([r['party_bits'] for r in mine]) / 8000:.1f} | "
                f"{mine[0]['rounds']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="directory holding itemsets/ "
                        "(default: $LOWCOMM_DATA)")
    parser.add_argument("--datasets", nargs="+", default=["retail", "kosarak"])
    parser.add_argument("--parties", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--splits", nargs="+", default=["iid", "dirichlet"])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[2.0, 4.0, 6.0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="results/taps_vs_pem.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in args.datasets:
        for parties in args.parties:
            for split in args.splits:
                for epsilon in args.epsilons:
                    for seed in args.seeds:
                        new = one_run(name, args.data_dir, parties=parties, split=split,
                                      epsilon=epsilon, k=args.k, seed=seed)
                        rows.extend(new)
                        out.write_text(json.dumps({"meta": vars(args), "runs": rows}, indent=1))
                        print(f"{name} P={parties} {split} eps={epsilon:g} seed={seed}: "
                              + ", ".join(f"{r['method']} F1 {r['f1']:.2f}" for r in new),
                              flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
