"""Ray client execution: a cohort's clients hosted by Ray actors, on one machine or a cluster.

The sibling of `processes()` for when one machine is not enough. `ray_actors(actors=N)` starts N
actors (one CPU each, spread over the cluster's nodes), each hosting a pool of clients; client c
is pinned to actor `c % N`, so a client always trains in the same actor. Per round:

- the broadcast message is serialized once and put once into Ray's object store as those bytes;
  every actor reads the same object and parses it;
- each actor receives only its clients' task keys (id, round, sample count, saved state) and
  builds their tasks itself with `make_task`, so a client's samples are made in the actor that
  trains it and no sample crosses the cluster during the rounds;
- each actor returns its clients' payloads as serialized bytes, which the simulator's transport
  records in the ledger exactly as for any other strategy.

The algorithm and `make_task` travel to each actor once, when the actors start (pickled by Ray:
see docs/security.md); for a dataset split from a pooled one that includes the pooled arrays.
Results equal `sequential`'s (a reference test checks parameters and ledger on a local Ray
instance).

Ray is an optional extra (`pip install lowcomm[ray]`): this is the only module of the library
that imports it, and only when an executor is built.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Sequence
from typing import Any

import torch

from lowcomm.algorithms import ClientOutput, FederatedAlgorithm
from lowcomm.core import deserialize, serialize
from lowcomm.runtime.execution import Executor, Job, MakeTask, TaskKey
from lowcomm.runtime.processes import broadcast_message, from_wire, to_wire, train_group


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("ray_actors() needs Ray, an optional extra: "
                          "pip install 'lowcomm[ray]'") from None
    return ray


class _ClientHost:
    """A Ray actor hosting a pool of clients: it trains the clients it is handed with the
    algorithm and `make_task` it was started with."""

    def __init__(self, algorithm: FederatedAlgorithm, make_task: MakeTask) -> None:
        torch.set_num_threads(1)  # one actor per CPU: no oversubscription
        self.algorithm, self.make_task = algorithm, make_task

    def ready(self) -> bool:
        return True

    def train(self, message: bytes, keys: Sequence[TaskKey],
              batched: bool) -> tuple[list[Any], tuple[list[int], str] | None]:
        """The clients' outputs on the wire (payloads as bytes), or, from the first failure on,
        the failed clients' ids and the traceback."""
        parsed = deserialize(message)
        groups = [list(keys)] if batched else [[key] for key in keys]
        wires: list[Any] = []
        for group in groups:
            try:
                outputs = train_group(self.algorithm, self.make_task, parsed, group,
                                      batched=batched)
            except Exception:  # reported to the driver, which raises it
                return wires, ([key.client_id for key in group], traceback.format_exc())
            wires += [to_wire(o) for o in outputs]
        return wires, None


def pin_clients(keys: Sequence[TaskKey], actors: int) -> list[list[int]]:
    """Job indices per actor: client c goes to actor `c % actors`, in job order."""
    groups: list[list[int]] = [[] for _ in range(actors)]
    for index, key in enumerate(keys):
        groups[key.client_id % actors].append(index)
    return groups


