"""Faults in the simulator: dead, stalled and corrupting clients drop out, are recorded and
logged, and nothing they sent reaches the model; a run without faults is unchanged."""

import dataclasses
import logging

import pytest
import torch
from tests.conftest import make_model, pooled

from lowcomm.algorithms import fedavg, fedsgd, scaffold, sgd
from lowcomm.cost import (
    CarbonModel,
    DeviceModel,
    DropEvent,
    FlopCounter,
    Ledger,
    MoneyModel,
    constant_network,
    price,
)
from lowcomm.runtime import SimulationSettings, simulate
from lowcomm.runtime.faults import Fault, FaultPlan, parse_fault, parse_worker_kill


def _simulate(dataset, algorithm=None, *, faults=(), rounds=2, per_round=10, **settings):
    spec, model, params = make_model("logreg")
    algorithm = algorithm or fedsgd(model, lr=0.5)
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    return simulate(algorithm, dataset, model, params, flops,
                    SimulationSettings(rounds=rounds, clients_per_round=per_round, **settings),
                    faults=FaultPlan.parse(faults))


def test_fault_specs_read_as_written_and_bad_ones_name_themselves():
    assert parse_fault("kill client 2 at round 3") == Fault("kill", 2, 3)
    assert parse_fault("  Stall client 1 at round 2 ") == Fault("stall", 1, 2)
    assert parse_fault("corrupt client 0 at round 1") == Fault("corrupt", 0, 1, "bytes")
    assert parse_fault("corrupt nan client 4 at round 0") == Fault("corrupt", 4, 0, "nan")
    for spec in ("kill client 2 at round 3", "corrupt shape client 1 at round 2"):
        assert str(parse_fault(spec)) == spec
    for bad in ("kill client two at round 3", "explode client 1 at round 1",
                "corrupt purple client 1 at round 1", "kill client 1", "stall nan client 1 at "
                "round 1"):
        with pytest.raises(ValueError, match=f"cannot read fault '{bad}'"):
            parse_fault(bad)
    with pytest.raises(ValueError, match="both strike client 1 in round 2"):
        FaultPlan.parse(["stall client 1 at round 2", "corrupt client 1 at round 2"])
    with pytest.raises(ValueError, match="strikes a client killed in round 2"):
        FaultPlan.parse(["kill client 1 at round 2", "stall client 1 at round 3"])


def test_faults_naming_a_client_or_round_the_run_lacks_are_refused(digits_clients):
    with pytest.raises(ValueError, match="there are only 10 clients"):
        _simulate(digits_clients, faults=["kill client 10 at round 1"])
    with pytest.raises(ValueError, match="the run has rounds 1 to 2"):
        _simulate(digits_clients, faults=["stall client 1 at round 3"])


def test_a_run_without_faults_has_no_drops_and_equals_an_empty_plan(digits_clients):
    spec, model, params = make_model("logreg")
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    settings = SimulationSettings(rounds=2, clients_per_round=4, seed=2)
    plain = simulate(fedsgd(model, lr=0.5), digits_clients, model, params, flops, settings)
    empty = _simulate(digits_clients, per_round=4, seed=2)
    assert plain.ledger == empty.ledger and torch.equal(plain.params, empty.params)
    assert not plain.ledger.drop_events()
    assert all(r.dropped == 0 and r.updated for r in plain.rounds)


@pytest.mark.parametrize("spec", ["kill client 3 at round 2", "stall client 3 at round 2",
                                  "corrupt client 3 at round 2", "corrupt nan client 3 at round 2",
                                  "corrupt shape client 3 at round 2",
                                  "corrupt field client 3 at round 2",
                                  "corrupt oversize client 3 at round 2"])
