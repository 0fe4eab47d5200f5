"""The torch.distributed runtime (gloo): replicated algorithms with one worker per process
(`train_rank`), star algorithms with a server rank and client ranks (`simulate_rank`), the
simulator's round and collective programs, payloads as real bytes on real links, and a ledger
that equals the simulator's (docs/distributed.md).

Not imported by `lowcomm.runtime`: importing it imports `torch.distributed`.
"""

from lowcomm.runtime.distributed.door import TokenRefusedError, check_token, join
from lowcomm.runtime.distributed.launch import Endpoint, RankFailedError, free_port, spawn_local
from lowcomm.runtime.distributed.merge import RankLog, merge
from lowcomm.runtime.distributed.rank import RankResult, train_rank
from lowcomm.runtime.distributed.star import StarRankResult, client_rank, simulate_rank
from lowcomm.runtime.distributed.transport import (
    PayloadRefusedError,
    PeerClosedError,
    PeerLostError,
    RankTransport,
    ScheduleMismatchError,
    WireCounts,
)

__all__ = [
    "Endpoint",
    "PayloadRefusedError",
    "PeerClosedError",
    "PeerLostError",
    "RankFailedError",
    "RankLog",
    "RankResult",
    "RankTransport",
    "ScheduleMismatchError",
    "StarRankResult",
    "TokenRefusedError",
    "WireCounts",
    "check_token",
    "client_rank",
    "free_port",
    "join",
    "merge",
    "simulate_rank",
    "spawn_local",
    "train_rank",
]
