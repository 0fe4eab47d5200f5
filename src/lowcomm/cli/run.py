"""`lowcomm run`: build a run from its config, simulate it (or run this process's rank of it over
torch.distributed: the server on rank 0, clients on the others) with progress, price and store
it."""

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
from lowcomm.algorithms.replicated import param_hash
from lowcomm.cli.build import CostModels, RunParts, build_cost_models, build_run
from lowcomm.cli.checkpoints import Continuation, run_continuation, star_continuation
from lowcomm.cli.config import ConfigError, RunConfig
from lowcomm.cli.launch import join_run, rank_environment, star_runtime_summary
from lowcomm.cli.records import Recording, recording
from lowcomm.report import summary_table
from lowcomm.runtime import (
    Executor,
    RoundRecord,
    SimulationResult,
    SimulationSettings,
    auto,
    processes,
    sequential,
    simulate,
    vectorized,
)
from lowcomm.runtime.faults import FaultPlan

EXECUTORS = {"auto": auto, "sequential": sequential, "vectorized": vectorized,
             "processes": processes}
FRESH = Continuation()  # no checkpoints written, nothing resumed


def build_executor(c: RunConfig) -> Executor:
    """The configured client execution strategy; Ray, an optional extra, is imported only for
    execution=ray."""
    if c.execution != "ray":
        return EXECUTORS[c.execution]()
    from lowcomm.runtime.ray_pool import check_reachable, ray_actors

    if c.ray_address is not None:
        try:  # a wrong address is a one-line mistake, not minutes of Ray's retries
            check_reachable(c.ray_address)
        except (ConnectionError, ValueError) as err:
            raise ConfigError(str(err)) from None
    return ray_actors(actors=c.ray_actors, address=c.ray_address)


def environment() -> dict[str, Any]:
    return {"lowcomm": lowcomm.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "torch_threads": torch.get_num_threads()}


def summarize(c: RunConfig, parts: RunParts, result: SimulationResult, costs: cost.Costs,
              simulator_seconds: float, rank_result: Any = None) -> dict[str, Any]:
    """Everything the final table and the stored record need, as plain JSON-able values;
    `rank_result` is rank 0's `StarRankResult` of a distributed run."""
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
        "final_params_sha256": param_hash(result.params),  # equal: bit-identical models
        "measured": {**totals.as_dict(),
                     **({"simulator_seconds": simulator_seconds} if rank_result is None else
                        {"wall_seconds": simulator_seconds})},
        **({} if rank_result is None else {"runtime": star_runtime_summary(rank_result, c)}),
        "dropouts": dropouts(result),
        "counted": {"flops": totals.flops, "convention": cost.COUNTED_OPS},
        "modeled": costs.as_dict(),
    }


def dropouts(result: SimulationResult) -> dict[str, Any]:
    """The run's dropouts by reason (the ledger's DropEvents) and its rounds without a server
    update (fewer than min_cohort admitted uploads)."""
    reasons: dict[str, int] = {}
    for event in result.ledger.drop_events():
        reasons[event.reason] = reasons.get(event.reason, 0) + 1
    return {"total": sum(reasons.values()), "by_reason": reasons,
            "rounds_without_update": [r.round for r in result.rounds if not r.updated]}


def fault_plan(c: RunConfig, parts: RunParts) -> FaultPlan:
    """The run's `--fault`s, checked against its clients and rounds before anything runs."""
    plan = FaultPlan.parse(c.fault)  # the specs themselves were checked with the config
    if (c.runtime == "distributed" and c.round_timeout_seconds is None
            and any(f.kind == "stall" for f in plan.faults)):
        raise ConfigError("a stall fault with runtime=distributed needs --round-timeout-seconds "
                          "(without a deadline the server waits for a slow client)")
    try:
        plan.check(num_clients=parts.dataset.num_clients,
                   first_round=int(not parts.algorithm.initial_full_round), last_round=c.rounds)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return plan


