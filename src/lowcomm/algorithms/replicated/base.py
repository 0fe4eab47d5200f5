"""The shape every data-centre (replicated-worker) algorithm takes.

p workers each hold a replica, their own data shard and their own optimizer state. An algorithm
is written for *one* worker, SPMD style, as a frozen container of pure functions:

- `init(params, worker, workers) -> state`: the worker's state from the common initial model;
- `step(state, batch, ctx) -> StepOutput`: one inner step of compute on one minibatch, after
  which the worker may *post* contributions to collectives (`AllReduce`, `AllGather`,
  `Exchange`, `Broadcast`);
- `receive(state, received, ctx) -> state`: apply a collective's result, delivered before the
  worker's compute of step `posted_step + 1 + delay_steps`;
- `model(state) -> [d]`: the model this worker would serve (what is evaluated and hashed).

A post's `delay_steps` is the algorithm's declaration of overlap: 0 means the result is needed
before the very next step (blocking), k > 0 means the communication may overlap the next k steps
of compute. The runtime moves every contribution as real serialized bytes, records the ledger
and models the overlap (`lowcomm.cost.timeline`); the algorithm never sees transport, bytes or
time. The same definition can therefore run in the simulator or over real processes.

Elastic membership (workers joining and leaving between outer steps,
`lowcomm.runtime.membership`) needs two more functions, which only algorithms whose replicas
hold identical state after every sync declare: `shared(state) -> Payload`, the part of a
worker's state every live replica holds identically at a sync boundary (DiLoCo: the global
model and the outer optimizer's state), which a live worker sends a joiner; and
`adopt(state, payload) -> state`, a freshly initialised worker's state made to hold it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lowcomm.compress import Codec
from lowcomm.core import Payload


def _check_delay(delay_steps: int) -> None:
    if not isinstance(delay_steps, int) or delay_steps < 0:
        raise ValueError(f"delay_steps must be an integer >= 0; got {delay_steps!r}")


@dataclass(frozen=True)
class AllReduce:
    """Contribute `[n]` `vector` to the mean over `group` (None: all workers), sent as `codec`."""

    channel: str
    vector: torch.Tensor
    codec: Codec
    group: tuple[int, ...] | None = None
    delay_steps: int = 0

    def __post_init__(self) -> None:
        _check_delay(self.delay_steps)


@dataclass(frozen=True)
class AllGather:
    """Contribute `payload`; receive every worker's payload in worker order."""

    channel: str
    payload: Payload
    delay_steps: int = 0

    def __post_init__(self) -> None:
        _check_delay(self.delay_steps)


@dataclass(frozen=True)
class Exchange:
    """Swap `payload` with `peer` (who must post an Exchange on the same channel naming us)."""

    channel: str
    payload: Payload
    peer: int
    delay_steps: int = 0

    def __post_init__(self) -> None:
        _check_delay(self.delay_steps)


@dataclass(frozen=True)
class Broadcast:
    """Receive `root`'s payload; the root posts its payload, every other worker posts None."""

    channel: str
    payload: Payload | None
    root: int
    delay_steps: int = 0

    def __post_init__(self) -> None:
        _check_delay(self.delay_steps)


Post = AllReduce | AllGather | Exchange | Broadcast


@dataclass(frozen=True)
class Received:
    """A collective's result for one worker: the `[n]` mean (all-reduce), the tuple of payloads
    in worker order (all-gather), or the other side's payload (exchange, broadcast)."""

    channel: str
    posted_step: int
    value: torch.Tensor | tuple[Payload, ...] | Payload


@dataclass(frozen=True)
class StepContext:
    """Where a worker is: global inner step `step` (1-based), its id, the number of workers, the
    run's `seed` (for streams every worker must agree on, e.g. shared perturbation seeds) and
    its own `generator` for this step."""

    step: int
    worker: int
    workers: int
    seed: int
    generator: torch.Generator


@dataclass(frozen=True)
class StepOutput:
    state: Any
    loss: float  # the minibatch loss at the parameters the step started from
    posts: tuple[Post, ...] = ()
    steps: dict[int, int] = field(default_factory=dict)  # batch size -> forward+backward passes
    forward_steps: dict[int, int] = field(default_factory=dict)  # batch size -> forward passes
    # Arithmetic the FLOP counter cannot see, counted by the algorithm's own formula and
    # recorded under its own kind (e.g. {"zo_axpy": 2*d*n*k} for regenerated perturbations).
    extra_flops: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicatedAlgorithm:
    name: str
    hyperparams: dict[str, Any]
    init: Callable[[torch.Tensor, int, int], Any]  # (params [d], worker, workers) -> state
    step: Callable[[Any, tuple[torch.Tensor, torch.Tensor], StepContext], StepOutput]
    receive: Callable[[Any, Received, StepContext], Any]
    model: Callable[[Any], torch.Tensor]  # state -> [d] the worker's served model
    num_params: int
    overlap: str  # one line: which communication overlaps which computation
    min_workers: int = 1
    shared: Callable[[Any], Payload] | None = None  # elastic membership (module docstring)
    adopt: Callable[[Any, Payload], Any] | None = None

    @property
    def elastic(self) -> bool:
        """Whether workers may join and leave between syncs (`shared` and `adopt` given)."""
        return self.shared is not None and self.adopt is not None

    def check_workers(self, workers: int) -> None:
        if not isinstance(workers, int) or workers < self.min_workers:
            raise ValueError(f"{self.name} needs workers >= {self.min_workers}; got {workers!r}")


def require_positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def param_hash(params: torch.Tensor) -> str:
    """A SHA-256 of the exact float32 bytes of a `[d]` vector (replica-consistency checks)."""
    data = params.detach().to(torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()
