"""Federated algorithms, one per file, each written to read like its paper's pseudocode."""

from lowcomm.algorithms.base import (
    ClientOutput,
    ClientTask,
    FederatedAlgorithm,
    ServerState,
    weighted_mean,
)
from lowcomm.algorithms.dgc import dgc
from lowcomm.algorithms.ef21 import ef21
from lowcomm.algorithms.fedamd import fedamd
from lowcomm.algorithms.fedavg import fedavg
from lowcomm.algorithms.fedprox import fedprox
from lowcomm.algorithms.fedsgd import fedsgd
from lowcomm.algorithms.gmf import gmf
from lowcomm.algorithms.local import (
    Drift,
    LocalResult,
    LocalSchedule,
    batch_plan,
    full_gradient,
    local_sgd,
)
from lowcomm.algorithms.optim import Optimizer, adam, adamw, fedadam, sgd
from lowcomm.algorithms.scafcom import scafcom
from lowcomm.algorithms.scaffold import scaffold
from lowcomm.algorithms.scallion import scallion, simplified_scaffold

__all__ = [
    "ClientOutput",
    "ClientTask",
    "Drift",
    "FederatedAlgorithm",
    "LocalResult",
    "LocalSchedule",
    "Optimizer",
    "ServerState",
    "adam",
    "adamw",
    "batch_plan",
    "dgc",
    "ef21",
    "fedadam",
    "fedamd",
    "fedavg",
    "fedprox",
    "fedsgd",
    "full_gradient",
    "gmf",
    "local_sgd",
    "scafcom",
    "scaffold",
    "scallion",
    "sgd",
    "simplified_scaffold",
    "weighted_mean",
]
