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

`receive_upload` is the one place where the server takes one client's upload (a replacement
may return None: nothing is recorded for that client and the round goes on without it).

- **Faults** (`lowcomm.runtime.guard`, `deadline.py`, docs/distributed.md "Faults"). Bytes that
  do not parse (`PayloadRefusedError`) and uploads the guard rejects are dropped per client, the
  round goes on; with `round_timeout_seconds` an upload not claimed sent by the deadline is
  dropped (`timeout`); a client rank that is gone is dropped (`lost`) from the send or receive
  that finds it, and is not contacted again. `faults` injects kills (the client rank's process
  dies by SIGKILL, with every client it hosts), stalls and corruptions on the client ranks.
- **Checkpoints** (`lowcomm.runtime.distributed.checkpoint`): each rank writes its part at the
  due rounds (rank 0 the run, a client rank its clients' states) and every rank resumes its part.
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
from lowcomm.runtime.checkpoint import Checkpoint, CheckpointPolicy, check_options, restore
from lowcomm.runtime.distributed import checkpoint as rank_checkpoint
from lowcomm.runtime.distributed import deadline
from lowcomm.runtime.distributed.transport import (
    PayloadRefusedError,
    PeerLostError,
    RankTransport,
    WireCounts,
    wire_tag,
)
from lowcomm.runtime.evaluate import evaluate
from lowcomm.runtime.execution import Executor, auto
from lowcomm.runtime.faults import FaultPlan
from lowcomm.runtime.guard import admit, drop
from lowcomm.runtime.simulator import (
    RoundRecord,
    SimulationResult,
    SimulationSettings,
    client_flops,
    conclude_round,
    eval_set,
    resolve_executor,
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
    this machine, not a cost). `ledger_start`: the events restored from a checkpoint, which
    this process's transports never moved (the wire counters equal the ledger after them)."""

    rank: int
    world_size: int
    run: SimulationResult | None
    wire: tuple[WireCounts, ...]
    round_seconds: tuple[float, ...]
    client_states: ClientStateStore | None = None
    ledger_start: int = 0


@dataclass(frozen=True)
class Upload:
    """One client's upload as the server received it: the parsed payload, the length of its
    bytes on the wire, and the client's control message."""

    client: int
    payload: Payload | None  # None: the bytes were refused (`refusal` says why)
    nbytes: int  # measured at the server's transport
    flops: int  # counted on the client's rank
    train_loss: float
    num_samples: int
    refusal: str | None = None


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
                  receive: ReceiveUpload | None = None,
                  faults: FaultPlan | None = None,
                  checkpoint: CheckpointPolicy | None = None,
                  resume: Checkpoint | None = None) -> StarRankResult:
    """Run this rank's part of `simulate(algorithm, ...)` (module docstring). `executor`,
    `on_round` and `ledger` are `simulate`'s (the latter two used on rank 0 only); `receive`
    replaces `receive_upload` on the server; `faults` injects faults on the client ranks.
    `checkpoint` makes every rank write its part at the due rounds, and `resume` is this rank's
    part to continue from (`lowcomm.runtime.distributed.checkpoint`: `resume_rank`)."""
    me, p = transport.rank, transport.world_size
    client_rank(0, p)  # refuses world_size < 2
    if settings.clients_per_round > dataset.num_clients:
        raise ValueError(f"clients_per_round ({settings.clients_per_round}) exceeds the number "
                         f"of clients ({dataset.num_clients})")
    first = 0 if algorithm.initial_full_round else 1  # round 0: every client, once
    faults = faults or FaultPlan()
    faults.check(num_clients=dataset.num_clients, first_round=first, last_round=settings.rounds)
    if settings.round_timeout_seconds is None and any(f.kind == "stall" for f in faults.faults):
        raise ValueError("a stall fault needs round_timeout_seconds: without a deadline the "
                         "server waits for a slow client")
    policy, options = rank_checkpoint.rank_policy(checkpoint, me), None
    if policy is not None or resume is not None:
        options = rank_checkpoint.star_options(algorithm, dataset, params, flops, settings,
                                               executor, checkpoint, faults=faults, world_size=p)
        if resume is not None:
            check_options(resume, options)
            first = resume.next_round
    run_id = transport.sequence("star")  # keeps this run's upload claims apart from others'
    if me == 0:
        ledger = Ledger() if ledger is None else ledger
        if len(ledger):
            raise ValueError(f"ledger must start empty; it holds {len(ledger)} events")
        return _serve(algorithm, dataset, model, params, flops, settings, transport, ledger,
                      on_round, receive or receive_upload, first, run_id, (policy, resume,
                                                                           options))
    executor = resolve_executor(algorithm, dataset, flops, executor or auto(cores=1))
    store = None
    if algorithm.client_state is not None:
        path = None if settings.state_path is None else Path(f"{settings.state_path}.rank{me}")
        store = ClientStateStore(algorithm.client_state, path=path)
    if resume is not None:
        restore(resume, ledger=Ledger(), store=store)
    make_task = task_maker(dataset, settings.seed)
    seconds = []
    try:
        for t in range(first, settings.rounds + 1):
            started = time.perf_counter()
            _client_round(algorithm, dataset, flops, settings, transport, executor, store,
                          make_task, t, faults, run_id)
            if policy is not None:
                rank_checkpoint.commit_client(transport, policy, t, settings, store, options)
            seconds.append(time.perf_counter() - started)
    finally:
        executor.close()
    return StarRankResult(me, p, None, _gather_wire(transport), tuple(seconds), store)


