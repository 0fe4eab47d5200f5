"""Simulate, interrupt, resume: the same parameters (bit for bit), ledger and records."""

import dataclasses

import pytest
import torch
from tests.algorithms.controlled_runs import COMMON, skewed_clients
from tests.conftest import make_model

from lowcomm.algorithms import fedavg, scaffold, sgd
from lowcomm.compress import error_feedback, qsgd, topk
from lowcomm.cost import FlopCounter
from lowcomm.runtime import SimulationSettings, sequential, simulate
from lowcomm.runtime.checkpoint import CheckpointError, CheckpointPolicy, load, resume_point
from lowcomm.runtime.faults import FaultPlan

ROUNDS = 4
MAKERS = {
    "scaffold": lambda m: scaffold(m, **COMMON),  # client states: control variates c_i
    # a stateful codec: error-feedback residuals kept per client
    "fedavg-ef-topk": lambda m: fedavg(m, client_optimizer=sgd(0.1), batch_size=16,
                                       uplink=error_feedback(topk(0.2, index_encoding="raw"))),
    # stochastic rounding: its random stream must be the same in the resumed rounds
    "fedavg-qsgd": lambda m: fedavg(m, client_optimizer=sgd(0.1), batch_size=16,
                                    uplink=qsgd(15)),
}


@pytest.fixture(scope="module")
def clients(digits_central):
    return skewed_clients(digits_central)


class _KilledError(Exception):
    pass


def _simulate(clients, name, *, seed=3, **kwargs):
    spec, model, params = make_model("mlp")
    return simulate(MAKERS[name](model), clients, model, params,
                    FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype),
                    SimulationSettings(rounds=ROUNDS, clients_per_round=5, seed=seed),
                    executor=sequential(), **kwargs)


def _kill_after(round_: int):
    def on_round(record):
        if record.round == round_:
            raise _KilledError(f"killed after round {round_}")

    return on_round


def _records(result):
    return [dataclasses.replace(r, simulator_seconds=0.0) for r in result.rounds]  # measured


@pytest.mark.parametrize("name", list(MAKERS))
def test_resumed_run_equals_the_uninterrupted_one(clients, name, tmp_path):
    whole = _simulate(clients, name)
    policy = CheckpointPolicy(tmp_path, every=1)
    with pytest.raises(_KilledError):
        _simulate(clients, name, checkpoint=policy, on_round=_kill_after(2))
    point = resume_point(tmp_path)
    assert point.next_round == 3 and point.seed == 3
    seen = []
    resumed = _simulate(clients, name, checkpoint=policy, resume=point, on_round=seen.append)
    assert [r.round for r in seen] == [3, 4]  # only the rounds it ran
    assert torch.equal(resumed.params, whole.params)
    assert resumed.ledger == whole.ledger
    assert _records(resumed) == _records(whole)
    assert resumed.initial == whole.initial
    if whole.client_states is not None:
        assert resumed.client_states.clients() == whole.client_states.clients()
        for c in whole.client_states.clients():
            for field, value in whole.client_states.get(c).items():
                assert torch.equal(resumed.client_states.get(c)[field], value)
    assert load(tmp_path).next_round == ROUNDS + 1  # the last round was checkpointed


def test_every_k_rounds_and_the_last_with_keep(clients, tmp_path):
    _simulate(clients, "fedavg-qsgd", checkpoint=CheckpointPolicy(tmp_path, every=3, keep=3))
    written = [load(tmp_path / name).next_round - 1 for name in
               ("last.ckpt", "last.ckpt.1")]
    assert written == [4, 3] and not (tmp_path / "last.ckpt.2").exists()


def test_resume_refuses_another_config_naming_file_and_option(clients, tmp_path):
    _simulate(clients, "scaffold", checkpoint=CheckpointPolicy(tmp_path))
    with pytest.raises(CheckpointError, match=r"last\.ckpt was written by a run with other "
                       r"options \(.*settings\.seed: 3 there, 4 here\)"):
        _simulate(clients, "scaffold", seed=4, resume=resume_point(tmp_path))
    with pytest.raises(CheckpointError, match="hyperparams"):
        _simulate(clients, "fedavg-qsgd", resume=resume_point(tmp_path))


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume from in .*empty"):
        resume_point(tmp_path / "empty")


def test_bad_policy_values_are_named():
    with pytest.raises(ValueError, match="every must be an integer >= 1; got 0"):
        CheckpointPolicy("d", every=0)


def test_resume_with_injected_faults_and_refusal_of_other_faults(clients, tmp_path):
    plan = FaultPlan.parse([f"kill client {c} at round 1" for c in range(4)]
                           + ["corrupt client 5 at round 3"])
    whole = _simulate(clients, "scaffold", faults=plan)
    assert sum(r.dropped for r in whole.rounds) > 0  # the faults struck
    policy = CheckpointPolicy(tmp_path)
    with pytest.raises(_KilledError):
        _simulate(clients, "scaffold", faults=plan, checkpoint=policy, on_round=_kill_after(2))
    resumed = _simulate(clients, "scaffold", faults=plan, resume=resume_point(tmp_path))
    assert torch.equal(resumed.params, whole.params) and resumed.ledger == whole.ledger
    assert _records(resumed) == _records(whole)
    with pytest.raises(CheckpointError, match="faults: "):
        _simulate(clients, "scaffold", resume=resume_point(tmp_path))


def test_resume_with_client_states_in_a_memory_mapped_file(clients, tmp_path):
    spec, model, params = make_model("mlp")
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)

    def run(state_path, **kwargs):
        settings = SimulationSettings(rounds=ROUNDS, clients_per_round=5, seed=3,
                                      state_path=str(state_path))
        return simulate(MAKERS["scaffold"](model), clients, model, params, flops, settings,
                        executor=sequential(), **kwargs)

    whole = run(tmp_path / "whole.rows")
    policy = CheckpointPolicy(tmp_path / "ck")
    with pytest.raises(_KilledError):
        run(tmp_path / "rows", checkpoint=policy, on_round=_kill_after(3))
    resumed = run(tmp_path / "rows", resume=resume_point(tmp_path / "ck"))  # the same file
    assert torch.equal(resumed.params, whole.params) and resumed.ledger == whole.ledger
