"""Star (federated) algorithms over torch.distributed: rank 0 is the server, ranks 1..N-1 host
the clients, and each rank runs its part of the simulator's round (`lowcomm.runtime.simulator`'s
`round_cohort`, `task_key`, `client_flops`, `conclude_round`, `task_maker`: one implementation).

- **Placement.** Client c lives on rank `1 + c % (N - 1)` (`client_rank`); a client rank hosts
  many simulated clients and keeps their persistent state (SCAFFOLD's control variates, error
  feedback residuals) in its own `ClientStateStore`: that state never crosses the wire.
- **Round t.** Every rank computes the cohort with `round_cohort`. The server serializes
  `algorithm.server_message(state)` once and sends it to each cohort client's rank, in cohort
  order, one message per client (tag `star|t|down|c`), recording the simulator's downlink
  `CommEvent`s (server -> client:c, channel "model", the downlink codec) from the lengths that
  really left. Each client rank runs its clients of the cohort through its executor with the
  simulator's tasks (data and random stream `(seed, t, c, "client")`), then sends, per client in
  cohort order, the serialized upload (tag `star|t|up|c`) and a control message with its counted
  FLOPs, sample count and training loss (tag `star|t|ctl|c`; control traffic, not in the ledger,
  like rank.py's summaries). The server receives them per client in cohort order
  (`receive_upload`), records the `ComputeEvent` and the upload `CommEvent` of each client as
  `simulator._round` does, and ends the round with `conclude_round`.
- **Result.** The server's ledger equals the simulator's on the same seed, event for event, and
  its parameters match; every rank's `WireCounts` payload bytes equal the ledger's bytes to and
  from the parties it hosts (`ledger_nbytes_by_rank`). At the end every client rank sends rank 0
  its `WireCounts` (control).

`receive_upload` is the one place where the server takes one client's upload; a deadline or a
screening step that drops an upload slots in there (it may return None: nothing is recorded for
that client and the round goes on without it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lowcomm.algorithms import FederatedAlgorithm
from lowcomm.core import Payload, serialize
from lowcomm.cost.flops import FlopCounter
from lowcomm.cost.ledger import SERVER, CommEvent, ComputeEvent, Ledger, client_id, client_name
from lowcomm.data import FederatedDataset
from lowcomm.models import ModelFn
from lowcomm.runtime.distributed.transport import RankTransport, WireCounts, wire_tag
from lowcomm.runtime.evaluate import evaluate
from lowcomm.runtime.execution import Executor, auto
from lowcomm.runtime.simulator import (
    RoundRecord,
    SimulationResult,
    SimulationSettings,
    client_flops,
    conclude_round,
    eval_set,
    round_cohort,
    task_key,
    task_maker,
)
from lowcomm.runtime.state import ClientStateStore

DOWN_CHANNEL, UP_CHANNEL = "model", "update"  # the simulator's channels (StarTransport calls)


@dataclass(frozen=True)
class StarRankResult:
    """What one rank of a star run ends with. `run` (rank 0 only) is the run as `simulate`
    returns it (its `client_states` is None: each client rank keeps its own clients' state, in
    `client_states`). `wire` is every rank's transport counters on rank 0 and this rank's
    elsewhere. `round_seconds` is this rank's measured wall-clock per round (a measurement of
    this machine, not a cost)."""

    rank: int
    world_size: int
    run: SimulationResult | None
    wire: tuple[WireCounts, ...]
    round_seconds: tuple[float, ...]
    client_states: ClientStateStore | None = None


@dataclass(frozen=True)
class Upload:
    """One client's upload as the server received it: the parsed payload, the length of its
    bytes on the wire, and the client's control message."""

    client: int
    payload: Payload
    nbytes: int  # measured at the server's transport
    flops: int  # counted on the client's rank
    train_loss: float
    num_samples: int


ReceiveUpload = Callable[[RankTransport, int, int], "Upload | None"]  # (transport, client, t)


def client_rank(client: int, world_size: int) -> int:
    """The rank that hosts client `client` in a run of `world_size` ranks (rank 0 serves)."""
    if world_size < 2:
        raise ValueError(f"a star run needs a server rank and at least one client rank "
                         f"(world_size >= 2); got world_size={world_size}")
    return 1 + client % (world_size - 1)


def _tag(t: int, what: str, c: int) -> int:
    return wire_tag(f"star|{t}|{what}|{c}")


