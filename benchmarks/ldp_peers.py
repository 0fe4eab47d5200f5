"""lowcomm's frequency oracles side by side with pure-ldp 1.2.0 and multi-freq-ldpy 0.2.5.

Opt-in (never part of the test suite); needs its own venv with the peers (`make bench-ldp-deps`,
docs/benchmarks.md). For every mechanism row and every n, the same users' values (a truncated
Zipf(1.1) over [0, k), seeded) go through each system that implements the row:

| row | lowcomm            | pure-ldp                                | multi-freq-ldpy            |
|-----|--------------------|-----------------------------------------|----------------------------|
| GRR | `grr`              | `DEClient` / `DEServer`                 | `GRR_Client` / `_MI`       |
| OUE | `oue`              | `UEClient(use_oue=True)` / `UEServer`   | `UE_Client` / `UE_..._MI`  |
| OLH | `olh` (g = 4)      | `LHClient(use_olh=True)` (g = 4)        | `LH_Client` / `LH_..._MI`  |
| HR  | `hr` (B = 2 at ε=1)| `HadamardResponseClient` (ε <= 1: B = 1)| (not implemented)          |
| HM  | `hm` (K = k)       | `HadamardMechClient(t=1)`               | (not implemented)          |
| SS  | `ss` (ω = 275)     | (not implemented)                       | `SS_Client` / `SS_..._MI`  |

Timed per system: *encode* (the client side, all users) and *server* (aggregation + the
estimate over the whole domain). lowcomm encodes the whole batch in one call and counts it with
`support_counts`. The peers have no batch client, so their documented per-user calls run in a
loop (pure-ldp `privatise`, multi-freq-ldpy's numba-jitted `*_Client`, compiled before timing),
in chunks of `--chunk` users so that memory stays bounded (OUE reports are float/int64 vectors);
pure-ldp's server streams natively (`aggregate_all` per chunk, `estimate_all` at the end);
multi-freq-ldpy's aggregators take a report list, so each chunk is aggregated by one call and
the support counts that the aggregator computes are captured at its `MI` call and added up.

Accuracy: the *unbiased* estimate of each system (pure-ldp's `estimate_all` with no
normalisation; for multi-freq-ldpy, (C - n q)/(n (p - q)) from its own counts and p, q, because
its `MI` output is clipped and renormalised), MSE over the k items, against the mean closed-form
variance of the mechanism as that system parameterises it (lowcomm: `oracle.variance`; peers: the
pure-protocol variance with their p*, q*; a hash is taken as ideal, q* = 1/g). MSE/theory is
pooled over the repeats (SE about sqrt(2/(k R))).

A peer run predicted to exceed `--run-budget-seconds` (from the same peer's seconds per user in
an untabled calibration run on `--calibrate-n` users) is timed on the first n' users instead,
n' a multiple of 10,000 that fits the budget (nothing is extrapolated); lowcomm is then also
timed on those n' users, and the ratio uses that pair.

    .bench-ldp-venv/bin/python benchmarks/ldp_peers.py --n 100000 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lowcomm.analytics import grr, hm, hr, olh, oue, ss
from lowcomm.core import numpy_rng
from simulation.measure import TreeMonitor, machine

ROWS = ("grr", "oue", "olh", "hr", "hm", "ss")
LOWCOMM = {"grr": grr, "oue": oue, "olh": olh, "hr": hr, "hm": hm, "ss": ss}
PEERS = {"pure-ldp": ("grr", "oue", "olh", "hr", "hm"),
         "multi-freq-ldpy": ("grr", "oue", "olh", "ss")}


def zipf_values(n: int, k: int, seed: int) -> np.ndarray:
    """n values of [0, k) with Pr[v] proportional to (v + 1)^-1.1 (truncated Zipf, s = 1.1)."""
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    return numpy_rng(seed, purpose="ldp-peers-values").choice(k, size=n, p=weights / weights.sum())


def pure_variance(p: float, q: float, n: int, f: np.ndarray) -> np.ndarray:
    """Wang et al. (USENIX Security 2017), variance of a pure protocol with (p*, q*)."""
    return q * (1 - q) / (n * (p - q) ** 2) + f * (1 - p - q) / (n * (p - q))


def peer_parameters(row: str, epsilon: float, k: int) -> tuple[float, float]:
    """(p*, q*) of the peers' versions of a row (read from their code, docs/benchmarks.md)."""
    e = math.exp(epsilon)
    if row == "grr":
        return e / (e + k - 1), 1 / (e + k - 1)
    if row == "oue":
        return 0.5, 1 / (e + 1)
    if row == "olh":
        g = round(e) + 1
        return e / (e + g - 1), 1 / g
    if row in ("hr", "hm"):  # pure-ldp HR with epsilon <= 1 is one block: the HM law
        if row == "hr" and epsilon > 1:
            raise ValueError("pure-ldp's HR for epsilon > 1 (several blocks) is not wired here")
        return e / (e + 1), 0.5
    omega = int(max(1, np.rint(k / (e + 1))))  # ss, multi-freq-ldpy's rounding
    denominator = omega * e + k - omega
    return omega * e / denominator, (omega * (omega - 1) * e + omega * (k - omega)) / (
        (k - 1) * denominator)


