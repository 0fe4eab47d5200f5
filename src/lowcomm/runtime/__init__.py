"""Runtimes execute algorithms, move their payloads as real bytes and record every cost."""

from lowcomm.runtime.collectives import (
    PeerTransport,
    pair_exchange,
    ring_allgather,
    ring_allreduce_mean,
    tree_broadcast,
)
from lowcomm.runtime.evaluate import Evaluation, evaluate
from lowcomm.runtime.execution import Executor, auto, sequential, vectorized
from lowcomm.runtime.processes import processes
from lowcomm.runtime.ray_pool import ray_actors  # Ray itself is imported only when called
from lowcomm.runtime.simulator import (
    RoundRecord,
    SimulationResult,
    SimulationSettings,
    sample_cohort,
    simulate,
)
from lowcomm.runtime.state import ClientStateStore
from lowcomm.runtime.transport import StarTransport
from lowcomm.runtime.workers import (
    StepRecord,
    TrainingResult,
    TrainingSettings,
    WorkerData,
    train_workers,
)

__all__ = [
    "ClientStateStore",
    "Evaluation",
    "Executor",
    "PeerTransport",
    "RoundRecord",
    "SimulationResult",
    "SimulationSettings",
    "StarTransport",
    "StepRecord",
    "TrainingResult",
    "TrainingSettings",
    "WorkerData",
    "auto",
    "evaluate",
    "pair_exchange",
    "processes",
    "ray_actors",
    "ring_allgather",
    "ring_allreduce_mean",
    "sample_cohort",
    "sequential",
    "simulate",
    "train_workers",
    "tree_broadcast",
    "vectorized",
]