def simulate_rank(algorithm: FederatedAlgorithm, dataset: FederatedDataset, model: ModelFn,
                  params: torch.Tensor, flops: FlopCounter, settings: SimulationSettings,
                  transport: RankTransport, *, executor: Executor | None = None,
                  on_round: Callable[[RoundRecord], None] | None = None,
                  ledger: Ledger | None = None,
                  receive: ReceiveUpload | None = None) -> StarRankResult:
    """Run this rank's part of `simulate(algorithm, ...)` (module docstring). `executor`,
    `on_round` and `ledger` are `simulate`'s (the latter two used on rank 0 only); `receive`
    replaces `receive_upload` on the server."""
    me, p = transport.rank, transport.world_size
    client_rank(0, p)  # refuses world_size < 2
    if settings.clients_per_round > dataset.num_clients:
        raise ValueError(f"clients_per_round ({settings.clients_per_round}) exceeds the number "
                         f"of clients ({dataset.num_clients})")
    first = 0 if algorithm.initial_full_round else 1  # round 0: every client, once
    if me == 0:
        ledger = Ledger() if ledger is None else ledger
        if len(ledger):
            raise ValueError(f"ledger must start empty; it holds {len(ledger)} events")
        return _serve(algorithm, dataset, model, params, flops, settings, transport, ledger,
                      on_round, receive or receive_upload, first)
    executor = (executor or auto(cores=1)).resolve(
        algorithm, flops.step((1, *dataset.input_shape)))  # counted train FLOPs per sample
    store = None
    if algorithm.client_state is not None:
        path = None if settings.state_path is None else Path(f"{settings.state_path}.rank{me}")
        store = ClientStateStore(algorithm.client_state, path=path)
    make_task = task_maker(dataset, settings.seed)
    seconds = []
    try:
        for t in range(first, settings.rounds + 1):
            started = time.perf_counter()
            _client_round(algorithm, dataset, flops, settings, transport, executor, store,
                          make_task, t)
            seconds.append(time.perf_counter() - started)
    finally:
        executor.close()
    return StarRankResult(me, p, None, _gather_wire(transport), tuple(seconds), store)


def _serve(algorithm: FederatedAlgorithm, dataset: FederatedDataset, model: ModelFn,
           params: torch.Tensor, flops: FlopCounter, settings: SimulationSettings,
           transport: RankTransport, ledger: Ledger,
           on_round: Callable[[RoundRecord], None] | None, receive: ReceiveUpload,
           first: int) -> StarRankResult:
    """The server rank: every round's downlinks, uploads, server update and evaluation."""
    test_x, test_y = eval_set(dataset, settings)
    state = algorithm.init(params)
    initial = evaluate(model, state.params, test_x, test_y)
    records, seconds = [], []
    for t in range(first, settings.rounds + 1):
        started = time.perf_counter()
        events_before = len(ledger)
        cohort = round_cohort(dataset.num_clients, settings, t)
        broadcast(transport, ledger, algorithm.server_message(state), cohort, t=t,
                  codec=algorithm.downlink_codec)
        uploads, losses = [], []
        for c in cohort:  # cohort order, as the simulator records them
            upload = receive(transport, c, t)
            if upload is None:  # nothing from this client: the round goes on without it
                continue
            ledger.record(ComputeEvent(t, client_name(c), upload.flops, "train"))
            ledger.record(CommEvent(t, client_name(c), SERVER, UP_CHANNEL, upload.nbytes,
                                    algorithm.uplink_codec))
            uploads.append(upload.payload)
            losses.append((upload.train_loss, upload.num_samples))
        state, record = conclude_round(algorithm, model, settings, state, uploads, t, losses,
                                       ledger, events_before, started, test_x, test_y)
        records.append(record)
        seconds.append(time.perf_counter() - started)
        if on_round is not None:
            on_round(record)
    run = SimulationResult(state.params, state, ledger, initial, tuple(records),
                           "distributed", None)
    return StarRankResult(0, transport.world_size, run, _gather_wire(transport), tuple(seconds))


def broadcast(transport: RankTransport, ledger: Ledger, message: Payload, cohort: Sequence[int],
              *, t: int, codec: str) -> None:
    """The server's message to every cohort client's rank, one transfer per client in cohort
    order, each recorded as it left (StarTransport.broadcast's events)."""
    data = serialize(message)
    p = transport.world_size
    for c in cohort:
        _, sent = transport.exchange([(client_rank(c, p), data)], [], tag=_tag(t, "down", c),
                                     what=f"the model of round {t} for client {c}")
        ledger.record(CommEvent(t, SERVER, client_name(c), DOWN_CHANNEL, sent[0], codec))


