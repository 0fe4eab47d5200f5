"""Multi-process client execution: a cohort spread over worker processes, one per core.

For cohorts of models too large to vectorize (or that cannot be vmapped), clients run in
parallel in `workers` forked processes, each with one intra-op thread. What moves:

- the round's broadcast message is serialized once into an anonymous shared mapping that every
  worker reads (no per-client or per-round pickling of the model);
- each job carries only the client's task key (id, round, sample count, saved state) through a
  queue; the worker builds the task itself with `make_task`, so a client's data is generated or
  loaded in the worker that trains it (in parallel, never pickled), and each worker returns the
  client's payload as bytes.

Workers are forked from the simulating process the first time an algorithm runs with a given
`make_task`, so they inherit both (closures need no pickling); a different algorithm or dataset
restarts them.
Results equal `sequential`'s up to floating-point summation order (a reference test checks
parameters and ledger).
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from lowcomm.algorithms import ClientOutput, FederatedAlgorithm
from lowcomm.core import Payload, deserialize, serialize
from lowcomm.runtime.execution import Executor, Job, MakeTask, TaskKey


def train_group(algorithm: FederatedAlgorithm, make_task: MakeTask, message: Payload,
                keys: Sequence[TaskKey], *, batched: bool) -> list[ClientOutput]:
    """The clients of `keys` trained where this runs (their tasks built here by `make_task`):
    together through the algorithm's batched update when `batched` and there are several,
    else one after another. Shared by the worker processes and the Ray actors."""
    tasks = [make_task(key) for key in keys]
    if batched and len(tasks) > 1:
        return algorithm.client_update_batch([message] * len(tasks), tasks)
    return [algorithm.client_update(message, task) for task in tasks]


# A client's output as it travels back from a worker: its payload as serialized bytes.
Wire = tuple[bytes, dict[int, int], float, int, dict[str, torch.Tensor] | None]


def to_wire(output: ClientOutput) -> Wire:
    return (serialize(output.payload), output.steps, output.train_loss, output.num_samples,
            output.state)


def from_wire(wire: Wire) -> ClientOutput:
    data, steps, loss, samples, state = wire
    return ClientOutput(deserialize(data), steps, loss, samples, state)


def broadcast_message(jobs: Sequence[Job], executor: str) -> Payload:
    """The one message every client of a broadcast round received (the transport hands them
    one shared object), or a ValueError naming `executor`."""
    if len({id(message) for message, _ in jobs}) > 1:
        raise ValueError(f"{executor} runs broadcast rounds: every client of a round must "
                         "receive the same message")
    return jobs[0][0]


def _worker(algorithm: FederatedAlgorithm, make_task: MakeTask, buffer: mmap.mmap, jobs: Any,
            results: Any) -> None:
    """Runs jobs of one or more clients: (indices, message size, task keys). A job of several
    clients runs through the algorithm's batched update (vectorized within the worker)."""
    torch.set_num_threads(1)  # one process per core: no oversubscription
    while (job := jobs.get()) is not None:
        indices, nbytes, keys = job
        try:
            outs = train_group(algorithm, make_task, deserialize(buffer[:nbytes]), keys,
                               batched=True)
            results.put([(i, to_wire(o), None) for i, o in zip(indices, outs, strict=True)])
        except Exception:  # reported to the parent, which raises it
            results.put([(i, None, traceback.format_exc()) for i in indices])


def balanced_chunks(sizes: Sequence[int], parts: int) -> list[list[int]]:
    """Indices split into `parts` groups of nearly equal total size: largest first, each to the
    least loaded group (LPT scheduling; deterministic, ties to the lower group)."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        target = loads.index(min(loads))
        groups[target].append(index)
        loads[target] += sizes[index]
    return [sorted(g) for g in groups if g]


class _Pool:
    """Workers forked after an anonymous shared mapping is made, so they all see it (no named
    segments, nothing for a resource tracker to clean up behind our back)."""

    def __init__(self, algorithm: FederatedAlgorithm, make_task: MakeTask, workers: int,
                 capacity: int) -> None:
        context = mp.get_context("fork")
        self.algorithm, self.make_task = algorithm, make_task
        self.capacity = capacity
        self.buffer = mmap.mmap(-1, capacity)  # MAP_SHARED | MAP_ANONYMOUS
        self.jobs, self.results = context.Queue(), context.Queue()
        self.processes = [context.Process(target=_worker, args=(algorithm, make_task,
                                                                 self.buffer, self.jobs,
                                                                 self.results),
                                          daemon=True)
                          for _ in range(workers)]
        for process in self.processes:
            process.start()

    def close(self) -> None:
        for _ in self.processes:
            self.jobs.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self.buffer.close()


def processes(*, workers: int | None = None, vectorize: bool = False) -> Executor:
    """Clients in parallel across `workers` processes (default: one per available core).

    By default each client is one job, handed to whichever worker is free. With `vectorize`,
    the cohort is split into one group per worker of balanced total data (LPT), and each worker
    trains its group with the algorithm's batched update (for tiny models, where one vmap step
    serves many clients)."""
    count = workers if workers is not None else len(os.sched_getaffinity(0))
    if count < 1:
        raise ValueError(f"workers must be >= 1; got {count}")
    pools: list[_Pool] = []

    def close() -> None:
        while pools:
            pools.pop().close()

    def run(algorithm: FederatedAlgorithm, jobs: Sequence[Job],
            make_task: MakeTask) -> list[ClientOutput]:
        if not jobs:
            return []
        data = serialize(broadcast_message(jobs, "processes()"))
        if pools and (pools[0].algorithm is not algorithm or pools[0].make_task is not make_task
                      or pools[0].capacity < len(data)):
            close()
        if not pools:
            pools.append(_Pool(algorithm, make_task, count, 2 * len(data)))
        pool = pools[0]
        pool.buffer[: len(data)] = data  # the previous round's readers have all finished
        keys = [key for _, key in jobs]
        if vectorize and algorithm.client_update_batch is not None:
            groups = balanced_chunks([k.num_samples for k in keys], count)
        else:
            groups = [[i] for i in range(len(keys))]
        for group in groups:
            pool.jobs.put((group, len(data), [keys[i] for i in group]))
        outputs: list[ClientOutput | None] = [None] * len(jobs)
        for _ in groups:
            for index, wire, error in pool.results.get():
                if error is not None:
                    close()
                    raise RuntimeError(f"client {keys[index].client_id} failed in a worker "
                                       f"process:\n{error}")
                outputs[index] = from_wire(wire)
        return outputs  # type: ignore[return-value]

    name = "processes+vectorized" if vectorize else "processes"
    executor = Executor(name, run, lambda algorithm, flops: executor, close)
    return executor
