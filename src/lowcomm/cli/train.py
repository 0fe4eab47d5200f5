"""`lowcomm train`: build a data-centre training run, simulate it with progress, model its time
under every bandwidth scenario, and store it."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lowcomm import cost
from lowcomm.cli.records import Recording, recording
from lowcomm.cli.run import environment
from lowcomm.cli.train_build import TrainParts, build_device, build_networks, build_train
from lowcomm.cli.train_config import TrainConfig
from lowcomm.report.training import training_summary_table
from lowcomm.runtime import StepRecord, TrainingResult, TrainingSettings, train_workers


def summarize(c: TrainConfig, parts: TrainParts, result: TrainingResult,
              simulator_seconds: float) -> dict[str, Any]:
    """Everything the final table and the stored record need, as plain JSON-able values."""
    device = build_device(c)
    scenarios = {name: cost.timeline(result.ledger, network=net, device=device).describe()
                 for name, net in build_networks(c).items()}
    flops_by_kind: dict[str, int] = {}
    for e in result.ledger.compute_events():
        flops_by_kind[e.kind] = flops_by_kind.get(e.kind, 0) + e.flops
    last = result.records[-1]
    return {
        "kind": "training",
        "dataset": {"name": parts.corpus.name, "vocab_size": parts.corpus.vocab_size,
                    "train_chars": int(parts.corpus.train_ids.numel()),
                    "val_chars": int(parts.corpus.val_ids.numel()),
                    "eval_windows": int(parts.worker_data.val_y.shape[0])},
        "model": {"key": parts.spec.key, "num_params": int(parts.params.numel())},
        "algorithm": {"name": parts.algorithm.name, "overlap": parts.algorithm.overlap,
                      **parts.algorithm.hyperparams},
        "workers": c.workers,
        "steps": c.steps,
        "initial_val_loss": result.initial_val_loss,
        "final_val_loss": last.val_loss,
        "best_val_loss": min(r.val_loss for r in result.records),
        "replicas_identical": last.replicas_identical,
        "replica_spread": last.replica_spread,
        "measured": {"peer": cost.peer_traffic(result.ledger).as_dict(),
                     "simulator_seconds": simulator_seconds},
        "counted": {"flops": result.ledger.totals().flops, "by_kind": flops_by_kind,
                    "convention": cost.COUNTED_OPS},
        "modeled": {"headline": c.network, "scenarios": scenarios},
    }


def train_command(c: TrainConfig, console: Console) -> int:
    with console.status(f"preparing {c.dataset} / char_transformer / {c.algorithm}"):
        parts = build_train(c)
    console.print(f"[bold]{c.algorithm}[/] on {parts.corpus.name}: {c.workers} workers, "
                  f"{c.steps} steps of {c.batch_size}x{c.seq_len} characters each, model "
                  f"{parts.spec.key} with {parts.params.numel():,} parameters; overlap: "
                  f"{parts.algorithm.overlap}")
    config = {"command": "train", **dataclasses.asdict(c)}
    with recording(db=c.db, no_store=c.no_store, name=c.name, config=config,
                   environment=environment(), console=console, what="steps") as rec:
        started = time.perf_counter()
        result = _train_with_progress(c, parts, rec, console)
        summary = summarize(c, parts, result, time.perf_counter() - started)
        console.print(training_summary_table(summary))
        rec.finish(summary, console)
    return 0


def _train_with_progress(c: TrainConfig, parts: TrainParts, rec: Recording,
                         console: Console) -> TrainingResult:
    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    settings = TrainingSettings(steps=c.steps, workers=c.workers, seed=c.seed,
                                eval_every=c.eval_every)
    columns = (TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("steps", total=c.steps, status="")

        def on_record(record: StepRecord) -> None:
            progress.update(task, status=f"val loss {record.val_loss:.3f}, train loss "
                                   f"{record.train_loss:.3f}")
            rec.add_round({"round": record.step, **dataclasses.asdict(record)})

        def on_step(step: int) -> None:
            progress.update(task, completed=step)

        return train_workers(parts.algorithm, parts.worker_data, parts.model, parts.params,
                             flops, settings, on_record=on_record, on_step=on_step,
                             ledger=rec.ledger)