class Stopwatch:
    """Wall seconds and this thread's CPU seconds over the `with` blocks it timed (CPU time is
    what a quiet core would need; wall time is what the shared machine gave)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = (time.perf_counter(), time.thread_time())
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.thread_time() - self._start[1]


def run_lowcomm(row, values, *, epsilon, k, seed):
    oracle = LOWCOMM[row](epsilon, k)
    rng = numpy_rng(seed, purpose=f"ldp-peers-{row}")
    n = values.shape[0]
    encode, server = Stopwatch(), Stopwatch()
    with encode:
        reports = oracle.encode(values, rng)
    with server:
        estimate = oracle.estimate(oracle.support_counts(reports), n)
    f = np.bincount(values, minlength=k) / n
    return encode, server, estimate, float(np.mean(oracle.variance(n, f)))


def _pure_ldp_pair(row, epsilon, k):
    from pure_ldp.frequency_oracles import direct_encoding as de
    from pure_ldp.frequency_oracles import hadamard_mechanism as hmech
    from pure_ldp.frequency_oracles import hadamard_response as hresp
    from pure_ldp.frequency_oracles import local_hashing as lh
    from pure_ldp.frequency_oracles import unary_encoding as ue

    if row == "grr":
        return de.DEClient(epsilon, k), de.DEServer(epsilon, k)
    if row == "oue":
        return ue.UEClient(epsilon, k, use_oue=True), ue.UEServer(epsilon, k, use_oue=True)
    if row == "olh":
        return lh.LHClient(epsilon, k, use_olh=True), lh.LHServer(epsilon, k, use_olh=True)
    if row == "hr":
        server = hresp.HadamardResponseServer(epsilon, k)
        return hresp.HadamardResponseClient(epsilon, k, server.get_hash_funcs()), server
    return hmech.HadamardMechClient(epsilon, k, t=1), hmech.HadamardMechServer(epsilon, k, t=1)


def run_pure_ldp(row, values, *, epsilon, k, seed, chunk):
    """Per-user `privatise` loop (items 1..k, pure-ldp's default index map), `aggregate_all` per
    chunk, `estimate_all` over the domain without normalisation (counts, so divided by n)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    client, server = _pure_ldp_pair(row, epsilon, k)
    encode, aggregate = Stopwatch(), Stopwatch()
    for start in range(0, values.shape[0], chunk):
        items = (values[start : start + chunk] + 1).tolist()
        with encode:
            reports = [client.privatise(x) for x in items]
        with aggregate:
            server.aggregate_all(reports)
    with aggregate:
        counts = np.asarray(server.estimate_all(range(1, k + 1), suppress_warnings=True), float)
    return encode, aggregate, counts / values.shape[0]


def _mfl_functions(row):
    from importlib import import_module

    grr_module, lh_module, ss_module, ue_module = (
        import_module(f"multi_freq_ldpy.pure_frequency_oracles.{name}")
        for name in ("GRR", "LH", "SS", "UE"))

    return {
        "grr": (grr_module, lambda x, k, e: grr_module.GRR_Client(x, k, e),
                lambda r, k, e: grr_module.GRR_Aggregator_MI(r, k, e)),
        "oue": (ue_module, lambda x, k, e: ue_module.UE_Client(x, k, e, True),
                lambda r, k, e: ue_module.UE_Aggregator_MI(r, e, True)),
        "olh": (lh_module, lambda x, k, e: lh_module.LH_Client(x, k, e, True),
                lambda r, k, e: lh_module.LH_Aggregator_MI(r, k, e, True)),
        "ss": (ss_module, lambda x, k, e: ss_module.SS_Client(x, k, e),
               lambda r, k, e: ss_module.SS_Aggregator_MI(r, k, e)),
    }[row]


def _seed_numba(seed: int) -> None:
    import numba

    @numba.njit
    def seed_jit(s):  # numba's generator is separate from numpy's
        np.random.seed(s)

    seed_jit(seed % 2**32)
    np.random.seed(seed % 2**32)


def run_multi_freq_ldpy(row, values, *, epsilon, k, seed, chunk):
    """Per-user `*_Client` loop (numba-compiled before timing), the `*_Aggregator_MI` per chunk
    with the support counts it computes captured at its `MI` call (its output is clipped)."""
    module, client, aggregator = _mfl_functions(row)
    client(0, k, epsilon)  # compile outside the timing
    _seed_numba(seed)
    captured, original = [], module.MI

    def recording_mi(count_report, n, p, q):
        captured.append((np.array(count_report, dtype=np.float64), n, p, q))
        return original(count_report, n, p, q)

    module.MI = recording_mi
    try:
        encode, aggregate = Stopwatch(), Stopwatch()
        for start in range(0, values.shape[0], chunk):
            items = values[start : start + chunk].tolist()
            with encode:
                reports = [client(x, k, epsilon) for x in items]
            with aggregate:
                aggregator(reports, k, epsilon)
    finally:
        module.MI = original
    counts = sum(c for c, *_ in captured)
    n = sum(m for _, m, *_ in captured)
    p, q = captured[0][2], captured[0][3]
    return encode, aggregate, (counts / n - q) / (p - q)


RUNNERS = {"pure-ldp": run_pure_ldp, "multi-freq-ldpy": run_multi_freq_ldpy}


def measure(system, row, values, *, args, seed):
    k, epsilon = args.k, args.epsilon
    n = values.shape[0]
    f = np.bincount(values, minlength=k) / n
    load_before = os.getloadavg()[0]
    with TreeMonitor(os.getpid(), tag="ldp-peers-none", interval_seconds=1.0) as monitor:
        t0 = time.perf_counter()
        if system == "lowcomm":
            encode_s, server_s, estimate, theory = run_lowcomm(row, values, epsilon=epsilon, k=k,
                                                               seed=seed)
        else:
            encode_s, server_s, estimate = RUNNERS[system](row, values, epsilon=epsilon, k=k,
                                                           seed=seed, chunk=args.chunk)
            theory = float(np.mean(pure_variance(*peer_parameters(row, epsilon, k), n, f)))
        wall = time.perf_counter() - t0
    return {"system": system, "row": row, "n": n, "seed": seed,
            "encode_seconds": encode_s.wall, "server_seconds": server_s.wall,
            "total_seconds": encode_s.wall + server_s.wall,
            "encode_cpu_seconds": encode_s.cpu, "server_cpu_seconds": server_s.cpu,
            "total_cpu_seconds": encode_s.cpu + server_s.cpu,
            "mse": float(np.mean((estimate - f) ** 2)), "theory": theory,
            "foreign_cores": monitor.foreign_cpu_seconds / max(wall, 1e-9),
            "loadavg_1min_before": load_before}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--k", type=int, default=1024)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--systems", nargs="+", default=["lowcomm", *PEERS],
                        choices=["lowcomm", *PEERS])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=20_000, help="peer users per chunk")
    parser.add_argument("--run-budget-seconds", type=float, default=1200.0)
    parser.add_argument("--calibrate-n", type=int, default=2000,
                        help="users of one untabled peer run per row that sets the per-user "
                             "time the budget is checked with (0: use the first tabled run)")
    parser.add_argument("--out", type=Path, default=Path("results/ldp_peers.json"))
    args = parser.parse_args(argv)
    sizes = sorted(args.n)
    values = zipf_values(sizes[-1], args.k, args.seed)
    root = Path(__file__).resolve().parents[1]
    env = machine(root)
    env["versions"].update({p: _version(p) for p in ("pure-ldp", "multi-freq-ldpy", "xxhash",
                                                       "numba", "scikit-learn", "statsmodels")})
    record = {"args": {**vars(args), "out": str(args.out)}, "machine": env,
              "command": " ".join(sys.argv), "loadavg_start": os.getloadavg(), "runs": []}
    per_user: dict[tuple[str, str], float] = {}  # seconds per user, from the first run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    def run(system, row, n, m, repeat):
        result = measure(system, row, values[:m], args=args, seed=args.seed + 1 + repeat)
        result.update(repeat=repeat, n_config=n)
        per_user.setdefault((system, row), result["total_seconds"] / m)
        record["runs"].append(result)
        record["loadavg_end"] = os.getloadavg()
        args.out.write_text(json.dumps(record, indent=1))
        print(f"r{repeat} n={n} {row} {system} (timed on {m}): encode "
              f"{result['encode_seconds']:.3f} s, server {result['server_seconds']:.3f} s, "
              f"MSE/theory {result['mse'] / result['theory']:.3f}, foreign cores "
              f"{result['foreign_cores']:.2f}", file=sys.stderr, flush=True)

    for row in args.rows if args.calibrate_n else ():
        for system in (s for s in args.systems if s in PEERS and row in PEERS[s]):
            result = measure(system, row, values[: args.calibrate_n], args=args, seed=args.seed)
            per_user[(system, row)] = result["total_seconds"] / args.calibrate_n
            record.setdefault("calibration", []).append(result)
    for repeat in range(args.repeats):  # interleaved: repeat r of everything before r + 1
        for n in sizes:
            for row in args.rows:
                lowcomm_on = set()
                if "lowcomm" in args.systems:
                    run("lowcomm", row, n, n, repeat)
                    lowcomm_on.add(n)
                for system in (s for s in args.systems if s in PEERS and row in PEERS[s]):
                    rate = per_user.get((system, row))
                    m = n
                    if rate is not None and rate * n > args.run_budget_seconds:
                        m = max(10_000, int(args.run_budget_seconds / rate) // 10_000 * 10_000)
                        m = min(m, n)
                    run(system, row, n, m, repeat)
                    if "lowcomm" in args.systems and m not in lowcomm_on:  # the ratio's pair
                        run("lowcomm", row, n, m, repeat)
                        lowcomm_on.add(m)
    table = markdown(record["runs"])
    args.out.with_suffix(".md").write_text(table)
    print(table)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def markdown(runs: list[dict]) -> str:
    """One line per (n, row, system, timed n): medians over the repeats (wall and this thread's
    CPU seconds), the ratios of a peer's median total to lowcomm's on the same users, and
    MSE/theory pooled over the repeats."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["n_config"], run["row"], run["system"], run["n"]), []).append(run)

    def med(rs, key):
        return statistics.median(r[key] for r in rs)

    lines = ["| n | row | system | timed on | encode s | server s | total s | peer / lowcomm "
             "| total CPU s | peer / lowcomm (CPU) | MSE/theory | runs | other load (cores) |",
             "|" + "---|" * 13]
    order = sorted(groups, key=lambda g: (g[0], ROWS.index(g[1]), g[2] != "lowcomm", g[2], -g[3]))
    for n, row, system, m in order:
        rs, base = groups[(n, row, system, m)], groups.get((n, row, "lowcomm", m))
        ratios = ["", ""]
        if system != "lowcomm" and base:
            ratios = [f"{med(rs, key) / med(base, key):.0f}x"
                      for key in ("total_seconds", "total_cpu_seconds")]
        pooled = sum(r["mse"] for r in rs) / sum(r["theory"] for r in rs)
        users = f"{m:,}" if m == n else f"**{m:,} (subset)**"
        lines.append(
            f"| {n:,} | {row.upper()} | {system} | {users} | {med(rs, 'encode_seconds'):.3f} | "
            f"{med(rs, 'server_seconds'):.3f} | {med(rs, 'total_seconds'):.3f} | {ratios[0]} | "
            f"{med(rs, 'total_cpu_seconds'):.3f} | {ratios[1]} | {pooled:.3f} | {len(rs)} | "
            f"{med(rs, 'foreign_cores'):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
