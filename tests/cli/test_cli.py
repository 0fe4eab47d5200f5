import csv
import io
import json
import subprocess
import sys

import pytest

from lowcomm.cli.config import RunConfig, option_specs
from lowcomm.cli.main import main

TINY = ["--dataset", "digits", "--clients", "6", "--clients-per-round", "3", "--rounds", "2",
        "--model", "logreg", "--partition", "iid"]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.sqlite")


def test_run_prints_the_ledger_table_and_stores_a_record(db, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("dataset: digits\nclients: 6\nclients-per-round: 3\nrounds: 5\n"
                      "model: logreg\npartition: iid\nname: tiny\n")
    assert main(["run", "--config", str(config), "--rounds", "2", "--db", db]) == 0
    out = capsys.readouterr().out
    for needle in ("test accuracy", "bytes up", "measured", "counted", "modeled", "carbon"):
        assert needle in out
    assert main(["runs", "--db", db]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["show", "1", "--db", db]) == 0
    assert "rounds" in capsys.readouterr().out
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "done" and record["config"]["rounds"] == 2  # the flag won
    assert len(record["rounds"]) == 2
    up = sum(e["nbytes"] for e in record["events"] if e["type"] == "CommEvent"
             and e["dst"] == "server")
    assert up == record["summary"]["measured"]["bytes_up"] > 0
    assert record["summary"]["modeled"]["modeled_seconds"] > 0
    assert "vectorized" in record["summary"]["execution"]  # auto picks it for logreg
    out_csv = tmp_path / "rounds.csv"
    assert main(["export", "1", "--db", db, "--format", "csv", "-o", str(out_csv)]) == 0
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [int(r["round"]) for r in rows] == [1, 2]


@pytest.mark.parametrize(("args", "message"), [
    (["--clients-per-round", "7"], "clients_per_round (7) must not exceed clients (6)"),
    (["--partition", "dirichlet", "--alpha", "0"], "alpha must be > 0; got 0.0"),
    (["--partition", "dirichlet", "--alpha", "-1"], "alpha must be > 0; got -1.0"),
    (["--rounds", "zero"], "rounds must be an integer; got 'zero'"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/lowcomm-data", "--partition", "iid"],
     "/nonexistent/lowcomm-data"),
    (["--dataset", "mnist1d", "--model", "cnn"], "model=cnn does not fit dataset=mnist1d"),
    (["--model", "char_lstm"], "char_lstm goes with dataset=shakespeare"),
    (["--network", "mobile"], "--uplink-ratio"),
    (["--execution", "parallel"], "execution must be one of auto, sequential, vectorized"),
    (["--ray-actors", "0"], "ray_actors must be >= 1; got 0"),
    (["--ray-address", "auto"], "ray_address is used by execution=ray only; got execution=auto"),
    (["--execution", "ray", "--runtime", "distributed"],
     "execution=ray runs the simulator's clients on Ray actors; it does not combine with "
     "runtime=distributed"),
    (["--algorithm", "scaffold"], "algorithm=scaffold runs K local steps: set local_steps"),
    (["--uplink", "topk:2"], "fraction must be in (0, 1]; got 2.0"),
    (["--uplink", "zip:3"], "unknown codec 'zip'"),
    (["--uplink", "qsgd"], "codec qsgd takes 1 number(s); got 0"),
    (["--uplink", "topk:0.1:colour=red"], "unknown option(s) ['colour']"),
    (["--downlink", "powersgd:2"], "a broadcast codec must be stateless"),
    (["--uplink", "topk:0.1,zip"], "unknown wrapper 'zip'"),
    (["--scallion-alpha", "1.5"], "scallion_alpha must be in (0, 1]; got 1.5"),
    (["--scafcom-beta", "0"], "scafcom_beta must be in (0, 1]; got 0.0"),
    (["--fedamd-anchor-prob", "1.5"], "fedamd_anchor_prob must be in (0, 1]; got 1.5"),
    (["--algorithm", "fedamd"], "algorithm=fedamd runs K local steps: set local_steps"),
    (["--algorithm", "fedamd", "--local-steps", "1"], "local_steps must be >= 2"),
    (["--algorithm", "scafcom", "--local-steps", "3", "--uplink", "topk:0.1,ef"],
     "algorithm=scafcom: codec 'topk+ef' keeps per-client state"),
])
def test_user_mistakes_are_one_line_errors_with_exit_code_2(args, message, db, capsys):
    assert main(["run", *TINY, *args, "--db", db]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_missing_data_directory_names_the_setting(db, capsys, monkeypatch):
    monkeypatch.delenv("LOWCOMM_DATA", raising=False)
    assert main(["run", *TINY, "--dataset", "fashion_mnist", "--db", db]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "LOWCOMM_DATA" in err and "--data-dir" in err


def test_config_file_mistakes(tmp_path, db, capsys):
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("rounds: 2\nroundz: 3\n")
    assert main(["run", "--config", str(bad_key), "--db", db]) == 2
    assert "unknown option 'roundz'" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.yaml"), "--db", db]) == 2
    assert "does not exist" in capsys.readouterr().err
    not_mapping = tmp_path / "b.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    assert main(["run", "--config", str(not_mapping), "--db", db]) == 2
    assert "mapping" in capsys.readouterr().err


def test_records_commands_on_a_missing_database_and_run(tmp_path, capsys):
    assert main(["runs", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no run database" in capsys.readouterr().err
    db = str(tmp_path / "runs.sqlite")
    assert main(["run", *TINY, "--rounds", "1", "--db", db]) == 0
    capsys.readouterr()
    for command in (["show", "7"], ["export", "7"]):
        assert main([*command, "--db", db]) == 2
        assert "no run with id 7" in capsys.readouterr().err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for f, _ in option_specs():
        assert "--" + f.name.replace("_", "-") in text
    assert len(option_specs()) == len(RunConfig.__dataclass_fields__)
    for command in ("runs", "show", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: lowcomm " + command in capsys.readouterr().out


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lowcomm.cli.main", "run", "--clients", "0",
         "--db", str(tmp_path / "x.sqlite")], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "clients must be >= 1; got 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_models_lists_parameters_and_counted_flops(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "199,210" in out and "6,603,710" in out  # the 2NN and the LEAF FEMNIST CNN
    assert "34,423,808" in out  # forward FLOPs per sample of the FEMNIST CNN (2 x thop's MACs)


def test_an_interrupted_run_keeps_its_rounds_and_ledger(db, monkeypatch, capsys):
    import lowcomm.cli.run as run_module

    real_simulate = run_module.simulate

    def interrupted(*args, on_round, ledger, **kwargs):
        def stop_after_first(record):
            on_round(record)
            raise KeyboardInterrupt

        return real_simulate(*args, on_round=stop_after_first, ledger=ledger, **kwargs)

    monkeypatch.setattr(run_module, "simulate", interrupted)
    assert main(["run", *TINY, "--rounds", "3", "--db", db]) == 130
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "interrupted"
    assert [r["round"] for r in record["rounds"]] == [1]
    assert record["events"] and all(e["round"] == 1 for e in record["events"])


@pytest.mark.parametrize("args", [
    ["--algorithm", "scaffold", "--local-steps", "3"],
    ["--algorithm", "simplified_scaffold", "--local-steps", "3"],
    ["--algorithm", "scallion", "--local-steps", "3", "--uplink", "randk:0.2"],
    ["--algorithm", "fedprox", "--prox-mu", "0.1"],
    ["--uplink", "topk:0.2+kmeans:3+huffman", "--downlink", "fp16"],
])
def test_algorithms_and_codecs_from_the_command_line(args, db, capsys):
    assert main(["run", *TINY, *args, "--db", db]) == 0
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "done"
    algorithm = record["summary"]["algorithm"]
    assert algorithm["name"] == (args[1] if args[0] == "--algorithm" else "fedavg")
    uplink = args[args.index("--uplink") + 1] if "--uplink" in args else None
    if uplink == "randk:0.2":
        assert algorithm["uplink_codec"] == "randk"
    if uplink and "huffman" in uplink:
        assert algorithm["uplink_codec"] == "topk+kmeans+huffman"
        assert algorithm["downlink_codec"] == "fp16"


@pytest.mark.parametrize("args", [
    ["--algorithm", "scafcom", "--uplink", "topk:0.1", "--scafcom-beta", "0.5"],
    ["--algorithm", "fedamd", "--fedamd-anchor-prob", "0.5"],
])
def test_scafcom_and_fedamd_run_on_the_bundled_default_data(args, db, capsys):
    n = 6  # the default dataset (the bundled MNIST subset), a small federation
    common = ["--clients", str(n), "--clients-per-round", "3", "--rounds", "2", "--model",
              "logreg", "--local-steps", "3", "--eval-samples", "200"]
    assert main(["run", *common, *args, "--db", db]) == 0
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "done" and record["config"]["dataset"] == "mnist_subset"
    algorithm = record["summary"]["algorithm"]
    assert algorithm["name"] == args[1]
    assert record["summary"]["rounds"] == 2
    uploads = [e for e in record["events"] if e["type"] == "CommEvent" and e["dst"] == "server"]
    if args[1] == "scafcom":
        assert algorithm["uplink_codec"] == "topk" and algorithm["beta"] == 0.5
        assert [r["round"] for r in record["rounds"]] == [1, 2]
    else:  # round 0: every client's gradient at x_0, stored and priced like any round
        assert algorithm["anchor_prob"] == 0.5
        assert [r["round"] for r in record["rounds"]] == [0, 1, 2]
        assert sorted(e["src"] for e in uploads if e["round"] == 0) == [
            f"client:{i}" for i in range(n)]
    assert sum(e["nbytes"] for e in uploads) == record["summary"]["measured"]["bytes_up"]


def test_execution_ray_without_ray_installed_says_how_to_get_it(db, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    assert main(["run", *TINY, "--execution", "ray", "--db", db]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "execution=ray" in err and "pip install 'lowcomm[ray]'" in err
