"""`lowcomm run --fault ...`: injected faults on the command line, recorded and reported."""

import json

import pytest

from lowcomm.cli.main import main

TINY = ["--dataset", "digits", "--clients", "6", "--clients-per-round", "6", "--rounds", "2",
        "--model", "logreg", "--partition", "iid"]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.sqlite")


def test_faults_from_flags_and_yaml_are_recorded_and_reported(db, tmp_path, capsys):
    config = tmp_path / "faults.yaml"
    config.write_text("fault:\n  - corrupt nan client 0 at round 1\nmin-cohort: 5\n")
    assert main(["run", "--config", str(config), *TINY, "--fault", "kill client 2 at round 1",
                 "--fault", "stall client 3 at round 2", "--db", db]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "dropouts" in out and "2 timeout, 1 lost" in out
    assert "no server update in rounds [2]" in out and "min_cohort" in out
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    # the flags add to nothing from the file: flags win, as for every option
    assert record["config"]["fault"] == ["kill client 2 at round 1", "stall client 3 at round 2"]
    drops = [(e["round"], e["party"], e["reason"]) for e in record["events"]
             if e["type"] == "DropEvent"]
    assert drops == [(1, "client:2", "timeout"), (2, "client:2", "lost"),
                     (2, "client:3", "timeout")]
    assert [(r["dropped"], r["updated"]) for r in record["rounds"]] == [(1, True), (2, False)]
    assert record["summary"]["dropouts"] == {"total": 3, "by_reason": {"timeout": 2, "lost": 1},
                                             "rounds_without_update": [2]}
    # a YAML list alone is read as well
    assert main(["run", "--config", str(config), *TINY, "--db", db, "--no-store"]) == 0
    assert "1 non-finite" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "kill client two at round 1"], "cannot read fault 'kill client two at round 1'"),
    (["--fault", "kill client 6 at round 1"], "there are only 6 clients"),
    (["--fault", "stall client 1 at round 3"], "the run has rounds 1 to 2"),
    (["--min-cohort", "7"], "min_cohort must be in [1, clients_per_round=6]; got 7"),
    (["--max-upload-nbytes", "0"], "max_upload_nbytes must be >= 1; got 0"),
    (["--round-timeout-seconds", "-1"], "round_timeout_seconds must be > 0; got -1.0"),
])
def test_fault_mistakes_are_one_line_errors(args, message, db, capsys):
    assert main(["run", *TINY, *args, "--db", db]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_launch_expects_the_ranks_a_kill_fault_ends(tmp_path):
    from lowcomm.cli.launch import _killed_ranks

    run = ["run", *TINY, "--fault", "kill client 3 at round 1", "--fault",
           "stall client 2 at round 2", "--round-timeout-seconds", "2"]
    assert _killed_ranks(run, 3) == {2}  # client 3 lives on rank 1 + 3 % 2
    config = tmp_path / "f.yaml"
    config.write_text("fault: kill client 4 at round 1\n")
    assert _killed_ranks(["run", *TINY, "--config", str(config)], 4) == {2}
    assert _killed_ranks(["run", *TINY], 3) == set()
    assert _killed_ranks(["train", "--steps", "2"], 3) == set()


def test_a_distributed_stall_needs_a_deadline():
    from lowcomm.cli.build import build_run
    from lowcomm.cli.config import ConfigError, RunConfig
    from lowcomm.cli.run import fault_plan

    c = RunConfig(dataset="digits", clients=6, clients_per_round=6, rounds=2, model="logreg",
                  partition="iid", runtime="distributed", fault=("stall client 1 at round 1",))
    with pytest.raises(ConfigError, match="needs --round-timeout-seconds"):
        fault_plan(c, build_run(c))
