"""The in-process simulator: runs a star-topology algorithm over a federated dataset.

Per round t: sample a cohort without replacement (seeded by `(seed, t, "cohort")`), broadcast the
server's message, run each client's update (through a swappable execution strategy), upload the
results, update the server, and evaluate every `eval_every` rounds. Every transfer is serialized
and recorded by the transport; every client's counted FLOPs are recorded here. The same seed gives
identical parameters and an identical ledger.

An algorithm with `initial_full_round` (FedAMD) first runs round 0 with every client, in id order,
before the `rounds` training rounds; it is recorded, priced and reported like any other round, so
its cost is never hidden.

With a `CheckpointPolicy`, a checkpoint is written after every k-th round and the last; with
`resume` (a loaded `Checkpoint`), the run continues after the checkpoint's round and ends with
the same parameters (bit for bit), ledger events and records (but their measured
`simulator_seconds`) as the uninterrupted run. The checkpoint must come from a run with the same
`checkpoint_options` (settings, algorithm and its hyperparameters, dataset, initial parameters,
execution strategy, which may differ in float summation order).

Faults (`lowcomm.runtime.faults`, `lowcomm.runtime.guard`): a client that sends nothing or whose
upload the guard rejects is a dropout, recorded in the ledger as a `DropEvent` and logged; the
round completes with the others, and with fewer than `min_cohort` admitted uploads the server
makes no update. The simulator has no clock, so a stalled client is simply one whose upload does
not arrive (`round_timeout_seconds` is for the real runtimes). A run without faults is unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from lowcomm.algorithms import ClientTask, FederatedAlgorithm
from lowcomm.algorithms.replicated import param_hash
from lowcomm.algorithms.screen import UploadRejectedError
from lowcomm.core import numpy_rng, torch_generator
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import ComputeEvent, Ledger, client_name
from lowcomm.data import FederatedDataset
from lowcomm.models import ModelFn
from lowcomm.runtime.checkpoint import (
    Checkpoint,
    CheckpointPolicy,
    check_options,
    restore,
    round_checkpoint,
    save_round,
)
from lowcomm.runtime.evaluate import Evaluation, evaluate
from lowcomm.runtime.execution import Executor, TaskKey, auto
from lowcomm.runtime.faults import FaultPlan
from lowcomm.runtime.guard import admit, drop, log
from lowcomm.runtime.state import ClientStateStore
from lowcomm.runtime.transport import StarTransport, WireTap


@dataclass(frozen=True)
class SimulationSettings:
    rounds: int
    clients_per_round: int
    eval_every: int = 1
    seed: int = 0
    eval_samples: int | None = None  # evaluate on a fixed seeded subset of the global test set
    state_path: str | None = None  # file for per-client state rows (default: in memory)
    min_cohort: int = 1  # fewer admitted uploads than this: the round makes no server update
    max_upload_nbytes: int | None = None  # larger uploads are rejected as oversized
    round_timeout_seconds: float | None = None  # real runtimes: how long the server waits

    def __post_init__(self) -> None:
        for name in ("rounds", "clients_per_round", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1 or None; got {self.eval_samples}")
        if not 1 <= self.min_cohort <= self.clients_per_round:
            raise ValueError(f"min_cohort must be in [1, clients_per_round="
                             f"{self.clients_per_round}]; got {self.min_cohort}")
        if self.max_upload_nbytes is not None and self.max_upload_nbytes < 1:
            raise ValueError(f"max_upload_nbytes must be >= 1 or None; got "
                             f"{self.max_upload_nbytes}")
        if self.round_timeout_seconds is not None and not self.round_timeout_seconds > 0:
            raise ValueError(f"round_timeout_seconds must be > 0 or None; got "
                             f"{self.round_timeout_seconds}")


@dataclass(frozen=True)
class RoundRecord:
    round: int
    clients: int
    train_loss: float  # sample-weighted mean of the clients' mean local minibatch losses
    bytes_up: int  # measured: serialized payload bytes, summed over the cohort
    bytes_down: int
    flops: int  # counted (see lowcomm.cost.flops for what the counter counts)
    simulator_seconds: float  # measured wall-clock of this process: simulator speed, not modeled
    test_accuracy: float | None = None
    test_loss: float | None = None
    dropped: int = 0  # cohort members that contributed nothing (the round's DropEvents)
    updated: bool = True  # False: fewer than min_cohort admitted uploads, the model is unchanged


@dataclass(frozen=True)
class SimulationResult:
    params: torch.Tensor  # [d] final global model
    state: Any  # final server state
    ledger: Ledger
    initial: Evaluation  # the initial model on the global test set
    rounds: tuple[RoundRecord, ...]
    execution: str  # the client execution strategy that ran, e.g. "vectorized"
    client_states: ClientStateStore | None = None  # per-client state, for stateful algorithms


def sample_cohort(num_clients: int, clients_per_round: int, *, seed: int,
                  round: int) -> np.ndarray:
    """`clients_per_round` distinct client ids, uniformly without replacement, sorted."""
    if not 1 <= clients_per_round <= num_clients:
        raise ValueError(f"clients_per_round must be in [1, {num_clients}] (the number of "
                         f"clients); got {clients_per_round}")
    rng = numpy_rng(seed, round=round, purpose="cohort")
    return np.sort(rng.choice(num_clients, size=clients_per_round, replace=False))


def simulate(algorithm: FederatedAlgorithm, dataset: FederatedDataset, model: ModelFn,
             params: torch.Tensor, flops: FlopCounter, settings: SimulationSettings, *,
             executor: Executor | None = None,
             on_round: Callable[[RoundRecord], None] | None = None,
             tap: WireTap | None = None, ledger: Ledger | None = None,
             until: Callable[[RoundRecord], bool] | None = None,
             checkpoint: CheckpointPolicy | None = None,
             resume: Checkpoint | None = None,
             faults: FaultPlan | None = None) -> SimulationResult:
    """Run `settings.rounds` rounds of `algorithm` from `params`; see the module docstring.

    Pass an empty `ledger` to keep the events recorded so far if the run is interrupted. With
    `until`, the run stops after the first round whose record satisfies it (e.g. a target
    accuracy), so `rounds` is then an upper bound. `checkpoint` writes checkpoints; `resume`
    continues from one (its rounds are not passed to `on_round` again). `faults` injects the
    plan's kills, stalls and corruptions (`lowcomm.runtime.faults`).
    """
    if settings.clients_per_round > dataset.num_clients:
        raise ValueError(f"clients_per_round ({settings.clients_per_round}) exceeds the number "
                         f"of clients ({dataset.num_clients})")
    executor = resolve_executor(algorithm, dataset, flops, executor)
    ledger = Ledger() if ledger is None else ledger
    if len(ledger):
        raise ValueError(f"ledger must start empty; it holds {len(ledger)} events")
    faults = faults or FaultPlan()
    faults.check(num_clients=dataset.num_clients, first_round=int(not algorithm.initial_full_round),
                 last_round=settings.rounds)
    transport = StarTransport(ledger, tap=tap,
                              outgoing=faults.outgoing if faults.faults else None)
    store = (None if algorithm.client_state is None
             else ClientStateStore(algorithm.client_state, path=settings.state_path))
    state = algorithm.init(params)
    run = _Run(algorithm, dataset, model, flops, settings, executor, transport, ledger, store,
               *eval_set(dataset, settings), task_maker(dataset, settings.seed), faults)
    options = checkpoint_options(algorithm, dataset, params, settings, executor.name,
                                 checkpoint, faults=faults)
    if resume is None:
        initial = evaluate(model, state.params, run.test_x, run.test_y)
        records: list[RoundRecord] = []
        first = 0 if algorithm.initial_full_round else 1  # round 0: every client, once
    else:
        check_options(resume, options)
        restore(resume, ledger=ledger, store=store)
        state, initial, records, first = (resume.state, resume.initial, list(resume.records),
                                          resume.next_round)
        if until is not None and records and until(records[-1]):
            first = settings.rounds + 1  # the checkpointed run had already stopped
    try:
        for t in range(first, settings.rounds + 1):
            state, record = _round(run, state, t)
            records.append(record)
            stop = until is not None and until(record)
            if checkpoint is not None:  # before the callback: a failing callback loses no round
                save_round(checkpoint, t, partial(
                    round_checkpoint, t + 1, state, store=store, ledger=ledger, records=records,
                    initial=initial, options=options, seed=settings.seed),
                    last=stop or t == settings.rounds)
            if on_round is not None:
                on_round(record)
            if stop:
                break
    finally:
        executor.close()
    return SimulationResult(state.params, state, ledger, initial, tuple(records), executor.name,
                            store)


def resolve_executor(algorithm: FederatedAlgorithm, dataset: FederatedDataset,
                     flops: FlopCounter, executor: Executor | None) -> Executor:
    """The execution strategy that runs (`auto()` by default), chosen from the counted train
    FLOPs per sample."""
    return (executor or auto()).resolve(algorithm, flops.step((1, *dataset.input_shape)))


def checkpoint_options(algorithm: FederatedAlgorithm, dataset: FederatedDataset,
                       params: torch.Tensor, settings: SimulationSettings, execution: str,
                       policy: CheckpointPolicy | None = None, *,
                       faults: FaultPlan | None = None) -> dict[str, Any]:
    """What determines a simulation's result, for the checkpoint check: the settings (but the
    state file's location), the algorithm, its codecs and hyperparameters, the dataset's
    summary, a SHA-256 of the initial parameters, the execution strategy, the injected faults
    and the policy's own `options` (e.g. the command-line config)."""
    settings_options = {k: v for k, v in dataclasses.asdict(settings).items()
                        if k != "state_path"}
    return {**(dict(policy.options) if policy is not None else {}),
            "settings": settings_options, "algorithm": algorithm.name,
            "hyperparams": algorithm.hyperparams, "uplink_codec": algorithm.uplink_codec,
            "downlink_codec": algorithm.downlink_codec, "dataset": dataset.describe(),
            "initial_params_sha256": param_hash(params), "execution": execution,
            "faults": [str(f) for f in (faults or FaultPlan()).faults]}


