"""Shared harness of the data-centre reproductions (benchmarks/dc_*.py): one workload, one run
function, JSON results written after every run, and the summary rows the docs tables use.

The reproduction workload is deliberately smaller than `lowcomm train`'s default so that 3 seeds
of every configuration fit on a 2-core CPU: the character transformer with 2 blocks of width 64
(4 heads) on Python's documentation topics (or TinyShakespeare with --data-dir), windows of 32
characters, 16 windows per worker per step. Every run records: the validation-loss curve of
worker 0's served model, measured bytes (per worker, peak per sync), counted FLOPs, whether the
replicas were identical at each evaluation, and modeled wall-clock and compute utilization
under every bandwidth scenario.

    from dc_harness import Workload, run_one   # scripts in benchmarks/ import it by name
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lowcomm import cost, data, models
from lowcomm.algorithms.replicated import ReplicatedAlgorithm
from lowcomm.runtime import TrainingSettings, WorkerData, train_workers


@dataclass(frozen=True)
class Workload:
    dataset: str = "python_docs"  # or "tiny_shakespeare" (needs data_dir)
    data_dir: str | None = None
    workers: int = 4
    steps: int = 600
    batch_size: int = 16
    seq_len: int = 32
    layers: int = 2
    width: int = 64
    heads: int = 4
    eval_every: int = 50
    eval_windows: int = 256


def corpus_of(w: Workload) -> data.TextCorpus:
    if w.dataset == "python_docs":
        return data.python_docs()
    return data.tiny_shakespeare(w.data_dir)


@dataclass(frozen=True)
class Parts:
    spec: models.ModelSpec
    model: models.ModelFn
    params: torch.Tensor
    worker_data: WorkerData
    flops: cost.FlopCounter


def setup(w: Workload, *, seed: int) -> Parts:
    """The workload's model, initial parameters (from `seed`), worker shards and FLOP counter."""
    corpus = corpus_of(w)
    shards = data.shard_text(corpus.train_ids, w.workers)
    val_x, val_y = data.eval_windows(corpus.val_ids, seq_len=w.seq_len,
                                     max_windows=w.eval_windows)
    worker_data = WorkerData(
        lambda k, g: data.sample_windows(shards[k], batch_size=w.batch_size, seq_len=w.seq_len,
                                         generator=g),
        val_x, val_y, (w.seq_len,))
    spec = models.char_transformer(corpus.vocab_size, seq_len=w.seq_len, layers=w.layers,
                                   width=w.width, heads=w.heads)
    model, params = models.init_params(spec, seed=seed)
    flops = cost.FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    return Parts(spec, model, params, worker_data, flops)


def run_one(w: Workload, make: Callable[[models.ModelFn], ReplicatedAlgorithm], *, seed: int,
            label: str, flops_per_second: float = 1e12,
            devices: dict[str, float] | None = None) -> dict[str, Any]:
    """Train `make(model)` on the workload with `seed`; the result as plain JSON-able values.
    `devices` (name -> FLOP/s) adds `modeled_at[name][scenario]` for more worker throughputs."""
    torch.set_num_threads(1)  # one core per run: runs go side by side in processes
    parts = setup(w, seed=seed)
    spec, model, params, worker_data, flops = (parts.spec, parts.model, parts.params,
                                               parts.worker_data, parts.flops)
    algorithm = make(model)
    started = time.perf_counter()
    result = train_workers(algorithm, worker_data, model, params, flops,
                           TrainingSettings(steps=w.steps, workers=w.workers, seed=seed,
                                            eval_every=w.eval_every))
    device = cost.Accelerator(flops_per_second)
    timelines = {name: cost.timeline(result.ledger, network=net, device=device)
                 for name, net in cost.SCENARIOS.items()}
    traffic = cost.peer_traffic(result.ledger)
    cumulative = [sum(r.bytes_sent for r in result.records[: i + 1])
                  for i in range(len(result.records))]
    modeled_at = {
        name: {s: {"seconds": tl.modeled_seconds, "utilization": tl.utilization}
               for s, tl in ((s, cost.timeline(result.ledger, network=net,
                                               device=cost.Accelerator(rate)))
                             for s, net in cost.SCENARIOS.items())}
        for name, rate in (devices or {}).items()}
    return {
        "modeled_at": modeled_at,
        "label": label, "seed": seed, "algorithm": algorithm.name,
        "hyperparams": algorithm.hyperparams, "overlap": algorithm.overlap,
        "workload": asdict(w), "model": spec.key, "num_params": int(params.numel()),
        "initial_val_loss": result.initial_val_loss,
        "final_val_loss": result.records[-1].val_loss,
        "curve": [{"step": r.step, "val_loss": r.val_loss, "train_loss": r.train_loss,
                   "bytes_sent": sent,
                   "replicas_identical": r.replicas_identical,
                   "replica_spread": r.replica_spread,
                   "modeled_seconds": {n: tl.seconds_at(r.step) for n, tl in timelines.items()}}
                  for r, sent in zip(result.records, cumulative, strict=True)],
        "bytes_total": traffic.total_nbytes,
        "bytes_per_worker": max(traffic.sent_nbytes.values(), default=0),
        "peak_sync_nbytes": traffic.peak_sync_nbytes,
        "collectives": traffic.collectives,
        "hops_per_worker": max(traffic.hops.values(), default=0),
        "flops": result.ledger.totals().flops,
        "modeled": {n: {"seconds": tl.modeled_seconds, "utilization": tl.utilization}
                    for n, tl in timelines.items()},
        "replicas_identical_at_end": result.records[-1].replicas_identical,
        "simulator_seconds": time.perf_counter() - started,
    }


def append_result(path: str | Path, row: dict[str, Any]) -> None:
    """Add one run to a JSON list file (written after every run: nothing lost on failure)."""
    path = Path(path)
    rows = json.loads(path.read_text()) if path.exists() else []
    rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))


def done(path: str | Path) -> set[tuple[str, int]]:
    """(label, seed) of the runs already in a results file, to resume an interrupted sweep."""
    path = Path(path)
    if not path.exists():
        return set()
    return {(r["label"], r["seed"]) for r in json.loads(path.read_text())}


def mean_spread(values: list[float]) -> str:
    """'mean [v1, v2, v3]' with 3 decimals, for the docs tables."""
    mean = sum(values) / len(values)
    return f"{mean:.3f} [{', '.join(f'{v:.3f}' for v in values)}]"


def plot_loss_curves(rows: list[dict[str, Any]], labels, path: str, *, dpi: int = 110) -> None:
    """Seed 0's validation loss of each label against measured MB sent and against modeled
    cross-region seconds, side by side, written to `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label in labels:
        run = next(r for r in rows if r["label"] == label and r["seed"] == 0)
        loss = [c["val_loss"] for c in run["curve"]]
        axes[0].plot([c["bytes_sent"] / 1e6 for c in run["curve"]], loss, label=label)
        axes[1].plot([c["modeled_seconds"]["cross-region"] for c in run["curve"]], loss,
                     label=label)
    axes[0].set(xscale="log", xlabel="MB sent, all workers (measured)",
                ylabel="validation loss (nats/char)", title="loss vs bytes (seed 0)")
    axes[1].set(xscale="log", xlabel="modeled seconds, cross-region (1 Gb/s, 30 ms/hop, "
                "1 TFLOP/s workers)", title="loss vs modeled time (seed 0)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path}")
