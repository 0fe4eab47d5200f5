"""Star algorithms over torch.distributed (gloo, loopback, a server and 2 client ranks) against
the simulator: the same ledger event for event, the same parameters bit for bit, the clients'
state kept on their ranks, and every rank's transport counters equal to the ledger's bytes to
and from the parties it hosts."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from tests.conftest import make_model

from lowcomm.algorithms import fedavg, scaffold, sgd
from lowcomm.compress import error_feedback, fp16, qsgd, topk
from lowcomm.cost import FlopCounter
from lowcomm.data import synthetic
from lowcomm.runtime import SimulationSettings, sequential, simulate
from lowcomm.runtime.distributed import spawn_local
from lowcomm.runtime.distributed.star import (
    client_rank,
    ledger_nbytes_by_rank,
    simulate_rank,
    wire_equals_ledger,
)

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

TIMEOUT_SECONDS = 300.0  # process start on a loaded machine; never a measured threshold
RANKS = 3  # the server and two client ranks

ALGORITHMS = {
    # a stochastic quantizer: the clients' random streams must be the simulator's
    "fedavg-qsgd": lambda m, n: fedavg(m, client_optimizer=sgd(0.1), batch_size=8,
                                       uplink=qsgd(15), downlink=fp16()),
    # error feedback: the residual is client state, kept on the client's rank
    "fedavg-topk-ef": lambda m, n: fedavg(m, client_optimizer=sgd(0.1), batch_size=8,
                                          uplink=error_feedback(topk(0.2))),
    # control variates: client state, never on the wire
    "scaffold": lambda m, n: scaffold(m, num_clients=n, client_lr=0.1, local_steps=3,
                                      batch_size=8),
}


def _parts(name: str, dataset):
    spec, model, params = make_model("mlp", input_shape=tuple(dataset.input_shape))
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    flops.step((1, *dataset.input_shape))  # counted once here; the forked ranks inherit it
    settings = SimulationSettings(rounds=3, clients_per_round=4, eval_every=2, seed=3)
    return ALGORITHMS[name](model, dataset.num_clients), dataset, model, params, flops, settings


def _distributed(parts):
    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        return simulate_rank(*parts, transport, executor=sequential())

    return spawn_local(rank, RANKS, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)


@pytest.fixture(scope="module")
def dataset():
    return synthetic(1.0, 1.0, num_clients=7, seed=0)  # generated, ships with the package


def _without_seconds(record):
    return {**record.__dict__, "simulator_seconds": None}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_same_ledger_parameters_and_client_state_as_the_simulator(name, dataset):
    parts = _parts(name, dataset)
    ranks = _distributed(parts)
    torch.set_num_threads(1)  # as in the ranks: the same kernels
    sim = simulate(*parts, executor=sequential())
    run = ranks[0].run
    assert all(r.run is None for r in ranks[1:])
    assert run.ledger == sim.ledger  # event for event: order, src, dst, channel, bytes, codec
    assert len(run.ledger.comm_events()) > 0 and run.ledger.totals().flops > 0
    assert torch.equal(run.params, sim.params)  # the same kernels (one thread): bit for bit
    assert not torch.allclose(run.params, parts[3], atol=1e-3)  # it did train
    assert [_without_seconds(r) for r in run.rounds] == \
        [_without_seconds(r) for r in sim.rounds]
    assert run.initial == sim.initial
    # every rank's transport moved exactly the ledger's bytes of the parties it hosts
    expected = ledger_nbytes_by_rank(run.ledger, RANKS)
    assert [(w.payload_sent_nbytes, w.payload_received_nbytes) for w in ranks[0].wire] == \
        expected
    assert all(sent > 0 and received > 0 for sent, received in expected)
    assert wire_equals_ledger(ranks[0])
    assert [r.wire[0] for r in ranks[1:]] == list(ranks[0].wire[1:])
    # each client's state lives on its rank only, and equals the simulator's
    if sim.client_states is not None:
        held = {c: r for r in ranks[1:] for c in r.client_states.clients()}
        assert sorted(held) == sorted(sim.client_states.clients())
        for c, r in held.items():
            assert client_rank(c, RANKS) == r.rank
            ours, theirs = r.client_states.get(c), sim.client_states.get(c)
            assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_star_run_needs_a_client_rank():
    with pytest.raises(ValueError, match="world_size >= 2"):
        client_rank(3, 1)
    assert [client_rank(c, 3) for c in range(5)] == [1, 2, 1, 2, 1]


def test_every_algorithm_of_lowcomm_run_gives_the_simulators_ledger():
    """The registry contract: each algorithm `lowcomm run` builds (with a stochastic, a
    sparse or an error-fed codec where it takes one) runs distributed as in the simulator. One
    group of 3 ranks runs them one after another; the transport counters are cumulative, so
    each run's are the difference from the previous run's."""
    from lowcomm.cli.build import build_run
    from lowcomm.cli.config import ALGORITHMS as REGISTRY
    from lowcomm.cli.config import RunConfig

    uplinks = {"fedavg": "topk:0.2+kmeans:3+huffman", "fedsgd": "qsgd:7", "scallion": "randk:0.2",
               "ef21": "topk:0.2,ef21", "scafcom": "topk:0.3"}
    configs = {name: RunConfig(algorithm=name, dataset="digits", clients=6, clients_per_round=3,
                               rounds=2, model="logreg", partition="iid", local_steps=2,
                               uplink=uplinks.get(name, "fp32"), execution="sequential")
               for name in REGISTRY}
    runs = {}
    for name, c in configs.items():
        parts = build_run(c)
        flops = FlopCounter(parts.spec.key, parts.spec.build, input_dtype=parts.spec.input_dtype)
        flops.step((1, *parts.dataset.input_shape))
        settings = SimulationSettings(rounds=c.rounds, clients_per_round=c.clients_per_round,
                                      seed=c.seed)
        runs[name] = (parts.algorithm, parts.dataset, parts.model, parts.params, flops, settings)

    def rank(r, nproc, ep):
        transport = ep.join(r, nproc, timeout_seconds=TIMEOUT_SECONDS)
        return [simulate_rank(*args, transport, executor=sequential()) for args in runs.values()]

    ranks = spawn_local(rank, RANKS, timeout_seconds=TIMEOUT_SECONDS, grace_seconds=20.0)
    torch.set_num_threads(1)
    before = [(0, 0)] * RANKS
    for i, (name, args) in enumerate(runs.items()):
        run, sim = ranks[0][i].run, simulate(*args, executor=sequential())
        assert run.ledger == sim.ledger, name
        assert len(run.ledger.comm_events()) > 0, name
        assert torch.equal(run.params, sim.params), name
        counts = [(w.payload_sent_nbytes, w.payload_received_nbytes) for w in ranks[0][i].wire]
        moved = [(s - s0, r - r0) for (s, r), (s0, r0) in zip(counts, before, strict=True)]
        assert moved == ledger_nbytes_by_rank(run.ledger, RANKS), name
        before = counts
