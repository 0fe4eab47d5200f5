"""Ray actors as an execution strategy: the same parameters and ledger as `sequential`, on one
local Ray instance (2 CPUs, no dashboard) started once for this module. Skipped without Ray."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from tests.conftest import make_model

from lowcomm.algorithms import fedavg, scaffold, sgd
from lowcomm.cli.main import main
from lowcomm.compress import error_feedback, qsgd, topk
from lowcomm.core import numpy_rng
from lowcomm.cost import FlopCounter
from lowcomm.data import dirichlet, federate
from lowcomm.runtime import SimulationSettings, sequential, simulate

ray = pytest.importorskip("ray")
from lowcomm.runtime.execution import TaskKey  # noqa: E402 (after the skip)
from lowcomm.runtime.ray_pool import (  # noqa: E402
    check_reachable,
    pin_clients,
    ray_actors,
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    before = os.environ.get("RAY_AUTH_MODE")  # ray.init sets it for this process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = before


@pytest.fixture(scope="module")
def skewed_clients(digits_central):
    labels = digits_central.y_train.numpy()
    return federate(digits_central, dirichlet(labels, 12, alpha=0.3,
                                              rng=numpy_rng(3, purpose="partition")))


def _run(dataset, make_algorithm, executor, *, rounds=3):
    spec, model, params = make_model("mlp")
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    settings = SimulationSettings(rounds=rounds, clients_per_round=7, seed=5)
    return simulate(make_algorithm(model), dataset, model, params, flops, settings,
                    executor=executor)


ALGORITHMS = {
    # error feedback: every client keeps its residual between rounds (stateful codec)
    "fedavg-topk-ef": lambda m: fedavg(m, client_optimizer=sgd(0.1), batch_size=16,
                                       uplink=error_feedback(topk(0.1, index_encoding="raw"))),
    # control variates c_i kept per client
    "scaffold": lambda m: scaffold(m, num_clients=12, client_lr=0.05, local_steps=5),
}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_ray_actors_match_sequential(skewed_clients, name):
    reference = _run(skewed_clients, ALGORITHMS[name], sequential())
    hosted = _run(skewed_clients, ALGORITHMS[name], ray_actors(actors=2))
    assert hosted.execution == "ray"
    assert torch.allclose(hosted.params, reference.params, atol=1e-6, rtol=0)
    assert hosted.ledger == reference.ledger  # same bytes, same counted FLOPs, same events
    assert [r.train_loss for r in hosted.rounds] == pytest.approx(
        [r.train_loss for r in reference.rounds], abs=1e-6)
    if reference.client_states is not None:
        store = hosted.client_states
        assert store.clients() == reference.client_states.clients()
        for c in store.clients():
            for field, value in reference.client_states.get(c).items():
                assert torch.allclose(store.get(c)[field], value, atol=1e-6)
    assert ray.is_initialized()  # it joined this module's instance, so it left it running


def test_vectorized_actors_match_sequential_and_build_data_in_the_actors(skewed_clients):
    """With vectorize, each actor trains its clients in one batched update; and the client data
    is built where the client trains (never in the simulating process)."""
    parent = os.getpid()
    fn = skewed_clients.client_fn

    def only_in_actors(k):
        if os.getpid() == parent:
            raise AssertionError(f"client {k}'s data was built in the simulating process")
        return fn(k)

    remote = dataclasses.replace(skewed_clients, client_fn=only_in_actors)
    make = lambda m: fedavg(m, client_optimizer=sgd(0.1), batch_size=16, uplink=qsgd(255))  # noqa: E731
    reference = _run(skewed_clients, make, sequential(), rounds=2)
    hosted = _run(remote, make, ray_actors(actors=2, vectorize=True), rounds=2)
    assert hosted.execution == "ray+vectorized"
    assert torch.allclose(hosted.params, reference.params, atol=2e-4, rtol=0)
    assert hosted.ledger == reference.ledger


def test_a_failing_client_in_an_actor_is_reported(skewed_clients):
    def broken(model):
        algorithm = fedavg(model, client_optimizer=sgd(0.1))

        def client_update(message, task):
            raise ArithmeticError(f"client {task.client_id} cannot count")

        return dataclasses.replace(algorithm, client_update=client_update)

    failed = r"client\(s\) (\d+) failed in a Ray actor(.|\n)*client \1 cannot count"
    with pytest.raises(RuntimeError, match=failed):
        _run(skewed_clients, broken, ray_actors(actors=1), rounds=1)


def test_clients_are_pinned_to_actors_by_id():
    keys = [TaskKey(c, 1, 10) for c in (4, 1, 7, 2, 9)]
    assert pin_clients(keys, 2) == [[0, 3], [1, 2, 4]]  # even ids, odd ids, in job order
    assert pin_clients(keys, 3) == [[4], [0, 1, 2], [3]]


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match="actors must be >= 1; got 0"):
        ray_actors(actors=0)
    with pytest.raises(ValueError, match=r"local_cpus \(1\) must be >= actors \(2\)"):
        ray_actors(actors=2, local_cpus=1)
    _, model, _ = make_model("logreg")
    executor = ray_actors(actors=3)  # the module's instance has 2 CPUs
    with pytest.raises(ValueError, match=r"actors \(3\) exceeds the Ray cluster's CPUs \(2\)"):
        executor.run(fedavg(model, client_optimizer=sgd(0.1)),
                     [(None, TaskKey(0, 1, 1))], lambda key: None)
    executor.close()


def test_cli_runs_on_a_ray_cluster_by_address_like_sequential(tmp_path, capsys):
    """`lowcomm run --execution ray --ray-address HOST:PORT` in a separate process joins this
    module's Ray instance as a user joins a cluster, and stores the run that `sequential` does;
    the cluster keeps running after it."""
    tiny = ["--dataset", "digits", "--clients", "6", "--clients-per-round", "3", "--rounds", "2",
            "--model", "logreg", "--partition", "iid", "--uplink", "qsgd:15"]
    address = ray.get_runtime_context().gcs_address
    db = str(tmp_path / "runs.sqlite")
    done = subprocess.run([sys.executable, "-m", "lowcomm.cli.main", "run", *tiny,
                           "--execution", "ray", "--ray-address", address, "--ray-actors", "2",
                           "--db", db], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["run", *tiny, "--execution", "sequential", "--db", db]) == 0
    capsys.readouterr()
    records = []
    for run_id in ("1", "2"):
        assert main(["export", run_id, "--db", db]) == 0
        records.append(json.loads(capsys.readouterr().out))
    hosted, reference = records
    assert hosted["summary"]["execution"] == "ray"
    assert hosted["config"]["ray_address"] == address
    assert hosted["events"] == reference["events"]  # the same ledger, event for event
    assert hosted["summary"]["final_test_accuracy"] == pytest.approx(
        reference["summary"]["final_test_accuracy"], abs=1e-9)
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2



def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=rf"'127.0.0.1:{port}': nothing answers there"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ValueError, match=r"ray address must be HOST:PORT .* got 'head-node'"):
        check_reachable("head-node")
    check_reachable(ray.get_runtime_context().gcs_address)  # this module's head answers


def test_cli_refuses_a_ray_address_where_nothing_listens_in_one_line(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["run", "--dataset", "digits", "--model", "logreg", "--execution", "ray",
                 "--ray-address", f"127.0.0.1:{port}", "--no-store"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot join the Ray cluster at '127.0.0.1:{port}'" in err and "Traceback" not in err


def test_actors_that_cannot_all_start_are_a_timeout_not_a_hang(skewed_clients):
    """With one of the instance's 2 CPUs held (a placement group), the second actor cannot start:
    the executor gives up after its start timeout and releases the actors it made (the first may
    or may not be up by then on a loaded machine)."""
    held = ray.util.placement_group([{"CPU": 1}])
    ray.get(held.ready())
    try:
        with pytest.raises(TimeoutError, match=r"only [01] of 2 Ray actors started within 3 s"):
            _run(skewed_clients, ALGORITHMS["fedavg-topk-ef"],
                 ray_actors(actors=2, start_timeout_seconds=3), rounds=1)
    finally:
        ray.util.remove_placement_group(held)
