"""`lowcomm launch --nproc 3 -- run ...` (SCAFFOLD: the client ranks hold the control
variates) whose server rank is killed with SIGKILL fails with a clear error, and restarted with
--resume ends where an uninterrupted launch ends: the same final model (hash of its bytes),
ledger events and rounds in the stored record."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch.distributed as dist
from tests.cli.test_cli_resume import TINY, _checkpointed_round

from lowcomm.cli.main import main
from lowcomm.runtime.distributed import free_port

pytestmark = [
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="torch.distributed with gloo is not available"),
    pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="finds rank 0 through /proc"),
]

KILL_AFTER_ROUND = 1
ARGS = [*TINY, "--execution", "sequential"]  # TINY: run ... --checkpoint-every 1


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on `port` (any address)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    return inodes


def _children(parent: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # after "pid (name) state"
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            continue
        if ppid == parent:
            found.append(int(entry))
    return found


def _server_rank_pid(launcher: int, port: int) -> int | None:
    """The child of the launcher that is rank 0: the one listening on the rendezvous port."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    for pid in _children(launcher):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except (FileNotFoundError, ProcessLookupError):
            continue
        if links & inodes:
            return pid
    return None


def _kill_server_once_checkpointed(args, directory, rounds, *, nproc: int = 3,
                                   after: int = KILL_AFTER_ROUND) -> tuple[int | None, str]:
    """Launch the run (or a train: its steps), SIGKILL its rank 0 once a checkpoint of round
    >= `after` exists; (the round it was killed after, or None if it finished first; its
    stderr)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lowcomm", "launch", "--nproc", str(nproc),
                             "--master-port", str(port), "--", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        server = None
        while proc.poll() is None and (server is None
                                       or _checkpointed_round(directory) < after):
            server = server or _server_rank_pid(proc.pid, port)
            time.sleep(0.005)  # polling, not a threshold: the test waits as long as it takes
        if proc.poll() is None:
            os.kill(server, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    if proc.returncode == 0:
        return None, err
    killed_after = _checkpointed_round(directory)
    return (killed_after if killed_after < rounds else None), err


def _record(db, capsys) -> dict:
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_server_rank_sigkilled_then_resumed_equals_the_uninterrupted_launch(tmp_path, capsys):
    for rounds in (6, 30, 150):  # longer only if the run finished before the kill landed
        directory = tmp_path / f"ck{rounds}"
        args = [*ARGS, "--rounds", str(rounds), "--checkpoint-dir", str(directory)]
        killed_after, err = _kill_server_once_checkpointed(args, directory, rounds)
        if killed_after is not None:
            break
    else:
        pytest.fail("every run finished before it could be killed")
    assert "error: rank 0: was killed by SIGKILL without a result" in err
    assert f"the checkpoints of the run are in {directory}: the same command with --resume" in err
    assert KILL_AFTER_ROUND <= killed_after < rounds
    assert (directory / "rank1.ckpt").is_file() and (directory / "rank2.ckpt").is_file()
    resumed_db, whole_db = str(tmp_path / "resumed.sqlite"), str(tmp_path / "whole.sqlite")
    assert main(["launch", "--nproc", "3", "--", *args, "--resume", "--db", resumed_db]) == 0
    assert main(["launch", "--nproc", "3", "--", *ARGS, "--rounds", str(rounds),
                 "--db", whole_db]) == 0
    resumed, whole = _record(resumed_db, capsys), _record(whole_db, capsys)
    assert resumed["status"] == "done" and resumed["summary"]["resumed_from_round"] == killed_after
    assert resumed["summary"]["final_params_sha256"] == whole["summary"]["final_params_sha256"]
    assert resumed["events"] == whole["events"] and len(whole["events"]) > 0
    measured = [{k: v for k, v in r["summary"]["measured"].items() if k != "wall_seconds"}
                for r in (resumed, whole)]
    assert measured[0] == measured[1] and measured[0]["bytes_total"] > 0
    assert [r["round"] for r in resumed["rounds"]] == list(range(1, rounds + 1))
    strip = [[{k: v for k, v in r.items() if k != "simulator_seconds"} for r in rec["rounds"]]
             for rec in (resumed, whole)]
    assert strip[0] == strip[1]
    runtime = resumed["summary"]["runtime"]
    assert runtime["transport"]["equals_ledger"] is True and runtime["resumed_ledger_events"] > 0


def test_resume_of_a_launch_without_a_checkpoint_is_an_error_on_every_rank(tmp_path):
    directory = str(tmp_path / "none")
    done = subprocess.run([sys.executable, "-m", "lowcomm", "launch", "--nproc", "3", "--",
                           *ARGS, "--rounds", "2", "--checkpoint-dir", directory, "--resume",
                           "--db", str(tmp_path / "runs.sqlite")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert sum(f"no checkpoint to resume from in {directory}" in line for line in lines) == 1
    assert sum(f"rank 0 could not resume from {directory}" in line for line in lines) == 2
    assert all(line.startswith("error: ") for line in lines)


def test_checkpoints_of_a_distributed_run_refuse_a_kill_fault(tmp_path, capsys):
    assert main(["launch", "--nproc", "3", "--", *ARGS, "--rounds", "2",
                 "--checkpoint-dir", str(tmp_path), "--fault", "kill client 1 at round 1",
                 "--round-timeout-seconds", "30"]) == 2
    assert "does not go with a kill fault" in capsys.readouterr().err
