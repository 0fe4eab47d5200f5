"""Client execution strategies: how the clients of a cohort run their local work.

An `Executor` runs one round's jobs and returns the clients' outputs in job order. A job is the
message a client received and the key of its task (`TaskKey`: client id, round, sample count,
saved state); the executor builds each task with `make_task(key)` where the client runs, so a
client's data is produced (or loaded) in the process that trains it and never shipped.
Strategies must not change results: the vectorized and multi-process ones are checked against
`sequential` (parameters and ledger) by reference tests.

- `sequential()`: one client after another in this process, the reference.
- `vectorized(memory_budget_bytes=...)`: the algorithm's `client_update_batch` over chunks of
  clients that fit the memory budget (stacked parameters, `vmap` over clients).
- `processes(workers=...)` (in `lowcomm.runtime.processes`): clients in parallel across worker
  processes, for models too large to vectorize.
- `auto()`: the default, chosen from the model's counted training FLOPs per sample (so the
  choice, and hence every result, is the same on every run):
  * below 2e5 (logistic regression and other tiny models), vectorized when the algorithm offers
    a batched update: per-step overhead dominates and one vmap step serves many clients; with
    two or more cores, in worker processes (each vectorizing its share of the cohort);
  * from 1e7 (convolutional networks), processes when there are at least two cores: compute
    dominates and workers add cores;
  * otherwise (e.g. the 2NN MLP) sequential: on CPU a batched matmul over clients' different
    weights is no faster than their separate matmuls, and workers' overhead eats their gain.
  These thresholds come from the side-by-side measurements in docs/benchmarks.md.
  `resolve(algorithm, flops)` says which one runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lowcomm.algorithms import ClientOutput, ClientTask, FederatedAlgorithm
from lowcomm.core import Payload


@dataclass(frozen=True)
class TaskKey:
    """What identifies a client's task in a round; `make_task(key)` builds the `ClientTask`."""

    client_id: int
    round: int
    num_samples: int  # the client's training samples (for load balancing, without its data)
    state: dict[str, torch.Tensor] | None = None  # the client's saved state, if any


Job = tuple[Payload, TaskKey]
MakeTask = Callable[[TaskKey], ClientTask]
RunFn = Callable[[FederatedAlgorithm, Sequence[Job], MakeTask], list[ClientOutput]]

# Bytes per parameter per client the vectorized engine holds at once: the stacked parameters,
# their gradient and its flat copy, and up to two optimizer-state tensors, in float32.
_BYTES_PER_PARAM_PER_CLIENT = 4 * 6


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Executor:
    name: str
    run: RunFn
    resolve: Callable[[FederatedAlgorithm, int], Executor]  # (algorithm, train FLOPs/sample)
    close: Callable[[], None] = _nothing  # release workers or other resources held between rounds


def _fixed(name: str, run: RunFn) -> Executor:
    def resolve(algorithm: FederatedAlgorithm, train_flops_per_sample: int) -> Executor:
        return executor

    executor = Executor(name, run, resolve)
    return executor


def sequential() -> Executor:
    """One client after another in this process: the reference strategy."""
    def run(algorithm: FederatedAlgorithm, jobs: Sequence[Job],
            make_task: MakeTask) -> list[ClientOutput]:
        return [algorithm.client_update(message, make_task(key)) for message, key in jobs]

    return _fixed("sequential", run)


def vectorized(*, memory_budget_bytes: int = 1 << 30) -> Executor:
    """Clients trained together by the algorithm's batched update, in chunks of at most
    `memory_budget_bytes / (24 bytes * d)` clients (activations come on top)."""
    if memory_budget_bytes < 1:
        raise ValueError(f"memory_budget_bytes must be >= 1; got {memory_budget_bytes}")

    def run(algorithm: FederatedAlgorithm, jobs: Sequence[Job],
            make_task: MakeTask) -> list[ClientOutput]:
        if algorithm.client_update_batch is None:
            raise ValueError(f"algorithm {algorithm.name!r} has no batched client update "
                             "(its model cannot be vmapped); use sequential()")
        if not jobs:
            return []
        d = max(1, algorithm.num_params)
        chunk = max(1, memory_budget_bytes // (_BYTES_PER_PARAM_PER_CLIENT * d))
        outputs: list[ClientOutput] = []
        for start in range(0, len(jobs), chunk):
            part = jobs[start : start + chunk]
            outputs.extend(algorithm.client_update_batch([m for m, _ in part],
                                                         [make_task(k) for _, k in part]))
        return outputs

    return _fixed("vectorized", run)


VECTORIZE_BELOW_FLOPS = 200_000  # train FLOPs per sample (see the module docstring)
PROCESSES_FROM_FLOPS = 10_000_000


def auto(*, memory_budget_bytes: int = 1 << 30, cores: int | None = None) -> Executor:
    """Vectorized for tiny models, processes for heavy ones, sequential in between. `cores` is
    how many cores the clients may use (default: this process's CPU affinity); a rank of a
    distributed run, one process per core already, passes 1 so it never forks workers."""
    if cores is not None and cores < 1:
        raise ValueError(f"cores must be >= 1 or None; got {cores}")
    fast, reference = vectorized(memory_budget_bytes=memory_budget_bytes), sequential()
    chosen: dict[tuple[int, int], Executor] = {}

    def resolve(algorithm: FederatedAlgorithm, train_flops_per_sample: int) -> Executor:
        key = (id(algorithm), train_flops_per_sample)
        if key not in chosen:
            from lowcomm.runtime.processes import processes  # it imports this module

            usable = len(os.sched_getaffinity(0)) if cores is None else cores
            tiny = (train_flops_per_sample < VECTORIZE_BELOW_FLOPS
                    and algorithm.client_update_batch is not None)
            if tiny:
                chosen[key] = processes(vectorize=True) if usable >= 2 else fast
            elif train_flops_per_sample >= PROCESSES_FROM_FLOPS and usable >= 2:
                chosen[key] = processes()
            else:
                chosen[key] = reference
        return chosen[key]

    def run(algorithm: FederatedAlgorithm, jobs: Sequence[Job],
            make_task: MakeTask) -> list[ClientOutput]:
        raise ValueError("auto() must be resolved for an algorithm before it runs")

    return Executor("auto", run, resolve)