def _serve(algorithm: FederatedAlgorithm, dataset: FederatedDataset, model: ModelFn,
           params: torch.Tensor, flops: FlopCounter, settings: SimulationSettings,
           transport: RankTransport, ledger: Ledger,
           on_round: Callable[[RoundRecord], None] | None, receive: ReceiveUpload,
           first: int, run_id: int, continuation: tuple) -> StarRankResult:
    """The server rank: every round's downlinks, uploads, server update and evaluation;
    `continuation` is (this rank's policy, checkpoint to resume from, their options)."""
    policy, resume, options = continuation
    test_x, test_y = eval_set(dataset, settings)
    if resume is None:
        state = algorithm.init(params)
        initial, records = evaluate(model, state.params, test_x, test_y), []
    else:
        restore(resume, ledger=ledger, store=None)
        state, initial, records = resume.state, resume.initial, list(resume.records)
    seconds = []
    gone: set[int] = set()  # client ranks found dead
    p = transport.world_size
    for t in range(first, settings.rounds + 1):
        started = time.perf_counter()
        events_before = len(ledger)
        cohort = round_cohort(dataset.num_clients, settings, t)
        reached = broadcast(transport, ledger, algorithm.server_message(state), cohort, t=t,
                            codec=algorithm.downlink_codec, gone=gone)
        late = (set() if settings.round_timeout_seconds is None else deadline.late_uploads(
            transport, run_id, t, reached, timeout_seconds=settings.round_timeout_seconds))
        uploads, losses = [], []
        for c in reached:  # cohort order, as the simulator records them
            if c in late:
                drop(ledger, c, t, "timeout", f"no upload by the deadline of "
                     f"{settings.round_timeout_seconds:g} s")
                continue
            try:
                upload = receive(transport, c, t)
            except PeerLostError as err:
                gone.add(client_rank(c, p))
                drop(ledger, c, t, "lost", str(err))
                continue
            if upload is None:  # nothing from this client: the round goes on without it
                continue
            ledger.record(ComputeEvent(t, client_name(c), upload.flops, "train"))
            ledger.record(CommEvent(t, client_name(c), SERVER, UP_CHANNEL, upload.nbytes,
                                    algorithm.uplink_codec))
            if upload.refusal is not None:
                drop(ledger, c, t, "refused", upload.refusal)
            elif admit(algorithm, upload.payload, ledger, client=c, round=t,
                       max_upload_nbytes=settings.max_upload_nbytes):
                uploads.append(upload.payload)
                losses.append((upload.train_loss, upload.num_samples))
        state, record = conclude_round(algorithm, model, settings, state, uploads, t, losses,
                                       ledger, events_before, started, test_x, test_y)
        records.append(record)
        if policy is not None:  # before the callback, as the simulator
            rank_checkpoint.commit_server(transport, policy, t, settings, state, ledger,
                                          records, initial, options)
        seconds.append(time.perf_counter() - started)
        if on_round is not None:
            on_round(record)
    run = SimulationResult(state.params, state, ledger, initial, tuple(records),
                           "distributed", None)
    return StarRankResult(0, transport.world_size, run, _gather_wire(transport, gone),
                          tuple(seconds), ledger_start=0 if resume is None else len(resume.events))


def broadcast(transport: RankTransport, ledger: Ledger, message: Payload, cohort: Sequence[int],
              *, t: int, codec: str, gone: set[int] | None = None) -> list[int]:
    """The server's message to every cohort client's rank, one transfer per client in cohort
    order, each recorded as it left (StarTransport.broadcast's events). A client whose rank is
    in `gone`, or is found gone by this send (added to `gone`), is dropped (`lost`). Returns
    the clients reached."""
    data = serialize(message)
    p, gone = transport.world_size, set() if gone is None else gone
    reached = []
    for c in cohort:
        r = client_rank(c, p)
        if r in gone:
            drop(ledger, c, t, "lost", f"its rank {r} is gone")
            continue
        try:
            _, sent = transport.exchange([(r, data)], [], tag=_tag(t, "down", c),
                                         what=f"the model of round {t} for client {c}")
        except PeerLostError as err:
            gone.add(r)
            drop(ledger, c, t, "lost", str(err))
            continue
        ledger.record(CommEvent(t, SERVER, client_name(c), DOWN_CHANNEL, sent[0], codec))
        reached.append(c)
    return reached


