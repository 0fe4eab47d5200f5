"""Reproduction in spirit of ModularSubsetSelection (Arcolezi, AAAI 2026, arXiv 2511.11569): MSE
and bits per user of MSS against SS, PGR, GRR and OUE.

The claims (abstract, and secondary notes in ldp.md §2.1): MSS "matches the estimation accuracy of
SS, PGR, and RAPPOR" (MSE within about 1.3x of SS and PGR), sends "shorter user messages than SS"
(up to 50 % shorter), and decodes faster than PGR. The paper's setting: n = 10,000 users,
k in {1024, 22000}, ε from 0.5 to 5, Zipf and spike data, 300 trials. Here: n = 10,000, k = 1024
(lowcomm's MSS check and PGR server are dense in k, so k = 22000 is out of reach), ε in
{0.5, 1, 2, 3, 4, 5}, two data sets from `lowcomm.data` (truncated Zipf with s = 1.0, and the
spike: every user holds item 0; the MSS paper's own parameters were not read), 3 seeds x 5 trials
per cell.

MSE is the mean over items of (f̂ − f)² of the unbiased (unclipped) estimates; "theory" is each
oracle's `variance` (MSS: its exact matrix formula). Bits: `data` is measured from one serialized
report (`report_bits`, the arrays without framing); the analytic counts are printed beside it:
SS ids ω⌈log2 k⌉ and subset index ⌈log2 C(k, ω)⌉; MSS the abstract's ⌈log2 ℓ⌉ + ⌈log2 m_j⌉, the
subset index ⌈log2 ℓ⌉ + ⌈log2 C(m_j, ω_j)⌉ and the ids, each averaged over the uniform block.
Server seconds (support counts + estimate, one trial) are measured wall-clock on a shared machine.

    python benchmarks/mss_comparison.py --out results/mss_comparison.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lowcomm import data
from lowcomm.analytics import grr, mss, mss_bits, oue, pgr, report_bits, ss
from lowcomm.analytics.mss import default_moduli
from lowcomm.analytics.subset import ideal_bits, subset_size_of
from lowcomm.core import numpy_rng


def mss_half(epsilon: float, k: int):
    """MSS with moduli near k/2: up to 8 pairwise coprime moduli in [0.44 k, 0.586 k] (k = 1024:
    (600, 577, 557, 533, 511, 491, 467), κ ≈ 1.29), about half of SS's subset-index bits."""
    return mss(epsilon, k, moduli=default_moduli(k, 8, band=(int(0.44 * k), int(0.586 * k))))


MECHANISMS = ("mss", "mss-half", "ss", "pgr", "grr", "oue")
FACTORIES = {"mss": mss, "mss-half": mss_half, "ss": ss, "pgr": pgr, "grr": grr, "oue": oue}


def dataset(name: str, k: int, n: int) -> np.ndarray:
    """The users' items: lowcomm.data's truncated Zipf (s = 1.0, as the PGR repository's
    zipf1.0 inputs) or spike (every user holds item 0)."""
    stream = data.spike_items(k, n) if name == "spike" else data.zipf_items(k, n, s=1.0, seed=0)
    return np.concatenate(list(stream.chunks()))


def analytic_columns(oracle) -> dict[str, float]:
    if oracle.name == "mss":  # also mss-half
        bits = mss_bits(oracle)
        return {"abstract": bits.mean(bits.abstract), "subset_index": bits.mean(bits.subset_index),
                "ids": bits.mean(bits.ids)}
    if oracle.name == "ss":
        omega = subset_size_of(oracle)
        return {"subset_index": ideal_bits(oracle.k, omega), "ids": oracle.analytic_bits}
    return {"analytic": oracle.analytic_bits}


def run_cell(name: str, epsilon: float, data_name: str, values: np.ndarray, *, k: int,
             seeds: int, trials: int) -> dict:
    oracle = FACTORIES[name](epsilon, k)
    n = values.shape[0]
    f_true = np.bincount(values, minlength=k) / n
    theory = float(np.mean(oracle.variance(n, f_true)))
    per_seed, server_seconds, data_bits = [], [], []
    for seed in range(seeds):
        errors = []
        for trial in range(trials):
            rng = numpy_rng(seed, round=trial, purpose=f"mss-comparison-{name}-{data_name}")
            reports = oracle.encode(values, rng)
            start = time.perf_counter()
            f_hat = oracle.estimate(oracle.support_counts(reports), n)
            server_seconds.append(time.perf_counter() - start)
            errors.append(float(np.mean((f_hat - f_true) ** 2)))
            data_bits.append(report_bits(oracle, reports, index=trial).data_bits)
        per_seed.append(float(np.mean(errors)))
    mse = float(np.mean(per_seed))
    return {"mechanism": name, "epsilon": epsilon, "data": data_name, "mse": mse,
            "mse_per_seed": per_seed, "theory": theory, "mse_over_theory": mse / theory,
            "data_bits": float(np.mean(data_bits)), **analytic_columns(oracle),
            "server_seconds": float(np.median(server_seconds)),
            "moduli": list(getattr(oracle, "moduli", ())),
            "kappa": getattr(oracle, "kappa", None), "cond2": getattr(oracle, "condition", None)}