@dataclass(frozen=True)
class _Run:
    """What every round of one simulation shares."""

    algorithm: FederatedAlgorithm
    dataset: FederatedDataset
    model: ModelFn
    flops: FlopCounter
    settings: SimulationSettings
    executor: Executor
    transport: StarTransport
    ledger: Ledger
    store: ClientStateStore | None
    test_x: torch.Tensor
    test_y: torch.Tensor
    make_task: Callable[[TaskKey], ClientTask]
    faults: FaultPlan


def _round(run: _Run, state: Any, t: int) -> tuple[Any, RoundRecord]:
    """Round t: cohort (every client in round 0), broadcast, client work, uploads, server
    update, evaluation; faults and rejected uploads drop clients (module docstring)."""
    started = time.perf_counter()
    events_before = len(run.ledger)
    cohort = round_cohort(run.dataset.num_clients, run.settings, t)
    run.faults.warn_idle(cohort, t)
    message = run.algorithm.server_message(state)
    reached = [c for c in cohort if not run.faults.dead(c, t)]
    if len(reached) == len(cohort):
        messages = run.transport.broadcast(message, cohort, round=t, channel="model",
                                           codec=run.algorithm.downlink_codec)
    else:  # in cohort order, as a real server finds the dead while it sends
        messages = []
        for c in cohort:
            if run.faults.dead(c, t):
                drop(run.ledger, c, t, "lost", f"it died in round {run.faults.killed_at(c)}")
            else:
                messages += run.transport.broadcast(message, [c], round=t, channel="model",
                                                    codec=run.algorithm.downlink_codec)
        messages = messages[:1] * len(messages)  # one parse of the same bytes, as broadcast's
    working = [(m, c) for m, c in zip(messages, reached, strict=True)
               if run.faults.killed_at(c) != t]
    outputs = dict(zip([c for _, c in working], run.executor.run(
        run.algorithm, [(m, task_key(run.dataset, run.store, c, t)) for m, c in working],
        run.make_task), strict=True))
    uploads, losses = [], []
    for c in reached:
        if c not in outputs:  # killed after it received the model: the server sees nothing
            drop(run.ledger, c, t, "timeout", "no upload: killed (fault injection)")
            continue
        out = outputs[c]
        run.ledger.record(ComputeEvent(t, client_name(c),
                                       client_flops(run.flops, run.dataset, out.steps), "train"))
        if run.store is not None:
            run.store.put(c, out.state)  # the client finished: it keeps what it computed
        upload = _receive(run, out.payload, c, t)
        if upload is None:
            continue
        uploads.append(upload)
        losses.append((out.train_loss, out.num_samples))
    return conclude_round(run.algorithm, run.model, run.settings, state, uploads, t, losses,
                          run.ledger, events_before, started, run.test_x, run.test_y)