def test_nothing_a_faulty_client_sends_reaches_the_model(digits_clients, spec):
    """FedSGD with everyone: round 2 must be one full-batch gradient step on the other nine
    clients' pooled data, exactly."""
    _, model, _ = make_model("logreg")
    clean_1 = _simulate(digits_clients, rounds=1)
    faulty = _simulate(digits_clients, faults=[spec])
    x, y = pooled(digits_clients, [c for c in range(10) if c != 3])
    w = clean_1.params.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.loss(w, x, y), w)
    assert torch.allclose(faulty.params, clean_1.params - 0.5 * grad, atol=1e-6, rtol=0)
    assert torch.isfinite(faulty.params).all()
    first, second = faulty.rounds
    assert (first.clients, first.dropped) == (10, 0)
    assert (second.clients, second.dropped, second.updated) == (9, 1, True)
    reason = {"kill": "timeout", "stall": "timeout"}.get(spec.split()[0])
    expected = reason or {"corrupt client": "refused", "corrupt nan": "non-finite"}.get(
        " ".join(spec.split()[:2]), "malformed")
    assert faulty.ledger.drop_events() == [DropEvent(2, "client:3", expected)]


def test_the_ledger_keeps_what_crossed_and_drops_what_did_not(digits_clients):
    clean = _simulate(digits_clients)
    faulty = _simulate(digits_clients, faults=["kill client 2 at round 1",
                                               "stall client 5 at round 2",
                                               "corrupt nan client 7 at round 2"])
    by = {(e.round, e.src, e.dst) for e in faulty.ledger.comm_events()}
    computed = {(e.round, e.worker) for e in faulty.ledger.compute_events()}
    # killed in round 1: got the model, computed and sent nothing; not even reached in round 2
    assert (1, "server", "client:2") in by and (1, "client:2", "server") not in by
    assert (1, "client:2") not in computed and (2, "server", "client:2") not in by
    # stalled: trained (its FLOPs count) but its upload never arrived
    assert (2, "client:5") in computed and (2, "client:5", "server") not in by
    # corrupted: its bytes crossed the link and are counted at their real length
    assert (2, "client:7", "server") in by
    each = clean.rounds[1].bytes_up // 10  # every fp32 upload has the same length
    assert faulty.rounds[1].bytes_up == 8 * each  # 10 less the dead and the stalled client
    assert faulty.ledger.drop_events() == [
        DropEvent(1, "client:2", "timeout"), DropEvent(2, "client:2", "lost"),
        DropEvent(2, "client:5", "timeout"), DropEvent(2, "client:7", "non-finite")]
    assert [r.dropped for r in faulty.rounds] == [1, 3]
    # drops have no cost of their own: totals and pricing see only the real events
    costless = Ledger(e for e in faulty.ledger if not isinstance(e, DropEvent))
    assert faulty.ledger.totals() == costless.totals()
    models = {"network": constant_network(up_bps=1e6, down_bps=1e7, latency_seconds=0.01),
              "device": DeviceModel(), "money": MoneyModel(), "carbon": CarbonModel()}
    assert price(faulty.ledger, **models).as_dict() == price(costless, **models).as_dict()
    assert Ledger.from_rows(faulty.ledger.to_rows()) == faulty.ledger


def test_drops_are_logged_with_client_round_and_reason(digits_clients, caplog):
    with caplog.at_level(logging.WARNING, logger="lowcomm.runtime"):
        _simulate(digits_clients, faults=["corrupt client 4 at round 2"])
    assert any("round 2: client 4 dropped (refused)" in m and "CRC-32" in m
               for m in caplog.messages)


def test_oversized_uploads_are_rejected_above_the_limit(digits_clients):
    honest = _simulate(digits_clients, rounds=1).ledger.comm_events()[-1].nbytes
    faulty = _simulate(digits_clients, faults=["corrupt oversize client 1 at round 1"],
                       rounds=1, max_upload_nbytes=honest)
    assert faulty.ledger.drop_events() == [DropEvent(1, "client:1", "oversized")]
    assert faulty.rounds[0].clients == 9  # honest uploads of exactly the limit pass


