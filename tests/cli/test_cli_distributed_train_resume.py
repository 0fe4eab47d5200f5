"""`lowcomm launch --nproc 2 -- train ...` (CO2: its outer all-reduce is in flight across step
boundaries) whose rank 0 is killed with SIGKILL fails with a clear error, and restarted with
--resume ends where an uninterrupted launch ends: the same final model hash, ledger events,
measured traffic and step records in the stored record."""

import os

import pytest
import torch.distributed as dist
from tests.cli.test_cli_distributed_resume import _kill_server_once_checkpointed, _record
from tests.cli.test_cli_train import TINY

from lowcomm.cli.main import main
from lowcomm.runtime.checkpoint import load

pytestmark = [
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="finds rank 0 through /proc"),
]

ARGS = ["train", *TINY, "--algorithm", "co2", "--checkpoint-every", "1"]  # TINY: 2 workers
KILL_AFTER_STEP = 2  # from step 2 to the last but one, CO2 has a sync in flight


def test_rank_0_sigkilled_then_resumed_equals_the_uninterrupted_launch(tmp_path, capsys):
    for steps in (6, 30, 150):  # longer only if the run finished before the kill landed
        directory = tmp_path / f"ck{steps}"
        args = [*ARGS, "--steps", str(steps), "--checkpoint-dir", str(directory)]
        killed_after, err = _kill_server_once_checkpointed(args, directory, steps, nproc=2,
                                                           after=KILL_AFTER_STEP)
        if killed_after is not None:
            break
    else:
        pytest.fail("every run finished before it could be killed")
    assert "error: rank 0: was killed by SIGKILL without a result" in err
    assert f"the checkpoints of the run are in {directory}: the same command with --resume" in err
    assert KILL_AFTER_STEP <= killed_after < steps
    assert load(directory).state["inbox"].pending()  # the resume must restore what is in flight
    assert (directory / "rank1.ckpt").is_file()
    resumed_db, whole_db = str(tmp_path / "resumed.sqlite"), str(tmp_path / "whole.sqlite")
    assert main(["launch", "--nproc", "2", "--", *args, "--resume", "--db", resumed_db]) == 0
    assert main(["launch", "--nproc", "2", "--", *ARGS, "--steps", str(steps),
                 "--db", whole_db]) == 0
    resumed, whole = _record(resumed_db, capsys), _record(whole_db, capsys)
    assert resumed["status"] == "done" and resumed["summary"]["resumed_from_step"] == killed_after
    assert resumed["summary"]["final_model_sha256"] == whole["summary"]["final_model_sha256"]
    assert resumed["events"] == whole["events"] and len(whole["events"]) > 0
    assert resumed["summary"]["measured"]["peer"] == whole["summary"]["measured"]["peer"]
    assert [r["round"] for r in resumed["rounds"]] == list(range(2, steps + 1, 2))
    strip = [[{k: v for k, v in r.items() if k != "simulator_seconds"} for r in rec["rounds"]]
             for rec in (resumed, whole)]
    assert strip[0] == strip[1]
    runtime = resumed["summary"]["runtime"]
    assert runtime["transport"]["equals_ledger"] is True
    assert runtime["resumed_from_step"] == killed_after