def receive_upload(transport: RankTransport, c: int, t: int) -> Upload | None:
    """Client c's upload of round t and its control message, from the client's rank."""
    src = client_rank(c, transport.world_size)
    before = transport.counts().payload_received_nbytes
    got, _ = transport.exchange([], [src], tag=_tag(t, "up", c),
                                what=f"the update of client {c} in round {t}")
    nbytes = transport.counts().payload_received_nbytes - before
    control, _ = transport.exchange([], [src], tag=_tag(t, "ctl", c), control=True,
                                    what=f"the control message of client {c} in round {t}")
    info = control[src]
    return Upload(c, got[src], nbytes, int(info["flops"][0]), float(info["train_loss"][0]),
                  int(info["num_samples"][0]))


def _client_round(algorithm: FederatedAlgorithm, dataset: FederatedDataset, flops: FlopCounter,
                  settings: SimulationSettings, transport: RankTransport, executor: Executor,
                  store: ClientStateStore | None, make_task: Callable, t: int) -> None:
    """A client rank's round t: receive its cohort clients' messages, run them, upload."""
    me, p = transport.rank, transport.world_size
    mine = [c for c in round_cohort(dataset.num_clients, settings, t) if client_rank(c, p) == me]
    jobs = []
    for c in mine:
        got, _ = transport.exchange([], [0], tag=_tag(t, "down", c),
                                    what=f"the model of round {t} for client {c}")
        jobs.append((got[0], task_key(dataset, store, c, t)))
    outputs = executor.run(algorithm, jobs, make_task)
    for c, out in zip(mine, outputs, strict=True):
        if store is not None:
            store.put(c, out.state)
        transport.exchange([(0, serialize(out.payload))], [], tag=_tag(t, "up", c),
                           what=f"the update of client {c} in round {t}")
        control = Payload(flops=np.asarray([client_flops(flops, dataset, out.steps)], np.int64),
                          train_loss=np.asarray([out.train_loss], np.float64),
                          num_samples=np.asarray([out.num_samples], np.int64))
        transport.exchange([(0, serialize(control))], [], tag=_tag(t, "ctl", c), control=True,
                           what=f"the control message of client {c} in round {t}")


_WIRE_FIELDS = tuple(WireCounts.__dataclass_fields__)


def _gather_wire(transport: RankTransport) -> tuple[WireCounts, ...]:
    """Every rank's counters at rank 0 (control traffic, after all payload traffic); this
    rank's own elsewhere."""
    counts = transport.counts()
    tag = wire_tag("star|final wire counts")
    if transport.rank != 0:
        mine = Payload(wire=np.asarray([getattr(counts, f) for f in _WIRE_FIELDS], np.int64))
        transport.exchange([(0, serialize(mine))], [], tag=tag, control=True,
                           what="the final wire counts")
        return (counts,)
    others = list(range(1, transport.world_size))
    got, _ = transport.exchange([], others, tag=tag, control=True, what="the final wire counts")
    return (counts, *(WireCounts(**dict(zip(_WIRE_FIELDS, (int(v) for v in got[r]["wire"]),
                                            strict=True))) for r in others))


def party_rank(name: str, world_size: int) -> int:
    """The rank that hosts a ledger party ('server' or 'client:c')."""
    if name == SERVER:
        return 0
    c = client_id(name)
    if c is None:
        raise ValueError(f"not a party of a star run: {name!r}")
    return client_rank(c, world_size)


def ledger_nbytes_by_rank(ledger: Ledger, world_size: int) -> list[tuple[int, int]]:
    """(sent, received) payload bytes per rank according to the ledger: what the transports'
    `WireCounts` must equal."""
    sent, received = [0] * world_size, [0] * world_size
    for e in ledger.comm_events():
        sent[party_rank(e.src, world_size)] += e.nbytes
        received[party_rank(e.dst, world_size)] += e.nbytes
    return list(zip(sent, received, strict=True))


def wire_equals_ledger(result: StarRankResult) -> bool:
    """Rank 0's check: every rank's transport moved exactly the ledger's payload bytes."""
    if result.run is None:
        raise ValueError("only rank 0's result holds the ledger")
    expected = ledger_nbytes_by_rank(result.run.ledger, result.world_size)
    return len(result.wire) == result.world_size and all(
        (w.payload_sent_nbytes, w.payload_received_nbytes) == pair
        for w, pair in zip(result.wire, expected, strict=True))

