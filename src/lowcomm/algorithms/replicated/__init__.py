"""Data-centre (replicated-worker) algorithms: one file each, written per worker (SPMD).

See `base.py` for the protocol (`step` posts to collectives, `receive` applies their results,
`delay_steps` declares overlap). `ddp` is the data-parallel baseline; `diloco` and `localsgd`
synchronise every H inner steps; `noloco` averages with one random partner every H steps;
`streaming_diloco` syncs strided fragments on a staggered schedule with overlap and mixing;
`co2` overlaps a one-round-stale outer step (staleness penalty, momentum clipping);
`eager_diloco` overlaps the outer step with the whole next inner phase (delayed or eager);
`spsa` is zeroth-order training that exchanges only one-byte projected gradients (shared
randomness).
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
from lowcomm.algorithms.replicated.co2 import co2
from lowcomm.algorithms.replicated.ddp import ddp
from lowcomm.algorithms.replicated.diloco import diloco, localsgd, outer_nesterov
from lowcomm.algorithms.replicated.eager_diloco import eager_diloco
from lowcomm.algorithms.replicated.fragments import layer_units, strided_fragments
from lowcomm.algorithms.replicated.inner import gradient, inner_step
from lowcomm.algorithms.replicated.noloco import NoLoCoState, noloco
from lowcomm.algorithms.replicated.spsa import SPSAState, perturbation, projected_gradient, spsa
from lowcomm.algorithms.replicated.streaming_diloco import streaming_diloco

__all__ = [
    "AllGather",
    "AllReduce",
    "Broadcast",
    "Exchange",
    "NoLoCoState",
    "Post",
    "Received",
    "ReplicatedAlgorithm",
    "SPSAState",
    "StepContext",
    "StepOutput",
    "co2",
    "ddp",
    "diloco",
    "eager_diloco",
    "gradient",
    "inner_step",
    "layer_units",
    "localsgd",
    "noloco",
    "outer_nesterov",
    "param_hash",
    "perturbation",
    "projected_gradient",
    "require_positive_int",
    "spsa",
    "streaming_diloco",
    "strided_fragments",
]
