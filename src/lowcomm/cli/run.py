"""`lowcomm run`: build a run from its config, simulate it with progress, price and store it."""

from __future__ import annotations

import dataclasses
import platform
import time
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import lowcomm
from lowcomm import cost
from lowcomm.cli.build import CostModels, RunParts, build_cost_models, build_run
from lowcomm.cli.config import RunConfig
from lowcomm.cli.records import Recording, recording
from lowcomm.report import summary_table
from lowcomm.runtime import (
    RoundRecord,
    SimulationResult,
    SimulationSettings,
    auto,
    processes,
    sequential,
    simulate,
    vectorized,
)

EXECUTORS = {"auto": auto, "sequential": sequential, "vectorized": vectorized,
             "processes": processes}


def environment() -> dict[str, Any]:
    return {"lowcomm": lowcomm.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "torch_threads": torch.get_num_threads()}


def summarize(c: RunConfig, parts: RunParts, result: SimulationResult, costs: cost.Costs,
              simulator_seconds: float) -> dict[str, Any]:
    """Everything the final table and the stored record need, as plain JSON-able values."""
    evaluated = [r.test_accuracy for r in result.rounds if r.test_accuracy is not None]
    totals = result.ledger.totals()
    return {
        "dataset": parts.dataset.describe(),
        "model": {"key": parts.spec.key, "num_params": int(parts.params.numel())},
        "algorithm": {"name": parts.algorithm.name, **parts.algorithm.hyperparams,
                      "uplink_codec": parts.algorithm.uplink_codec,
                      "downlink_codec": parts.algorithm.downlink_codec},
        "rounds": sum(r.round >= 1 for r in result.rounds),  # round 0 (FedAMD) not counted
        "execution": result.execution,
        "clients_per_round": c.clients_per_round,
        "initial_test_accuracy": result.initial.accuracy,
        "evaluated_samples": result.initial.num_samples,
        "final_test_accuracy": evaluated[-1] if evaluated else None,
        "final_test_loss": result.rounds[-1].test_loss,
        "best_test_accuracy": max(evaluated) if evaluated else None,
        "measured": {**totals.as_dict(), "simulator_seconds": simulator_seconds},
        "counted": {"flops": totals.flops, "convention": cost.COUNTED_OPS},
        "modeled": costs.as_dict(),
    }


def run_command(c: RunConfig, console: Console) -> int:
    with console.status(f"preparing {c.dataset} / {c.model} / {c.algorithm}"):
        parts = build_run(c)
        models = build_cost_models(c)
    described = parts.dataset.describe()
    console.print(f"[bold]{c.algorithm}[/] on {described['name']}: {described['num_clients']} "
                  f"clients ({c.partition}), {described['num_train']} training samples, "
                  f"model {parts.spec.key} with {parts.params.numel():,} parameters")
    with recording(db=c.db, no_store=c.no_store, name=c.name, config=dataclasses.asdict(c),
                   environment=environment(), console=console) as rec:
        started = time.perf_counter()
        result = _simulate_with_progress(c, parts, rec, console)
        summary = _price_and_summarize(c, parts, result, models, time.perf_counter() - started)
        console.print(summary_table(summary))
        rec.finish(summary, console)
    return 0


def _price_and_summarize(c: RunConfig, parts: RunParts, result: SimulationResult,
                         models: CostModels, seconds: float) -> dict[str, Any]:
    costs = cost.price(result.ledger, network=models.network, device=models.device,
                       money=models.money, carbon=models.carbon)
    return summarize(c, parts, result, costs, seconds)


def _simulate_with_progress(c: RunConfig, parts: RunParts, rec: Recording,
                            console: Console) -> SimulationResult:
    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    settings = SimulationSettings(rounds=c.rounds, clients_per_round=c.clients_per_round,
                                  eval_every=c.eval_every, seed=c.seed,
                                  eval_samples=c.eval_samples)
    columns = (TextColumn("round"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rounds", total=c.rounds, status="")
        last_accuracy = ["-"]

        def on_round(record: RoundRecord) -> None:
            if record.test_accuracy is not None:
                last_accuracy[0] = f"{100 * record.test_accuracy:.2f} %"
            progress.update(task, advance=int(record.round >= 1),  # not an initial round 0
                            status=f"test acc {last_accuracy[0]}, "
                                   f"train loss {record.train_loss:.3f}")
            rec.add_round(dataclasses.asdict(record))

        return simulate(parts.algorithm, parts.dataset, parts.model, parts.params, flops,
                        settings, on_round=on_round, ledger=rec.ledger,
                        executor=EXECUTORS[c.execution]())
