"""`lowcomm train --membership`: workers join and leave between outer steps, in the simulator
and as launched processes (one per worker id) with the simulator's ledger; mistakes as one
line naming the value."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
from tests.cli.test_cli_train import TINY

from lowcomm.cli.main import main

SCHEDULE = "2:join,4:leave 1"  # 2 workers, worker 2 joins after step 2, worker 1 leaves after 4


def _set(args: list[str], flag: str, value: str | None) -> list[str]:
    """`args` with `flag`'s value replaced (None: the flag dropped)."""
    i = args.index(flag)
    return [*args[:i], *([] if value is None else [flag, value]), *args[i + 2:]]


ELASTIC = [*_set(TINY, "--steps", "6"), "--membership", SCHEDULE]


def _export(run_id: int, db: str, capsys) -> dict:
    assert main(["export", str(run_id), "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def _join_events(record: dict) -> list[dict]:
    return [e for e in record["events"] if e.get("channel") == "join-state" and "src" in e]


def test_a_simulated_run_with_a_membership_stores_the_join_and_the_live_workers(tmp_path,
                                                                               capsys):
    db = str(tmp_path / "runs.sqlite")
    assert main(["train", *ELASTIC, "--db", db]) == 0
    capsys.readouterr()
    record = _export(1, db, capsys)
    assert record["config"]["membership"] == SCHEDULE
    assert record["summary"]["live_workers_at_end"] == [0, 2]
    assert [(e["round"], e["src"], e["dst"]) for e in _join_events(record)] == \
        [(2, "worker:0", "worker:2")]
    assert all(r["replicas_identical"] for r in record["rounds"])


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_a_launched_run_with_a_membership_has_the_simulators_ledger(tmp_path, capsys):
    db = str(tmp_path / "runs.sqlite")
    args = ["train", *_set(ELASTIC, "--workers", None), "--db", db]  # nproc - joins = 2
    assert main(["train", *ELASTIC, "--db", db]) == 0
    assert main(["launch", "--nproc", "3", "--", *args]) == 0  # 2 initial workers + 1 joiner
    capsys.readouterr()
    sim, real = _export(1, db, capsys), _export(2, db, capsys)
    assert real["events"] == sim["events"] and len(_join_events(real)) == 1
    assert real["config"]["workers"] == 2 and real["environment"]["world_size"] == 3
    assert real["summary"]["runtime"]["transport"]["equals_ledger"] is True
    assert [r["val_loss"] for r in real["rounds"]] == [r["val_loss"] for r in sim["rounds"]]
    assert all(r["replicas_identical"] for r in real["rounds"])


KILLED = [*_set(_set(TINY, "--steps", "6"), "--workers", "3"), "--fault",
          "kill worker 2 at step 3"]  # after boundary 2, inside the phase of steps 3-4


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_a_killed_worker_is_survived_by_the_launched_run_as_the_simulator_runs_it(tmp_path,
                                                                                 capsys):
    db = str(tmp_path / "runs.sqlite")
    assert main(["train", *KILLED, "--db", db]) == 0
    assert main(["launch", "--nproc", "3", "--", "train", *KILLED, "--db", db]) == 0
    capsys.readouterr()
    sim, real = _export(1, db, capsys), _export(2, db, capsys)
    assert real["events"] == sim["events"]
    assert real["summary"]["membership_events"] == sim["summary"]["membership_events"] == \
        [[2, "leave", 2]]
    assert real["summary"]["live_workers_at_end"] == [0, 1]
    assert max(e["round"] for e in real["events"] if e.get("worker") == "worker:2") == 2
    assert real["summary"]["runtime"]["transport"]["equals_ledger"] is True
    assert [r["val_loss"] for r in real["rounds"]] == [r["val_loss"] for r in sim["rounds"]]
    assert all(r["replicas_identical"] for r in real["rounds"])


@pytest.mark.parametrize(("args", "message"), [
    (["train", *KILLED[:-1], "kill worker 0 at step 3"], "worker 0 gathers the run"),
    (["train", *KILLED[:-1], "kill worker 2 at step 4"], "step 4 must be inside an inner phase"),
    (["train", *KILLED[:-1], "kill client 2 at round 3"],
     "train fault 'kill client 2 at round 3' must be 'kill worker W at step T'"),
    (["train", *_set(KILLED, "--eval-every", "1")], "eval_every (1) must equal inner_steps (2)"),
    (["train", *KILLED, "--algorithm", "noloco"], "fault: a killed worker leaves, and noloco"),
    (["train", *TINY, "--membership", "2:join,x:leave 1"],
     "membership entry 'x:leave 1' must be STEP:join or STEP:leave W"),
    (["train", *TINY, "--membership", "3:join"], "membership: membership step 3 is not an "
     "outer-step boundary"),
    (["train", *TINY, "--membership", "2:leave 7"], "names worker 7, which is not live"),
    (["train", *TINY, "--algorithm", "noloco", "--membership", "2:join"],
     "membership: noloco cannot change its workers between syncs"),
    (["launch", "--nproc", "2", "--", "train", *TINY, "--membership", "2:join"],
     "uses 3 worker ids: nproc must be 3 (one process per id); got 2"),
])
def test_membership_mistakes_are_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
