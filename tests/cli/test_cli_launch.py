"""`lowcomm launch`: `lowcomm train` and `lowcomm run` as local processes over torch.distributed,
stored like the simulator's run with the same ledger; bad input as one line before any process
starts."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
from tests.cli.test_cli import TINY as TINY_RUN
from tests.cli.test_cli_train import TINY

from lowcomm.cli.main import main

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def _export(run_id: int, db: str, capsys) -> dict:
    assert main(["export", str(run_id), "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_launch_stores_the_simulators_ledger_and_marks_the_record(tmp_path, capsys):
    db = str(tmp_path / "runs.sqlite")
    args = ["train", *TINY, "--algorithm", "ddp", "--db", db]  # TINY has --workers 2
    assert main(args) == 0
    assert main(["launch", "--nproc", "2", "--", *args]) == 0
    capsys.readouterr()
    sim, real = _export(1, db, capsys), _export(2, db, capsys)
    assert real["events"] == sim["events"] and len(real["events"]) > 0
    assert real["config"]["runtime"] == "distributed" and sim["config"]["runtime"] == "simulator"
    assert real["environment"]["runtime"] == "torch.distributed"
    assert real["environment"]["world_size"] == 2
    runtime = real["summary"]["runtime"]
    assert runtime["transport"]["equals_ledger"] is True
    assert runtime["transport"]["payload_sent_nbytes"] == \
        sim["summary"]["measured"]["peer"]["total_nbytes"]
    assert real["summary"]["final_val_loss"] == sim["summary"]["final_val_loss"]
    assert [r["val_loss"] for r in real["rounds"]] == [r["val_loss"] for r in sim["rounds"]]
    assert "wall_seconds" in real["summary"]["measured"]


def test_launch_run_serves_the_clients_from_other_ranks_with_the_simulators_ledger(
        tmp_path, capsys):
    db = str(tmp_path / "runs.sqlite")
    args = ["run", *TINY_RUN, "--uplink", "qsgd:15", "--execution", "sequential", "--db", db]
    assert main(args) == 0
    assert main(["launch", "--nproc", "3", "--", *args]) == 0
    capsys.readouterr()
    sim, real = _export(1, db, capsys), _export(2, db, capsys)
    assert real["status"] == "done"
    assert real["events"] == sim["events"] and len(real["events"]) > 0
    assert real["config"]["runtime"] == "distributed" and sim["config"]["runtime"] == "simulator"
    assert real["environment"]["world_size"] == 3
    runtime = real["summary"]["runtime"]
    assert runtime["transport"]["equals_ledger"] is True
    assert runtime["transport"]["payload_sent_nbytes"] == \
        sim["summary"]["measured"]["bytes_total"]
    assert len(runtime["transport"]["per_rank"]) == 3
    assert real["summary"]["final_test_loss"] == pytest.approx(sim["summary"]["final_test_loss"],
                                                              rel=1e-6)
    assert [r["bytes_up"] for r in real["rounds"]] == [r["bytes_up"] for r in sim["rounds"]]
    assert "wall_seconds" in real["summary"]["measured"]
    assert main(["show", "2", "--db", db]) == 0  # the summary table of a distributed run
    shown = capsys.readouterr().out
    assert "bytes at the transport" in shown and "DIFFERENT" not in shown


@pytest.mark.parametrize(("args", "message"), [
    (["launch", "--nproc", "3", "--", "train", "--workers", "2"],
     "workers (2) must equal nproc (3)"),
    (["launch", "--nproc", "2", "--", "models"], "launch runs `train` (data-centre training) "
     "or `run`"),
    (["launch", "--nproc", "1", "--", "run"], "nproc must be >= 2 for run (the server and"),
    (["launch", "--nproc", "3", "--", "run", "--execution", "processes"],
     "execution=processes does not run distributed"),
    (["launch", "--nproc", "3", "--", "run", "--runtime", "simulator"],
     "launch runs runtime=distributed"),
    (["launch", "--nproc", "3", "--", "run", "--rounds", "0"], "rounds must be >= 1; got 0"),
    (["run", "--runtime", "distributed"], "runtime=distributed needs RANK, WORLD_SIZE"),
    (["launch", "--nproc", "2", "--", "train", "--runtime", "simulator"],
     "launch runs runtime=distributed"),
    (["launch", "--nproc", "2", "--", "train", "--inner-steps", "0"],
     "inner_steps must be >= 1; got 0"),
    (["train", "--runtime", "distributed"], "runtime=distributed needs RANK, WORLD_SIZE"),
])
def test_bad_input_is_one_line_before_any_process_starts(args, message, monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE", "MASTER_PORT", "LOWCOMM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
