"""Streaming frequency estimation at 10^7 users: peak memory and wall time per oracle.

For each oracle, a child process generates n users' values (truncated Zipf(s) over [0, k),
`lowcomm.data.zipf_items`) chunk by chunk, encodes each chunk (`encode_chunks`: chunk c from its
own derived generator), adds its support counts (`aggregate`) and the true counts, then
estimates the frequencies. Nothing holds more than one chunk of users. The child reports its
own peak resident memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, exact: the kernel's high
water mark), its resident memory after imports (the baseline every run pays: numpy, torch via
lowcomm.core), its wall time and MSE/theory (mean over items of (f̂ - f)^2 against the mean
closed-form variance, one trial: standard error about sqrt(2/k)) as a check that the counts are
real. RAPPOR (not a pure protocol) gets user ids and a derived PRR secret, is decoded by its own
`decode` (Lasso, then least squares) and has no closed-form variance: only its MSE is shown.
The figures go in docs/analytics.md with this command:

    python benchmarks/analytics_memory.py --n 10000000 --k 1024 --epsilon 1
    python benchmarks/analytics_memory.py --oracles grr oue --n 1000000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_ORACLES = ("grr", "oue", "sue", "olh", "blh", "hm", "hr", "ss", "pgr", "mss", "rappor")
GIB = 2**30


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(name: str, args: argparse.Namespace) -> dict:
    import numpy as np

    import lowcomm.analytics as analytics
    from lowcomm.analytics import aggregate, encode_chunks, report_bits
    from lowcomm.core import derive_seed, numpy_rng
    from lowcomm.data import zipf_items

    oracle = getattr(analytics, name)(args.epsilon, args.k)
    baseline = _rss_mib()
    started = time.perf_counter()
    stream = zipf_items(args.k, args.n, s=args.s, seed=args.seed, chunk_users=args.chunk_users)
    truth = np.zeros(args.k, dtype=np.int64)

    def values():
        for chunk in stream.chunks():  # [chunk_users] int64, one chunk alive at a time
            truth[:] += np.bincount(chunk, minlength=args.k)
            yield chunk

    if isinstance(oracle, analytics.RapporOracle):  # user ids, a PRR secret, its own decode
        prr_seed = derive_seed(args.seed, purpose="bench-rappor-prr")
        chunks = (oracle.encode(v, numpy_rng(args.seed, client=c, purpose="bench-rappor"),
                                users=np.arange(c * args.chunk_users, c * args.chunk_users
                                                + v.size), prr_seed=prr_seed)
                  for c, v in enumerate(values()))
        tally = oracle.aggregate(chunks)
        n = int(tally.cohort_n.sum())
        f_hat = oracle.decode(tally).frequencies
        variance = None  # no closed form
    else:
        tally = aggregate(oracle, encode_chunks(oracle, values(), seed=args.seed))
        n = tally.n
        f_hat = oracle.estimate(tally.counts, tally.n)
        variance = oracle.variance(args.n, truth / args.n)
    f_true = truth / args.n
    seconds = time.perf_counter() - started
    mse = float(np.mean((f_hat - f_true) ** 2))
    theory = None if variance is None else float(np.mean(variance))
    extra = {"users": np.zeros(1, dtype=np.int64), "prr_seed": 0} \
        if isinstance(oracle, analytics.RapporOracle) else {}
    bits = report_bits(oracle, oracle.encode(np.zeros(1, dtype=np.int64),
                                             np.random.default_rng(0), **extra))
    return {"oracle": name, "n": n, "k": args.k, "epsilon": args.epsilon,
            "chunk_users": args.chunk_users, "seconds": seconds,
            "peak_rss_mib": _rss_mib(), "baseline_rss_mib": baseline,
            "mse": mse, "mse_over_theory": None if theory is None else mse / theory,
            "analytic_bits": bits.analytic_bits,
            "wire_bits": bits.wire_bits}


def _ratio(r: dict) -> str:
    if r["mse_over_theory"] is None:
        return f"- (MSE {r['mse']:.3g}; no closed form)"
    return f"{r['mse_over_theory']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracles", nargs="+", default=list(DEFAULT_ORACLES))
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--s", type=float, default=1.1, help="Zipf exponent (default: 1.1)")
    parser.add_argument("--chunk-users", type=int, default=1 << 16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/analytics_memory.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args)))
        return
    forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k not in ("oracles", "child", "out")]
    results = []
    for name in args.oracles:
        print(f"{name}: n = {args.n:,}, k = {args.k}, epsilon = {args.epsilon} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, f"--child={name}", *forwarded],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"{name} failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  peak RSS {r['peak_rss_mib']:.0f} MiB (after imports {r['baseline_rss_mib']:.0f}),"
              f" {r['seconds']:.1f} s, MSE/theory {_ratio(r)}", flush=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average_after": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "machine": machine,
                                          "results": results}, indent=1))
    print(f"\nn = {args.n:,}, k = {args.k}, epsilon = {args.epsilon}, Zipf s = {args.s}, "
          f"chunks of {args.chunk_users:,} users; load average after: "
          f"{', '.join(f'{x:.1f}' for x in machine['load_average_after'])}\n")
    print("| oracle | peak RSS (MiB) | after imports (MiB) | within 2 GiB | wall time (s) | "
          "MSE/theory | bits per user, analytic / wire |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        within = "yes" if r["peak_rss_mib"] * 2**20 <= 2 * GIB else "**no**"
        print(f"| {r['oracle']} | {r['peak_rss_mib']:.0f} | {r['baseline_rss_mib']:.0f} | "
              f"{within} | {r['seconds']:.1f} | {_ratio(r)} | "
              f"{r['analytic_bits']} / {r['wire_bits']} |")


if __name__ == "__main__":
    main()
