"""Data-centre training interrupted at a step boundary and resumed: the same models (bit for
bit), ledger and records, with collective results still in flight saved in the checkpoint."""

import dataclasses

import pytest
import torch
from tests.algorithms.replicated_runs import workload

from lowcomm.algorithms import adamw
from lowcomm.algorithms.replicated import co2, diloco, eager_diloco
from lowcomm.runtime import TrainingSettings, train_workers
from lowcomm.runtime.checkpoint import CheckpointError, CheckpointPolicy, load, resume_point

STEPS, WORKERS, KILLED_AT = 9, 2, 6  # killed in step 6: checkpoint of 5, mid-window
ALGORITHMS = {
    "diloco": lambda m: diloco(m, inner_optimizer=adamw(1e-2), inner_steps=2),  # outer Nesterov
    # the outer all-reduce overlaps the next phase: results in flight at step boundaries
    "co2": lambda m: co2(m, inner_optimizer=adamw(1e-2), inner_steps=2),
    "eager_diloco": lambda m: eager_diloco(m, inner_optimizer=adamw(1e-2), inner_steps=2),
}


class _KilledError(Exception):
    pass


def _train(name, *, seed=0, **kwargs):
    model, params, data, flops = workload(WORKERS)
    settings = TrainingSettings(steps=STEPS, workers=WORKERS, seed=seed, eval_every=2)
    return train_workers(ALGORITHMS[name](model), data, model, params, flops, settings,
                         **kwargs)


def _kill_at(step):
    def on_step(t):
        if t == step:
            raise _KilledError(f"killed in step {step}")

    return on_step


def _records(result):
    return [dataclasses.replace(r, simulator_seconds=0.0) for r in result.records]  # measured


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_resumed_training_equals_the_uninterrupted_one(name, tmp_path):
    whole = _train(name)
    policy = CheckpointPolicy(tmp_path)
    with pytest.raises(_KilledError):
        _train(name, checkpoint=policy, on_step=_kill_at(KILLED_AT))
    point = resume_point(tmp_path)
    assert point.next_round == KILLED_AT and point.seed == 0
    if name == "co2":  # the checkpoint holds results due before later steps
        assert point.state["inbox"].pending()
    seen = []
    resumed = _train(name, checkpoint=policy, resume=point, on_record=seen.append)
    assert [r.step for r in seen] == [6, 8, 9]  # only the records it made
    for ours, theirs in zip(resumed.models, whole.models, strict=True):
        assert torch.equal(ours, theirs)
    assert resumed.ledger == whole.ledger
    assert _records(resumed) == _records(whole)
    assert resumed.initial_val_loss == whole.initial_val_loss
    assert load(tmp_path).next_round == STEPS + 1


def test_training_resume_refuses_another_seed(tmp_path):
    _train("diloco", checkpoint=CheckpointPolicy(tmp_path, every=4))
    assert [load(tmp_path).next_round] == [STEPS + 1]
    with pytest.raises(CheckpointError, match=r"settings\.seed: 0 there, 1 here"):
        _train("diloco", seed=1, resume=resume_point(tmp_path))