def run_command(c: RunConfig, console: Console) -> int:
    rank = rank_environment("run") if c.runtime == "distributed" else None
    if rank is not None and rank.rank != 0:
        console = Console(quiet=True)  # rank 0, the server, speaks for the run
    with console.status(f"preparing {c.dataset} / {c.model} / {c.algorithm}"):
        parts = build_run(c)
        models = build_cost_models(c)
        faults = fault_plan(c, parts)  # a fault naming a client or round the run lacks: now
        cont = (FRESH if rank is not None
                else run_continuation(c, parts, _settings(c), _executor(c, None), faults))
    transport = None if rank is None else join_run(rank, c)
    if transport is not None:  # every rank's part of the checkpoint (the ranks agree on it)
        cont = star_continuation(c, parts, _settings(c), _executor(c, transport), faults,
                                 transport)
    if transport is not None and transport.rank != 0:
        _simulate(c, parts, transport, cont=cont)  # this rank's clients
        return 0
    described = parts.dataset.describe()
    where = ("" if rank is None else f" as {rank.world_size} processes over torch.distributed "
             f"(gloo; server on rank 0, clients on {rank.world_size - 1})")
    console.print(f"[bold]{c.algorithm}[/] on {described['name']}: {described['num_clients']} "
                  f"clients ({c.partition}), {described['num_train']} training samples, "
                  f"model {parts.spec.key} with {parts.params.numel():,} parameters{where}")
    if cont.resume is not None:
        console.print(f"resumed from round {cont.resumed_from} ({cont.resume.source})")
    env = environment() if rank is None else {**environment(), "runtime": "torch.distributed",
                                              "backend": "gloo", "world_size": rank.world_size}
    with recording(db=c.db, no_store=c.no_store, name=c.name, config=dataclasses.asdict(c),
                   environment=env, console=console) as rec:
        started = time.perf_counter()
        result, rank_result = _simulate_with_progress(c, parts, rec, console, transport, cont)
        summary = _price_and_summarize(c, parts, result, models, time.perf_counter() - started,
                                       rank_result)
        if cont.resume is not None:
            summary["resumed_from_round"] = cont.resumed_from
        console.print(summary_table(summary))
        rec.finish(summary, console)
    return 0


def _price_and_summarize(c: RunConfig, parts: RunParts, result: SimulationResult,
                         models: CostModels, seconds: float,
                         rank_result: Any = None) -> dict[str, Any]:
    costs = cost.price(result.ledger, network=models.network, device=models.device,
                       money=models.money, carbon=models.carbon)
    return summarize(c, parts, result, costs, seconds, rank_result)


def _settings(c: RunConfig) -> SimulationSettings:
    return SimulationSettings(rounds=c.rounds, clients_per_round=c.clients_per_round,
                              eval_every=c.eval_every, seed=c.seed, eval_samples=c.eval_samples,
                              min_cohort=c.min_cohort, max_upload_nbytes=c.max_upload_nbytes,
                              round_timeout_seconds=c.round_timeout_seconds)


def _executor(c: RunConfig, transport: Any) -> Executor:
    # a rank is already one process per core: auto never forks workers there
    if transport is not None and c.execution == "auto":
        return auto(cores=1)
    return build_executor(c)


def _simulate(c: RunConfig, parts: RunParts, transport: Any, *, ledger: Any = None,
              on_round: Any = None, cont: Continuation = FRESH
              ) -> tuple[SimulationResult, Any]:
    """The simulator's run, or this rank's part of a distributed run (the server records into
    `ledger` as it goes), checkpointed and resumed as `cont` says."""
    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    args = (parts.algorithm, parts.dataset, parts.model, parts.params, flops, _settings(c))
    executor = _executor(c, transport)
    if transport is None:
        return simulate(*args, on_round=on_round, ledger=ledger, executor=executor,
                        checkpoint=cont.policy, resume=cont.resume,
                        faults=fault_plan(c, parts)), None
    from lowcomm.runtime.distributed import simulate_rank

    rank_result = simulate_rank(*args, transport, executor=executor, on_round=on_round,
                                ledger=ledger, faults=fault_plan(c, parts),
                                checkpoint=cont.policy, resume=cont.resume)
    return rank_result.run, rank_result


def _simulate_with_progress(c: RunConfig, parts: RunParts, rec: Recording, console: Console,
                            transport: Any = None, cont: Continuation = FRESH
                            ) -> tuple[SimulationResult, Any]:
    columns = (TextColumn("round"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    restored = [] if cont.resume is None else list(cont.resume.records)
    for record in restored:  # the stored record holds every round, not only the resumed ones
        rec.add_round(dataclasses.asdict(record))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("rounds", total=c.rounds, status="",
                                 completed=sum(r.round >= 1 for r in restored))
        last_accuracy = ["-"]

        def on_round(record: RoundRecord) -> None:
            if record.test_accuracy is not None:
                last_accuracy[0] = f"{100 * record.test_accuracy:.2f} %"
            progress.update(task, advance=int(record.round >= 1),  # not an initial round 0
                            status=f"test acc {last_accuracy[0]}, "
                                   f"train loss {record.train_loss:.3f}")
            rec.add_round(dataclasses.asdict(record))

        return _simulate(c, parts, transport, ledger=rec.ledger, on_round=on_round, cont=cont)
