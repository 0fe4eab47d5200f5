"""Data-centre (replicated-worker) algorithms: one file each, written per worker (SPMD).

See `base.py` for the protocol (`step` posts to collectives, `receive` applies their results,
`delay_steps` declares overlap). `ddp` is the data-parallel baseline; `diloco` and `localsgd`
synchronise every H inner steps; `noloco` averages with one random partner every H steps.
"""

from lowcomm.algorithms.replicated.base import (
    AllGather,
    AllReduce,
    Broadcast,
    Exchange,
    Post,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    StepOutput,
    param_hash,
    require_positive_int,
)
from lowcomm.algorithms.replicated.ddp import ddp
from lowcomm.algorithms.replicated.diloco import diloco, localsgd, outer_nesterov
from lowcomm.algorithms.replicated.inner import gradient, inner_step
from lowcomm.algorithms.replicated.noloco import NoLoCoState, noloco

__all__ = [
    "AllGather",
    "AllReduce",
    "Broadcast",
    "Exchange",
    "NoLoCoState",
    "Post",
    "Received",
    "ReplicatedAlgorithm",
    "StepContext",
    "StepOutput",
    "ddp",
    "diloco",
    "gradient",
    "inner_step",
    "localsgd",
    "noloco",
    "outer_nesterov",
    "param_hash",
    "require_positive_int",
]