def receive_upload(transport: RankTransport, c: int, t: int) -> Upload | None:
    """Client c's upload of round t and its control message, from the client's rank."""
    src = client_rank(c, transport.world_size)
    before = transport.counts().payload_received_nbytes
    payload, refusal = None, None
    try:
        got, _ = transport.exchange([], [src], tag=_tag(t, "up", c),
                                    what=f"the update of client {c} in round {t}")
        payload = got[src]
    except PayloadRefusedError as err:  # logged by the transport; the frame was read whole
        refusal = str(err)
    nbytes = transport.counts().payload_received_nbytes - before
    control, _ = transport.exchange([], [src], tag=_tag(t, "ctl", c), control=True,
                                    what=f"the control message of client {c} in round {t}")
    info = control[src]
    return Upload(c, payload, nbytes, int(info["flops"][0]), float(info["train_loss"][0]),
                  int(info["num_samples"][0]), refusal)


def _client_round(algorithm: FederatedAlgorithm, dataset: FederatedDataset, flops: FlopCounter,
                  settings: SimulationSettings, transport: RankTransport, executor: Executor,
                  store: ClientStateStore | None, make_task: Callable, t: int,
                  faults: FaultPlan, run_id: int) -> None:
    """A client rank's round t: receive its cohort clients' messages, run them, upload (with
    a deadline: claim first; stalled uploads last, held until declared late)."""
    me, p = transport.rank, transport.world_size
    mine = [c for c in round_cohort(dataset.num_clients, settings, t) if client_rank(c, p) == me]
    jobs = []
    for c in mine:
        got, _ = transport.exchange([], [0], tag=_tag(t, "down", c),
                                    what=f"the model of round {t} for client {c}")
        jobs.append((got[0], task_key(dataset, store, c, t)))
    if any(faults.killed_at(c) == t for c in range(me - 1, dataset.num_clients, p - 1)):
        deadline.die()  # a client this rank hosts is killed this round: the process dies
    outputs = executor.run(algorithm, jobs, make_task)
    stalled = {c for c in mine if (f := faults.at(c, t)) is not None and f.kind == "stall"}
    if settings.round_timeout_seconds is not None:  # claim every upload before sending any
        claimed = {c for c in mine if c not in stalled and deadline.may_send(transport, run_id,
                                                                               t, c)}
    else:
        claimed = set(mine)
    order = sorted(range(len(mine)), key=lambda i: mine[i] in stalled)  # stalled ones last
    for i in order:
        c, out = mine[i], outputs[i]
        if store is not None:
            store.put(c, out.state)  # the client finished: it keeps what it computed
        if c in stalled:
            deadline.hold_until_late(transport, run_id, t, c)
        if c not in claimed:  # the server gave up on this upload: it is never sent
            continue
        transport.exchange([(0, faults.outgoing(c, t, serialize(out.payload)))], [],
                           tag=_tag(t, "up", c), what=f"the update of client {c} in round {t}")
        control = Payload(flops=np.asarray([client_flops(flops, dataset, out.steps)], np.int64),
                          train_loss=np.asarray([out.train_loss], np.float64),
                          num_samples=np.asarray([out.num_samples], np.int64))
        transport.exchange([(0, serialize(control))], [], tag=_tag(t, "ctl", c), control=True,
                           what=f"the control message of client {c} in round {t}")


_WIRE_FIELDS = tuple(WireCounts.__dataclass_fields__)


def _gather_wire(transport: RankTransport, gone: set[int] = frozenset()
                 ) -> tuple[WireCounts, ...]:
    """Every rank's counters at rank 0 (control traffic, after all payload traffic; zeros for
    a rank that is `gone`: its counters died with it); this rank's own elsewhere."""
    counts = transport.counts()
    tag = wire_tag("star|final wire counts")
    if transport.rank != 0:
        mine = Payload(wire=np.asarray([getattr(counts, f) for f in _WIRE_FIELDS], np.int64))
        transport.exchange([(0, serialize(mine))], [], tag=tag, control=True,
                           what="the final wire counts")
        return (counts,)
    others = [r for r in range(1, transport.world_size) if r not in gone]
    got, _ = transport.exchange([], others, tag=tag, control=True, what="the final wire counts")
    return (counts, *(WireCounts() if r in gone else
                      WireCounts(**dict(zip(_WIRE_FIELDS, (int(v) for v in got[r]["wire"]),
                                            strict=True))) for r in range(1, transport.world_size)))


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
    expected = ledger_nbytes_by_rank(Ledger(list(result.run.ledger)[result.ledger_start:]),
                                     result.world_size)
    return len(result.wire) == result.world_size and all(
        (w.payload_sent_nbytes, w.payload_received_nbytes) == pair
        for w, pair in zip(result.wire, expected, strict=True))

