"""Costs: the ledger of measured bytes and counted FLOPs, and the declared models that price it.

Only the ledger's events are measurements; seconds, joules, dollars and grams of CO2 derived by
`price` are modeled, and every figure it returns says so.
"""

from lowcomm.cost.flops import COUNTED_OPS, FlopCounter, count_flops
from lowcomm.cost.ledger import (
    SERVER,
    CollectiveEvent,
    CommEvent,
    ComputeEvent,
    DropEvent,
    Ledger,
    Totals,
    client_name,
    worker_name,
)
from lowcomm.cost.models import CarbonModel, DeviceModel, MoneyModel
from lowcomm.cost.network import (
    Links,
    NetworkModel,
    constant_network,
    default_network,
    default_traces_dir,
    lognormal_network,
)
from lowcomm.cost.peer import PeerTraffic, peer_traffic
from lowcomm.cost.pricing import Costs, price
from lowcomm.cost.timeline import (
    SCENARIOS,
    Accelerator,
    ClusterNetwork,
    Timeline,
    collective_seconds,
    scenario,
    timeline,
)
from lowcomm.cost.traces import (
    FLASH_TRACE_FILE,
    MOBILE_TRACE_FILE,
    flash_trace_network,
    mobile_trace_network,
)

__all__ = [
    "COUNTED_OPS",
    "FLASH_TRACE_FILE",
    "MOBILE_TRACE_FILE",
    "SCENARIOS",
    "SERVER",
    "Accelerator",
    "CarbonModel",
    "ClusterNetwork",
    "CollectiveEvent",
    "CommEvent",
    "ComputeEvent",
    "Costs",
    "DeviceModel",
    "DropEvent",
    "FlopCounter",
    "Ledger",
    "Links",
    "MoneyModel",
    "NetworkModel",
    "PeerTraffic",
    "Timeline",
    "Totals",
    "client_name",
    "collective_seconds",
    "constant_network",
    "count_flops",
    "default_network",
    "default_traces_dir",
    "flash_trace_network",
    "lognormal_network",
    "mobile_trace_network",
    "peer_traffic",
    "price",
    "scenario",
    "timeline",
    "worker_name",
]