def test_below_min_cohort_the_round_makes_no_server_update(digits_clients):
    one = _simulate(digits_clients, rounds=1, per_round=3, seed=5)
    cohort_2 = sorted({e.dst for e in _simulate(digits_clients, per_round=3, seed=5)
                       .ledger.comm_events() if e.round == 2 and e.src == "server"})
    victim = int(cohort_2[0].split(":")[1])
    short = _simulate(digits_clients, per_round=3, seed=5, min_cohort=3,
                      faults=[f"stall client {victim} at round 2"])
    assert torch.equal(short.params, one.params)  # the model is unchanged by round 2
    assert (short.rounds[1].updated, short.rounds[1].clients, short.rounds[1].dropped) == \
        (False, 2, 1)
    assert short.rounds[1].bytes_up > 0  # the two uploads that arrived are still counted
    enough = _simulate(digits_clients, per_round=3, seed=5, min_cohort=2,
                       faults=[f"stall client {victim} at round 2"])
    assert enough.rounds[1].updated and not torch.equal(enough.params, one.params)


def test_a_client_that_finished_keeps_its_state_a_killed_one_computed_none(digits_clients):
    _, model, _ = make_model("logreg")
    algorithm = scaffold(model, num_clients=10, client_lr=0.1, local_steps=2)
    result = _simulate(digits_clients, algorithm, rounds=1,
                       faults=["stall client 6 at round 1", "kill client 2 at round 1"])
    clean = _simulate(digits_clients, algorithm, rounds=1)
    # the stalled client trained: its c_i is what it computed, though the server never heard
    assert torch.equal(result.client_states.get(6)["c"], clean.client_states.get(6)["c"])
    assert result.client_states.get(2) is None  # killed before it finished
    # the server's c counts only the admitted clients' increments
    admitted = sum(result.client_states.get(c)["c"] for c in range(10) if c not in (2, 6))
    assert torch.allclose(result.state.control, admitted / 10, atol=1e-6)


def test_settings_refuse_impossible_fault_tolerances():
    for bad, match in (({"min_cohort": 0}, "min_cohort must be in"),
                       ({"min_cohort": 5}, r"clients_per_round=4\]; got 5"),
                       ({"max_upload_nbytes": 0}, "max_upload_nbytes must be >= 1"),
                       ({"round_timeout_seconds": 0.0}, "round_timeout_seconds must be > 0")):
        with pytest.raises(ValueError, match=match):
            SimulationSettings(rounds=1, clients_per_round=4, **bad)


def test_fedavg_with_a_fault_equals_the_run_without_that_clients_upload(digits_clients):
    """Every way of losing client 3's round-2 upload leaves the same model."""
    _, model, _ = make_model("logreg")
    algorithm = fedavg(model, client_optimizer=sgd(0.1), batch_size=16)
    results = [_simulate(digits_clients, algorithm, faults=[f"{kind} client 3 at round 2"])
               for kind in ("kill", "stall", "corrupt")]
    assert all(torch.equal(r.params, results[0].params) for r in results)
    clean = _simulate(digits_clients, algorithm)
    assert not torch.equal(clean.params, results[0].params)
    assert dataclasses.replace(clean.rounds[0], simulator_seconds=0) == \
        dataclasses.replace(results[0].rounds[0], simulator_seconds=0)  # round 1 untouched


def test_one_grammar_reads_a_clients_faults_and_a_workers_kill():
    assert parse_worker_kill("kill worker 2 at step 25") == (2, 25)
    for bad in ("kill client 2 at round 3", "stall worker 1 at step 4",
                "corrupt nan worker 1 at step 4", "kill worker 1 at round 4"):
        with pytest.raises(ValueError, match="kill worker W at step T"):
            parse_worker_kill(bad)
    with pytest.raises(ValueError, match="client <id> at round <t>"):
        parse_fault("kill worker 2 at step 3")
