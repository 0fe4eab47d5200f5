"""Reference tests: every execution strategy gives the sequential loop's parameters and ledger."""

import dataclasses
import os

import pytest
import torch
from tests.conftest import make_model

from lowcomm.algorithms import adam, fedavg, fedsgd, sgd
from lowcomm.compress import error_feedback, qsgd, topk
from lowcomm.core import numpy_rng
from lowcomm.cost import FlopCounter
from lowcomm.data import dirichlet, federate
from lowcomm.models import char_lstm, init_params
from lowcomm.runtime import (
    SimulationSettings,
    auto,
    processes,
    sequential,
    simulate,
    vectorized,
)
from lowcomm.runtime.processes import balanced_chunks


@pytest.fixture(scope="module")
def skewed_clients(digits_central):
    """12 clients of very different sizes (Dirichlet 0.3 label and quantity skew)."""
    labels = digits_central.y_train.numpy()
    return federate(digits_central, dirichlet(labels, 12, alpha=0.3,
                                              rng=numpy_rng(3, purpose="partition")))


def _run(dataset, make_algorithm, executor, *, rounds=2, kind="mlp"):
    spec, model, params = make_model(kind)
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    settings = SimulationSettings(rounds=rounds, clients_per_round=7, seed=5)
    return simulate(make_algorithm(model), dataset, model, params, flops, settings,
                    executor=executor)


ALGORITHMS = {
    "fedavg-sgd": lambda m: fedavg(m, client_optimizer=sgd(0.1), epochs=2, batch_size=8),
    # Gentle rates: a chaotic run (e.g. lr 0.05, momentum 0.9, B=5 here) turns the last-bit
    # differences of batched matmuls into 1e-3 (a 1e-7 nudge of the start does the same).
    "fedavg-momentum": lambda m: fedavg(m, client_optimizer=sgd(0.02, momentum=0.5),
                                        batch_size=8),
    "fedavg-adam": lambda m: fedavg(m, client_optimizer=adam(0.003), batch_size=16),
    "fedavg-full-batch": lambda m: fedavg(m, client_optimizer=sgd(0.1), batch_size=None),
    "fedavg-local-steps": lambda m: fedavg(m, client_optimizer=sgd(0.1), local_steps=7,
                                           batch_size=32),
    "fedavg-topk": lambda m: fedavg(m, client_optimizer=sgd(0.1),
                                    uplink=topk(0.1, index_encoding="raw")),
    "fedavg-qsgd": lambda m: fedavg(m, client_optimizer=sgd(0.1), uplink=qsgd(255)),
    "fedavg-topk-ef": lambda m: fedavg(m, client_optimizer=sgd(0.1),
                                       uplink=error_feedback(topk(0.1, index_encoding="raw"))),
    "fedsgd": lambda m: fedsgd(m, lr=0.5),
    "fedsgd-chunked": lambda m: fedsgd(m, lr=0.5, chunk_size=10),
}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_vectorized_matches_sequential(skewed_clients, name):
    reference = _run(skewed_clients, ALGORITHMS[name], sequential())
    fast = _run(skewed_clients, ALGORITHMS[name], vectorized())
    assert (reference.execution, fast.execution) == ("sequential", "vectorized")
    tolerance = 2e-4 if "adam" in name or "qsgd" in name else 1e-5
    assert torch.allclose(fast.params, reference.params, atol=tolerance, rtol=0)
    assert fast.ledger == reference.ledger  # same bytes, same counted FLOPs, same events
    for a, b in zip(reference.rounds, fast.rounds, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)


def test_small_memory_budgets_chunk_the_cohort_without_changing_results(skewed_clients):
    make = ALGORITHMS["fedavg-sgd"]
    whole = _run(skewed_clients, make, vectorized())
    chunked = _run(skewed_clients, make, vectorized(memory_budget_bytes=1))  # one per chunk
    assert torch.allclose(whole.params, chunked.params, atol=1e-5)
    assert whole.ledger == chunked.ledger


