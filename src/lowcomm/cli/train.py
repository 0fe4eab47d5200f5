"""`lowcomm train`: build a data-centre training run, simulate it (or run this process's rank of
it over torch.distributed) with progress, model its time under every bandwidth scenario, and
store it."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lowcomm import cost
from lowcomm.algorithms.replicated import param_hash
from lowcomm.cli.checkpoints import Continuation, train_continuation, train_rank_continuation
from lowcomm.cli.config import ConfigError
from lowcomm.cli.launch import join_run, rank_environment, runtime_summary
from lowcomm.cli.records import Recording, recording
from lowcomm.cli.run import environment
from lowcomm.cli.train_build import TrainParts, build_device, build_networks, build_train
from lowcomm.cli.train_config import TrainConfig, membership_of
from lowcomm.cli.train_faults import effective_schedule, kill_hook
from lowcomm.report.training import training_summary_table
from lowcomm.runtime import StepRecord, TrainingResult, TrainingSettings, train_workers


def summarize(c: TrainConfig, parts: TrainParts, result: TrainingResult,
              simulator_seconds: float, rank_result: Any = None) -> dict[str, Any]:
    """Everything the final table and the stored record need, as plain JSON-able values;
    `rank_result` is rank 0's `RankResult` of a distributed run."""
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
        **({} if c.membership is None and not c.fault else {
            "membership": c.membership, "live_workers_at_end": list(result.workers),
            "membership_events": [list(e) for e in membership_of(
                dataclasses.replace(c, membership=effective_schedule(c))).events]}),
        "steps": c.steps,
        "initial_val_loss": result.initial_val_loss,
        "final_val_loss": last.val_loss,
        "best_val_loss": min(r.val_loss for r in result.records),
        "replicas_identical": last.replicas_identical,
        "final_model_sha256": param_hash(result.models[0]),  # the first live worker's
        "replica_spread": last.replica_spread,
        "measured": {"peer": cost.peer_traffic(result.ledger).as_dict(),
                     **({"simulator_seconds": simulator_seconds} if rank_result is None else
                        {"wall_seconds": simulator_seconds})},
        **({} if rank_result is None else {"runtime": runtime_summary(rank_result, c)}),
        "counted": {"flops": result.ledger.totals().flops, "by_kind": flops_by_kind,
                    "convention": cost.COUNTED_OPS},
        "modeled": {"headline": c.network, "scenarios": scenarios},
    }


def train_command(c: TrainConfig, console: Console) -> int:
    rank = rank_environment("train") if c.runtime == "distributed" else None
    processes = membership_of(c).total_ids  # one process per worker id
    if rank is not None and processes != rank.world_size:
        raise ConfigError(f"WORLD_SIZE ({rank.world_size}) must equal the number of workers "
                          f"({processes}{' ids the membership uses' if c.membership else ''}): "
                          "one worker per process")
    if rank is not None and rank.rank != 0:
        console = Console(quiet=True)  # rank 0 speaks for the run
    with console.status(f"preparing {c.dataset} / char_transformer / {c.algorithm}"):
        parts = build_train(c)
        cont = (FRESH if rank is not None
                else train_continuation(c, parts, _settings(c), membership_of(c)))
    transport = None if rank is None else join_run(rank, c)
    if transport is not None:  # every rank's part of the checkpoint (the ranks agree on it)
        cont = train_rank_continuation(c, parts, _settings(c), membership_of(c), transport)
    if transport is not None and transport.rank != 0:
        _run(c, parts, transport, cont=cont)
        return 0
    where = "" if rank is None else f" as {rank.world_size} processes over torch.distributed (gloo)"
    console.print(f"[bold]{c.algorithm}[/] on {parts.corpus.name}: {c.workers} workers{where}, "
                  f"{c.steps} steps of {c.batch_size}x{c.seq_len} characters each, model "
                  f"{parts.spec.key} with {parts.params.numel():,} parameters; overlap: "
                  f"{parts.algorithm.overlap}")
    if cont.resume is not None:
        console.print(f"resumed from step {cont.resumed_from} ({cont.resume.source})")
    config = {"command": "train", **dataclasses.asdict(c)}
    env = environment() if rank is None else {**environment(), "runtime": "torch.distributed",
                                              "backend": "gloo", "world_size": rank.world_size}
    with recording(db=c.db, no_store=c.no_store, name=c.name, config=config,
                   environment=env, console=console, what="steps") as rec:
        started = time.perf_counter()
        result, rank_result = _train_with_progress(c, parts, rec, console, transport, cont)
        summary = summarize(c, parts, result, time.perf_counter() - started, rank_result)
        if cont.resume is not None:
            summary["resumed_from_step"] = cont.resumed_from
        console.print(training_summary_table(summary))
        rec.finish(summary, console)
    return 0


FRESH = Continuation()  # no checkpoints written, nothing resumed


def _settings(c: TrainConfig) -> TrainingSettings:
    return TrainingSettings(steps=c.steps, workers=c.workers, seed=c.seed,
                            eval_every=c.eval_every)


def _run(c: TrainConfig, parts: TrainParts, transport: Any, *, ledger: Any = None,
         on_record: Any = None, on_step: Any = None, cont: Continuation = FRESH
         ) -> tuple[TrainingResult, Any]:
    """The simulator's run of every worker, or this rank's part of a distributed run (whose
    merged ledger rank 0 adds to `ledger` at the end), checkpointed and resumed as `cont`
    says."""
    flops = cost.FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
    args = (parts.algorithm, parts.worker_data, parts.model, parts.params, flops, _settings(c))
    if transport is None:  # a killed worker is a leave at the boundary before its death
        membership = membership_of(dataclasses.replace(c, membership=effective_schedule(c)))
        return train_workers(*args, on_record=on_record, on_step=on_step, ledger=ledger,
                             membership=membership, checkpoint=cont.policy,
                             resume=cont.resume), None
    from lowcomm.runtime.distributed import train_rank

    kill = kill_hook(c, transport.rank)
    rank_result = train_rank(*args, transport, on_record=on_record, on_step=kill or on_step,
                             membership=membership_of(c),
                             unannounced_leaves=c.unannounced_leaves or bool(c.fault),
                             checkpoint=cont.policy, resume=cont.resume)
    if rank_result.run is not None and ledger is not None:
        ledger.extend(rank_result.run.ledger)
    return rank_result.run, rank_result


def _train_with_progress(c: TrainConfig, parts: TrainParts, rec: Recording,
                         console: Console, transport: Any, cont: Continuation = FRESH
                         ) -> tuple[TrainingResult, Any]:
    columns = (TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))

    def store(record: StepRecord) -> None:
        rec.add_round({"round": record.step, **dataclasses.asdict(record)})

    for record in [] if cont.resume is None else cont.resume.records:
        store(record)  # the stored record holds every step's record, not only the resumed ones
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("steps", total=c.steps, status="",
                                 completed=cont.resumed_from or 0)

        def on_record(record: StepRecord) -> None:
            progress.update(task, status=f"val loss {record.val_loss:.3f}, train loss "
                                   f"{record.train_loss:.3f}")
            store(record)

        def on_step(step: int) -> None:
            progress.update(task, completed=step)

        return _run(c, parts, transport, ledger=rec.ledger, on_record=on_record,
                    on_step=on_step, cont=cont)