def _receive(run: _Run, payload: Any, c: int, t: int) -> Any:
    """Client c's upload as the server parsed and admitted it, or None (a dropout)."""
    fault = run.faults.at(c, t)
    if fault is not None and fault.kind == "stall":
        drop(run.ledger, c, t, "timeout", "no upload by the deadline (fault injection: stall)")
        return None
    try:
        upload = run.transport.upload(payload, c, round=t, channel="update",
                                      codec=run.algorithm.uplink_codec)
    except UploadRejectedError as err:
        drop(run.ledger, c, t, err.reason, err.detail)
        return None
    ok = admit(run.algorithm, upload, run.ledger, client=c, round=t,
               max_upload_nbytes=run.settings.max_upload_nbytes)
    return upload if ok else None


# The pieces of one round that every runtime shares (the simulator here, the torch.distributed
# star runtime in lowcomm.runtime.distributed.star): one implementation of the round.

def round_cohort(num_clients: int, settings: SimulationSettings, t: int) -> list[int]:
    """Round t's cohort: every client in round 0, else `sample_cohort`'s seeded draw."""
    if t == 0:
        return list(range(num_clients))
    return [int(c) for c in sample_cohort(num_clients, settings.clients_per_round,
                                          seed=settings.seed, round=t)]


def task_key(dataset: FederatedDataset, store: ClientStateStore | None, c: int,
             t: int) -> TaskKey:
    return TaskKey(c, t, int(dataset.num_train[c]), None if store is None else store.get(c))