def check_reachable(address: str, *, timeout_seconds: float = 10.0) -> None:
    """Refuse, within `timeout_seconds`, a Ray head address "HOST:PORT" where nothing listens
    (`ray.init` would retry for minutes); "auto" and "ray://" addresses are left to Ray."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ray address must be HOST:PORT (e.g. 10.0.0.1:6379) or auto; "
                         f"got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_seconds).close()
    except OSError as err:
        raise ConnectionError(f"cannot join the Ray cluster at {address!r}: nothing answers "
                              f"there ({err}). Is `ray start --head` running?") from None


def _join(ray: Any, address: str) -> None:
    check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError) as err:  # what ray.init raises for both
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConnectionError(
            f"cannot join the Ray cluster at {address!r}: {first}. Is `ray start --head` "
            "running there? If the cluster uses token authentication, export "
            "RAY_AUTH_MODE=token here too, with its token in ~/.ray/auth_token, RAY_AUTH_TOKEN "
            "or RAY_AUTH_TOKEN_PATH (docs/security.md)") from err


class _Session:
    """Ray as this executor uses it: the connection (started here or found), and the actors for
    one (algorithm, make_task)."""

    def __init__(self, ray: Any, *, address: str | None, local_cpus: int,
                 start_timeout_seconds: float) -> None:
        self.ray, self.start_timeout_seconds = ray, start_timeout_seconds
        self.started = False
        if not ray.is_initialized():
            if address is None:  # a local instance of our own, bounded to `local_cpus` CPUs
                ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False)
            else:
                _join(ray, address)
            self.started = True
        self.hosts: list[Any] = []
        self.owner: tuple[FederatedAlgorithm, MakeTask] | None = None

    def ensure_hosts(self, algorithm: FederatedAlgorithm, make_task: MakeTask,
                     actors: int) -> list[Any]:
        if self.owner is not None and (self.owner[0] is algorithm and
                                       self.owner[1] is make_task):
            return self.hosts
        self.release_hosts()
        cpus = self.ray.cluster_resources().get("CPU", 0)
        if cpus < actors:
            raise ValueError(f"actors ({actors}) exceeds the Ray cluster's CPUs ({cpus:g}); "
                             "each actor takes one CPU")
        remote = self.ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_ClientHost)
        # put once: every actor reads the same stored copy of the algorithm and make_task
        algorithm_ref, make_task_ref = self.ray.put(algorithm), self.ray.put(make_task)
        self.hosts = [remote.remote(algorithm_ref, make_task_ref) for _ in range(actors)]
        self.owner = (algorithm, make_task)
        started, _ = self.ray.wait([h.ready.remote() for h in self.hosts], num_returns=actors,
                                   timeout=self.start_timeout_seconds)
        if len(started) < actors:  # rather than wait for CPUs that other jobs hold, forever
            self.release_hosts()
            raise TimeoutError(f"only {len(started)} of {actors} Ray actors started within "
                               f"{self.start_timeout_seconds:g} s: are the cluster's CPUs held "
                               "by other jobs? (`ray status` shows them)")
        self.ray.get(started)  # an actor that failed to start raises here
        return self.hosts

    def release_hosts(self) -> None:
        for host in self.hosts:
            self.ray.kill(host)
        self.hosts, self.owner = [], None

    def close(self) -> None:
        self.release_hosts()
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False


def ray_actors(actors: int = 2, address: str | None = None, *,
               local_cpus: int | None = None, vectorize: bool = False,
               start_timeout_seconds: float = 300.0) -> Executor:
    """Clients hosted by `actors` Ray actors (one CPU each); client c always runs in actor
    `c % actors`.

    If this process is already connected to Ray (`ray.init` was called), that connection is
    used. Otherwise `address=None` starts a local Ray instance with `local_cpus` CPUs (default:
    `actors`) and no dashboard, and shuts it down on `close()`; an `address` ("HOST:PORT" of a
    head started with `ray start --head`, or "auto") joins that cluster and disconnects on
    `close()`, leaving the cluster running. With `vectorize`, each actor trains its clients
    together through the algorithm's batched update. Actors not all started within
    `start_timeout_seconds` (the cluster's CPUs held by other jobs) raise `TimeoutError`."""
    if actors < 1:
        raise ValueError(f"actors must be >= 1; got {actors}")
    if local_cpus is not None and local_cpus < actors:
        raise ValueError(f"local_cpus ({local_cpus}) must be >= actors ({actors}): each actor "
                         "takes one CPU")
    if not start_timeout_seconds > 0:
        raise ValueError(f"start_timeout_seconds must be > 0; got {start_timeout_seconds}")
    ray = _import_ray()
    sessions: list[_Session] = []

    def close() -> None:
        while sessions:
            sessions.pop().close()

    def run(algorithm: FederatedAlgorithm, jobs: Sequence[Job],
            make_task: MakeTask) -> list[ClientOutput]:
        if not jobs:
            return []
        message = broadcast_message(jobs, "ray_actors()")
        if not sessions:
            sessions.append(_Session(ray, address=address, local_cpus=local_cpus or actors,
                                     start_timeout_seconds=start_timeout_seconds))
        hosts = sessions[0].ensure_hosts(algorithm, make_task, actors)
        message_ref = ray.put(serialize(message))  # the bytes, once for every actor
        keys = [key for _, key in jobs]
        batched = vectorize and algorithm.client_update_batch is not None
        groups = pin_clients(keys, actors)
        pending = [(group, hosts[a].train.remote(message_ref, [keys[i] for i in group], batched))
                   for a, group in enumerate(groups) if group]
        outputs: list[ClientOutput | None] = [None] * len(jobs)
        for group, ref in pending:
            wires, error = ray.get(ref)
            if error is not None:
                close()
                ids, trace = error
                raise RuntimeError(f"client(s) {', '.join(map(str, ids))} failed in a Ray "
                                   f"actor:\n{trace}")
            for index, wire in zip(group, wires, strict=True):
                outputs[index] = from_wire(wire)
        return outputs  # type: ignore[return-value]

    name = "ray+vectorized" if vectorize else "ray"
    executor = Executor(name, run, lambda algorithm, flops: executor, close)
    return executor
