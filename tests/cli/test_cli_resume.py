"""`lowcomm run` killed with SIGKILL and restarted with --resume ends where an uninterrupted run
ends: the same final model (hash of its bytes), ledger and rounds in the stored record."""

import json
import signal
import subprocess
import sys
import time

import pytest

from lowcomm.cli.main import main
from lowcomm.runtime.checkpoint import CheckpointError, load

# The 2NN runs sequentially here (3 clients x 10 steps a round); the rounds outlast the polling.
TINY = ["run", "--dataset", "digits", "--clients", "6", "--clients-per-round", "3",
        "--model", "mlp_2nn", "--partition", "iid", "--algorithm", "scaffold",
        "--local-steps", "10", "--checkpoint-every", "1"]
KILL_AFTER_ROUND = 2


def _checkpointed_round(directory) -> int:
    """The last round in the directory's checkpoint (0 while there is none yet)."""
    try:
        return load(directory).next_round - 1
    except CheckpointError:  # not yet written (a .tmp may be, which load never reads)
        return 0


def _kill_once_checkpointed(args, directory, rounds) -> int | None:
    """Start the run, SIGKILL it once a checkpoint of round >= KILL_AFTER_ROUND exists; the
    round it was killed after, or None if it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "lowcomm", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and _checkpointed_round(directory) < KILL_AFTER_ROUND:
            time.sleep(0.005)  # polling, not a threshold: the test waits as long as it takes
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()
            return None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    killed_after = _checkpointed_round(directory)
    return killed_after if killed_after < rounds else None


def _record(db, capsys, run_id=None) -> dict:
    capsys.readouterr()
    assert main(["export", str(run_id or 1), "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, capsys):
    for rounds in (8, 40, 200):  # longer only if the run finished before the kill landed
        directory = tmp_path / f"ck{rounds}"
        args = [*TINY, "--rounds", str(rounds), "--checkpoint-dir", str(directory)]
        killed_after = _kill_once_checkpointed(args, directory, rounds)
        if killed_after is not None:
            break
    else:
        pytest.fail("every run finished before it could be killed")
    assert KILL_AFTER_ROUND <= killed_after < rounds
    resumed_db, whole_db = str(tmp_path / "resumed.sqlite"), str(tmp_path / "whole.sqlite")
    assert main([*args, "--resume", "--db", resumed_db]) == 0
    assert f"resumed from round {killed_after}" in capsys.readouterr().out
    assert main([*TINY, "--rounds", str(rounds), "--db", whole_db]) == 0
    resumed, whole = _record(resumed_db, capsys), _record(whole_db, capsys)
    assert resumed["status"] == "done" and resumed["summary"]["resumed_from_round"] == killed_after
    assert resumed["summary"]["final_params_sha256"] == whole["summary"]["final_params_sha256"]
    measured = [{k: v for k, v in r["summary"]["measured"].items() if k != "simulator_seconds"}
                for r in (resumed, whole)]
    assert measured[0] == measured[1] and measured[0]["bytes_total"] > 0
    assert resumed["events"] == whole["events"]
    assert [r["round"] for r in resumed["rounds"]] == list(range(1, rounds + 1))
    strip = [[{k: v for k, v in r.items() if k != "simulator_seconds"} for r in rec["rounds"]]
             for rec in (resumed, whole)]
    assert strip[0] == strip[1]


def test_resume_without_a_checkpoint_or_with_other_options_is_one_line(tmp_path, capsys):
    directory, db = str(tmp_path / "ck"), str(tmp_path / "runs.sqlite")
    args = [*TINY, "--rounds", "2", "--checkpoint-dir", directory, "--db", db]
    assert main([*args, "--resume"]) == 2
    assert "no checkpoint to resume from in" in capsys.readouterr().err
    assert main(args) == 0
    assert main([*args, "--resume", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt was written by a run with other options" in err
    assert "config.lr: 0.05 there, 0.1 here" in err
    assert main(["run", "--resume", "--db", db]) == 2
    assert "resume needs checkpoint_dir" in capsys.readouterr().err


def test_checkpoints_of_a_distributed_train_refuse_what_they_do_not_support(tmp_path, capsys):
    from tests.cli.test_cli_train import TINY as TRAIN

    for extra, flag in ((["--membership", "2:leave 1"], "--membership"),
                        (["--unannounced-leaves"], "--unannounced-leaves")):
        assert main(["train", *TRAIN, "--algorithm", "diloco", *extra, "--checkpoint-dir",
                     str(tmp_path), "--runtime", "distributed",
                     "--db", str(tmp_path / "runs.sqlite")]) == 2
        err = capsys.readouterr().err
        assert f"checkpoint_dir with runtime=distributed does not go with {flag}" in err
        assert len(err.strip().splitlines()) == 1