def client_flops(flops: FlopCounter, dataset: FederatedDataset, steps: dict[int, int]) -> int:
    """Counted training FLOPs of a client's `steps` ({minibatch size: number of steps})."""
    return sum(n * flops.step((size, *dataset.input_shape)) for size, n in steps.items())


def conclude_round(algorithm: FederatedAlgorithm, model: ModelFn, settings: SimulationSettings,
                   state: Any, uploads: list, t: int, losses: list[tuple[float, int]],
                   ledger: Ledger, events_before: int, started: float, test_x: torch.Tensor,
                   test_y: torch.Tensor) -> tuple[Any, RoundRecord]:
    """The server update from the admitted `uploads` (cohort order; none if fewer than
    `min_cohort`), the round's record from the ledger since `events_before` (its dropouts
    included) and the admitted clients' `(train_loss, num_samples)`, and the evaluation every
    `eval_every` rounds and at the last round."""
    updated = len(uploads) >= settings.min_cohort
    if updated:
        state = algorithm.server_update(state, uploads)
    else:
        log.warning("round %d: %d admitted uploads, fewer than min_cohort=%d: no server update",
                    t, len(uploads), settings.min_cohort)
    totals = ledger.totals(start=events_before)
    samples = sum(n for _, n in losses)
    train_loss = sum(loss * n for loss, n in losses) / samples if samples else float("nan")
    record = RoundRecord(t, len(losses), train_loss, totals.bytes_up, totals.bytes_down,
                         totals.flops, time.perf_counter() - started,
                         dropped=len(ledger.drop_events(start=events_before)), updated=updated)
    if t % settings.eval_every == 0 or t == settings.rounds:
        result = evaluate(model, state.params, test_x, test_y)
        record = RoundRecord(**{**record.__dict__, "test_accuracy": result.accuracy,
                                "test_loss": result.loss})
    return state, record


def eval_set(dataset: FederatedDataset,
             settings: SimulationSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The global test set, or the fixed subset of `eval_samples` of it drawn from
    `(seed, "eval-subset")` (the same samples every round)."""
    n = len(dataset.test_y)
    if settings.eval_samples is None or settings.eval_samples >= n:
        return dataset.test_x, dataset.test_y
    rng = numpy_rng(settings.seed, purpose="eval-subset")
    keep = torch.from_numpy(np.sort(rng.choice(n, size=settings.eval_samples, replace=False)))
    return dataset.test_x[keep], dataset.test_y[keep]


def task_maker(dataset: FederatedDataset, seed: int) -> Callable[[TaskKey], ClientTask]:
    """`make_task(key)`: the client's data from the dataset (generated or loaded on demand, in
    whichever process calls it) and its random stream `(seed, round, client, "client")`."""
    def make_task(key: TaskKey) -> ClientTask:
        data = dataset.client(key.client_id)
        return ClientTask(key.client_id, key.round, data.x_train, data.y_train,
                          torch_generator(seed, round=key.round, client=key.client_id,
                                          purpose="client"), key.state)

    return make_task