def print_tables(rows: list[dict], epsilons: list[float], data_names: list[str]) -> None:
    cell = {(r["data"], r["epsilon"], r["mechanism"]): r for r in rows}
    print(f"\nMSE (x 1e-4, mean over {len(rows[0]['mse_per_seed'])} seeds), MSE/theory in "
          f"brackets, and MSS's MSE over SS's and PGR's\n")
    print("| data | ε | " + " | ".join(MECHANISMS) + " | MSS/SS | MSS/PGR | MSS-half/SS |")
    print("|---|---|" + "---|" * (len(MECHANISMS) + 3))
    for d in data_names:
        for e in epsilons:
            r = {m: cell[(d, e, m)] for m in MECHANISMS}
            entries = [f"{r[m]['mse'] * 1e4:.3g} [{r[m]['mse_over_theory']:.2f}]"
                       for m in MECHANISMS]
            mse = {m: r[m]["mse"] for m in MECHANISMS}
            ratios = (f"{mse['mss'] / mse['ss']:.2f} | {mse['mss'] / mse['pgr']:.2f} | "
                      f"{mse['mss-half'] / mse['ss']:.2f}")
            print(f"| {d} | {e} | " + " | ".join(entries) + f" | {ratios} |")
    print("\nBits per user (zipf rows; data = measured array bytes x 8)\n")
    print("| ε | MSS abstract | MSS subset index | MSS ids | MSS data | MSS-half subset index | "
          "MSS-half data | SS subset index | SS ids | SS data | MSS / SS index | MSS-half / SS "
          "index | PGR analytic / data | GRR | OUE |")
    print("|---|" + "---|" * 14)
    for e in epsilons:
        m, h, s, p = (cell[(data_names[0], e, x)] for x in ("mss", "mss-half", "ss", "pgr"))
        g, o = cell[(data_names[0], e, "grr")], cell[(data_names[0], e, "oue")]
        print(f"| {e} | {m['abstract']:.1f} | {m['subset_index']:.1f} | {m['ids']:.1f} | "
              f"{m['data_bits']:.0f} | {h['subset_index']:.1f} | {h['data_bits']:.0f} | "
              f"{s['subset_index']} | {s['ids']} | {s['data_bits']:.0f} | "
              f"{m['subset_index'] / s['subset_index']:.2f} | "
              f"{h['subset_index'] / s['subset_index']:.2f} | "
              f"{p['analytic']} / {p['data_bits']:.0f} | "
              f"{g['analytic']} | {o['analytic']} |")
    print("\nServer seconds (support counts + estimate, median over trials; zipf; measured, shared "
          "machine)\n")
    print("| ε | " + " | ".join(MECHANISMS) + " | MSS moduli (κ, cond₂) | MSS-half (κ, cond₂) |")
    print("|---|" + "---|" * (len(MECHANISMS) + 2))
    for e in epsilons:
        r = {x: cell[(data_names[0], e, x)] for x in MECHANISMS}
        print(f"| {e} | " + " | ".join(f"{r[x]['server_seconds']:.3f}" for x in MECHANISMS) +
              f" | {tuple(r['mss']['moduli'])} ({r['mss']['kappa']:.2f}, {r['mss']['cond2']:.1f})"
              f" | ({r['mss-half']['kappa']:.2f}, {r['mss-half']['cond2']:.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--epsilons", default="0.5,1,2,3,4,5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    epsilons = [float(e) for e in args.epsilons.split(",")]
    data_names = ["zipf", "spike"]
    rows = []
    start = time.perf_counter()
    for d in data_names:
        values = dataset(d, args.k, args.n)
        for e in epsilons:
            for name in MECHANISMS:
                rows.append(run_cell(name, e, d, values, k=args.k, seeds=args.seeds,
                                     trials=args.trials))
                print(f"{d} ε={e} {name}: MSE/theory {rows[-1]['mse_over_theory']:.3f}", flush=True)
    print_tables(rows, epsilons, data_names)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