def test_auto_picks_by_counted_flops_and_falls_back_when_it_cannot_vmap(skewed_clients):
    # logistic regression on 8x8 digits counts 2,560 training FLOPs per sample: vectorized;
    # the test MLP counts 303,200: sequential
    make = ALGORITHMS["fedavg-sgd"]
    tiny = "processes+vectorized" if len(os.sched_getaffinity(0)) >= 2 else "vectorized"
    assert _run(skewed_clients, make, auto(), kind="logreg").execution == tiny
    assert _run(skewed_clients, make, auto()).execution == "sequential"
    lstm, _ = init_params(char_lstm(20, seq_len=5, hidden=8), seed=0)
    algorithm = fedavg(lstm, client_optimizer=sgd(0.1))
    assert algorithm.client_update_batch is None
    assert auto().resolve(algorithm, 1_000).name == "sequential"
    assert auto().resolve(algorithm, 1_000_000).name == "sequential"
    heavy = "processes" if len(os.sched_getaffinity(0)) >= 2 else "sequential"
    assert auto().resolve(algorithm, 100_000_000).name == heavy
    # one core (a rank of a distributed run): never worker processes
    assert auto(cores=1).resolve(algorithm, 100_000_000).name == "sequential"
    assert auto(cores=2).resolve(algorithm, 100_000_000).name == "processes"
    with pytest.raises(ValueError, match="cores must be >= 1"):
        auto(cores=0)
    with pytest.raises(ValueError, match="cannot be vmapped"):
        vectorized().run(algorithm, [], None)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("name", ["fedavg-sgd", "fedavg-adam", "fedavg-qsgd", "fedsgd"])
def test_processes_match_sequential(skewed_clients, name, vectorize):
    reference = _run(skewed_clients, ALGORITHMS[name], sequential())
    parallel = _run(skewed_clients, ALGORITHMS[name], processes(workers=2, vectorize=vectorize))
    assert parallel.execution == ("processes+vectorized" if vectorize else "processes")
    tolerance = 2e-4 if "adam" in name or "qsgd" in name else 1e-5
    assert torch.allclose(parallel.params, reference.params, atol=tolerance, rtol=0)
    assert parallel.ledger == reference.ledger


def test_a_failing_client_in_a_worker_is_reported(skewed_clients):
    def broken(model):
        algorithm = fedavg(model, client_optimizer=sgd(0.1))

        def client_update(message, task):
            raise ArithmeticError(f"client {task.client_id} cannot count")

        return dataclasses.replace(algorithm, client_update=client_update)

    with pytest.raises(RuntimeError, match="cannot count"):
        _run(skewed_clients, broken, processes(workers=2))


def test_stateful_uplinks_keep_each_clients_memory_across_rounds(skewed_clients):
    result = _run(skewed_clients, ALGORITHMS["fedavg-topk-ef"], sequential(), rounds=3)
    store = result.client_states
    assert store is not None and store.fields == {"uplink.residual": (result.params.numel(),)}
    participants = {int(e.src.split(":")[1]) for e in result.ledger.comm_events()
                    if e.direction == "up"}
    assert set(store.clients()) == participants
    residual = store.get(store.clients()[0])["uplink.residual"]
    assert float(residual.abs().sum()) > 0  # top-10% left most of the update owed


def test_balanced_chunks_split_work_evenly_and_deterministically():
    sizes = [100, 1, 50, 50, 3, 2, 98]
    groups = balanced_chunks(sizes, 2)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    loads = [sum(sizes[i] for i in g) for g in groups]
    assert max(loads) - min(loads) <= max(sizes)
    assert groups == balanced_chunks(sizes, 2)
    assert balanced_chunks([5], 3) == [[0]]


@pytest.mark.parametrize("vectorize", [False, True])
def test_processes_build_each_clients_data_in_the_worker(skewed_clients, vectorize):
    """Client data is produced where the client trains: with worker processes the simulating
    process never calls the dataset's client function for a training client."""
    parent = os.getpid()
    fn = skewed_clients.client_fn

    def only_in_workers(k):
        if os.getpid() == parent:
            raise AssertionError(f"client {k}'s data was built in the simulating process")
        return fn(k)

    remote = dataclasses.replace(skewed_clients, client_fn=only_in_workers)
    reference = _run(skewed_clients, ALGORITHMS["fedavg-sgd"], sequential())
    parallel = _run(remote, ALGORITHMS["fedavg-sgd"], processes(workers=2, vectorize=vectorize))
    assert torch.allclose(parallel.params, reference.params, atol=1e-5, rtol=0)
    assert parallel.ledger == reference.ledger
    with pytest.raises(AssertionError, match="built in the simulating process"):
        _run(remote, ALGORITHMS["fedavg-sgd"], sequential())
