"""`lowcomm analytics frequency|roc`: tables, stored records with a ledger of every report's
measured bytes, plots, and one-line errors with exit status 2."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from lowcomm.analytics import report_bits
from lowcomm.cli import analytics as analytics_cli
from lowcomm.cli.analytics_config import ORACLES
from lowcomm.cli.main import main
from lowcomm.core import numpy_rng

SMALL = ["--users", "400", "--k", "64"]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.sqlite")


def _export(db, capsys, run_id=1) -> dict:
    capsys.readouterr()
    assert main(["export", str(run_id), "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_frequency_prints_tables_and_stores_a_record_with_one_event_per_user(db, capsys):
    assert main(["analytics", "frequency", "--oracle", "grr", "--epsilon", "2", *SMALL,
                 "--name", "tiny", "--db", db]) == 0
    out = capsys.readouterr().out
    for needle in ("top 10 items", "MSE / theory", "bits per user", "measured", "modeled",
                   "stored as run 1"):
        assert needle in out
    record = _export(db, capsys)
    assert record["status"] == "done" and record["config"]["command"] == "analytics frequency"
    summary, events = record["summary"], record["events"]
    assert summary["users"] == summary["accepted"] == 400 and summary["rejected"] == {}
    assert len(events) == 400 and {e["src"] for e in events} == {f"client:{i}"
                                                                 for i in range(400)}
    assert all(e["dst"] == "server" and e["round"] == 1 and e["codec"] == "grr"
               for e in events)
    # every event holds the measured length of that user's serialized report
    oracle = analytics_cli.ORACLES["grr"](2.0, 64)
    one = report_bits(oracle, oracle.encode(np.zeros(1, dtype=np.int64),
                                            numpy_rng(0, purpose="test")))
    assert {e["nbytes"] for e in events} == {one.wire_bits // 8}
    assert summary["measured"]["bytes_up"] == sum(e["nbytes"] for e in events)
    assert summary["bits"]["wire_measured"] == one.wire_bits
    assert summary["rounds"] == 1 and record["rounds"][0]["users"] == 400
    assert summary["modeled"]["modeled_seconds"] > 0
    assert 0.3 < summary["mse_over_theory"] < 3  # 400 users at k = 64: loose but not absurd
    assert main(["runs", "--db", db]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["show", "1", "--db", db]) == 0
    assert "MSE / theory" in capsys.readouterr().out


@pytest.mark.parametrize("oracle", ORACLES)
def test_every_oracle_runs_from_the_command_line(oracle, db, capsys):
    epsilon = "4" if oracle == "rappor" else "1"
    assert main(["analytics", "frequency", "--oracle", oracle, "--epsilon", epsilon, *SMALL,
                 "--db", db]) == 0
    summary = _export(db, capsys)["summary"]
    assert summary["oracle"]["name"] == oracle
    assert summary["accepted"] == 400 and summary["rejected"] == {}
    assert summary["bits"]["wire_measured"] == summary["bits"]["wire"]  # all reports alike
    assert len(summary["estimates"]) == 64


def test_same_seed_same_run_other_seed_other_run(db, capsys):
    args = ["analytics", "frequency", "--oracle", "olh", *SMALL, "--db", db]
    assert main([*args, "--seed", "3"]) == 0
    assert main([*args, "--seed", "3"]) == 0
    assert main([*args, "--seed", "4"]) == 0
    first, again, other = (_export(db, capsys, i)["summary"] for i in (1, 2, 3))
    assert first["estimates"] == again["estimates"]
    assert first["true_frequencies"] == again["true_frequencies"]
    assert first["estimates"] != other["estimates"]


def test_spike_and_zipf_data(db, capsys):
    assert main(["analytics", "frequency", "--data", "spike", "--spike-item", "7", *SMALL,
                 "--oracle", "hr", "--epsilon", "3", "--db", db]) == 0
    summary = _export(db, capsys)["summary"]
    assert summary["top_items"][0]["item"] == 7 and summary["top_items"][0]["true"] == 1.0
    assert summary["data"]["name"] == "spike(item=7)"
    assert abs(summary["top_items"][0]["estimate"] - 1.0) < 6 * summary["top_items"][0]["sd"]


def _baskets(tmp_path, name="retail.dat.gz", text="5 9 9\n9 2\n\n2 9 11\n11\n3 5\n") -> str:
    (tmp_path / "itemsets").mkdir(exist_ok=True)
    with gzip.open(tmp_path / "itemsets" / name, "wt") as f:
        f.write(text * 40)
    return str(tmp_path)


def test_market_basket_data_from_the_data_directory(tmp_path, db, capsys):
    data_dir = _baskets(tmp_path)
    assert main(["analytics", "frequency", "--data", "retail", "--data-dir", data_dir,
                 "--k", "4", "--oracle", "oue", "--db", db]) == 0
    summary = _export(db, capsys)["summary"]
    assert summary["users"] == 200  # 5 non-empty baskets, 40 times
    labels = [row["label"] for row in summary["top_items"]]
    # baskets holding: 9 in 3; 2, 5, 11 in 2 (ties: smaller id first); 3 in 1
    assert set(labels) == {9, 2, 5, "other"}  # the top k-1 = 3 items, then "other"
    assert summary["data"]["distinct_items"] == 5


def test_real_market_baskets_when_present(db, capsys):
    # $LOWCOMM_DATA, else ../shared/data relative to the repository root
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    root = Path(os.environ.get("LOWCOMM_DATA") or default)
    if not (root / "itemsets" / "kosarak_partial_36682.dat.gz").exists():
        pytest.skip(f"{root}/itemsets absent (set LOWCOMM_DATA to run this test)")
    assert main(["analytics", "frequency", "--data", "kosarak", "--data-dir", str(root),
                 "--oracle", "hr", "--epsilon", "2", "--db", db]) == 0
    summary = _export(db, capsys)["summary"]
    assert summary["users"] == 36_682 and summary["accepted"] == 36_682


def test_roc_prints_auc_and_area_error_and_stores_its_ledger(db, capsys):
    assert main(["analytics", "roc", "--mode", "ddp", "--epsilon", "1", "--height", "4",
                 "--clients", "10", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "ROC AUC" in out and "ROC area error" in out and "0.9941" in out  # exact AUC
    record = _export(db, capsys)
    summary, events = record["summary"], record["events"]
    assert len(events) == 10 and all(e["channel"] == "roc-report" for e in events)
    assert {e["nbytes"] for e in events} == {279}  # h = 4: 248 bytes of counts + 31 framing
    assert summary["bits"]["analytic"] == 2 * 31 * 32
    assert 0 <= summary["roc_area_error"] <= 1
    assert main(["analytics", "roc", "--mode", "exact", "--height", "5", "--db", db]) == 0
    exact = _export(db, capsys, 2)["summary"]
    assert abs(exact["roc_auc_error"]) <= exact["binning_auc_bound"] + 1e-12  # no noise
    assert main(["show", "2", "--db", db]) == 0
    assert "binning bound" in capsys.readouterr().out


def test_plots_are_written(tmp_path, capsys):
    for command, plot in ((["frequency", *SMALL], tmp_path / "f.png"),
                          (["roc", "--height", "3"], tmp_path / "roc.png")):
        assert main(["analytics", *command, "--plot", str(plot), "--no-store"]) == 0
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_matplotlib_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["analytics", "frequency", *SMALL, "--plot", str(tmp_path / "f.png"),
                 "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["frequency", "--oracle", "zzz"], "oracle must be one of grr, oue, sue"),
    (["frequency", "--epsilon", "0"], "epsilon must be > 0; got 0.0"),
    (["frequency", "--epsilon", "-2"], "epsilon must be > 0; got -2.0"),
    (["frequency", "--k", "1"], "k must be >= 2; got 1"),
    (["frequency", "--users", "0"], "users must be >= 1; got 0"),
    (["frequency", "--epsilon", "big"], "epsilon must be a number; got 'big'"),
    (["frequency", "--data", "mushroom"], "data must be one of zipf, spike, retail, kosarak"),
    (["frequency", "--data", "retail", "--data-dir", "/nonexistent/lowcomm-data"],
     "/nonexistent/lowcomm-data"),
    (["frequency", "--spike-item", "64", "--k", "64"], "spike_item must be in [0, 64); got 64"),
    (["frequency", "--plot", "/nonexistent/dir/f.png"], "the folder of /nonexistent/dir/f.png"),
    (["frequency", "--colour", "red"], "unrecognized arguments"),
    (["roc", "--epsilon", "0"], "epsilon must be > 0; got 0.0"),
    (["roc", "--mode", "central"], "mode must be one of exact, ddp, ldp; got 'central'"),
    (["roc", "--height", "0"], "height must be in 1..20; got 0"),
])
def test_bad_input_is_one_line_naming_the_value_with_exit_code_2(args, message, db, capsys):
    if "unrecognized" in message:  # argparse's own error: usage, then the message
        with pytest.raises(SystemExit) as exit_info:
            main(["analytics", *args, "--db", db])
        assert exit_info.value.code == 2
    else:
        assert main(["analytics", *args, "--db", db]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    if "unrecognized" not in message:
        assert len(err.strip().splitlines()) == 1


def test_a_missing_data_directory_names_the_setting(db, monkeypatch, capsys):
    monkeypatch.delenv("LOWCOMM_DATA", raising=False)
    assert main(["analytics", "frequency", "--data", "kosarak", "--db", db]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "LOWCOMM_DATA" in err and "--data-dir" in err
    assert "itemsets/kosarak_partial_36682.dat.gz" in err


def test_yaml_config_and_an_interrupted_run_keeps_its_ledger(tmp_path, db, monkeypatch, capsys):
    config = tmp_path / "f.yaml"
    config.write_text("oracle: hm\nusers: 300\nk: 32\nepsilon: 2\n")
    assert main(["analytics", "frequency", "--config", str(config), "--epsilon", "3",
                 "--db", db]) == 0
    record = _export(db, capsys)
    assert record["config"]["oracle"] == "hm" and record["config"]["epsilon"] == 3.0
    real = analytics_cli.aggregate_reports

    def interrupted(oracle, stream):
        for index, _ in enumerate(stream):
            if index == 99:
                raise KeyboardInterrupt
        return real(oracle, [])

    monkeypatch.setattr(analytics_cli, "aggregate_reports", interrupted)
    assert main(["analytics", "frequency", "--config", str(config), "--db", db]) == 130
    record = _export(db, capsys, 2)
    assert record["status"] == "interrupted" and len(record["events"]) == 100


HH = ["analytics", "heavy-hitters", "--users", "4000", "--zipf-items", "60", "--bits", "10",
      "--top", "5", "--epsilon", "4", "--parties", "3"]


@pytest.mark.parametrize("method", ["taps", "per-party-pem", "pem"])
def test_heavy_hitters_store_one_report_event_per_user(method, db, capsys):
    assert main([*HH, "--method", method, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "F1" in out and "NCR" in out and "bits up per user" in out
    record = _export(db, capsys)
    summary, events = record["summary"], record["events"]
    assert summary["kind"] == "analytics/heavy-hitters" and summary["method"] == method
    assert len(events) == summary["users"] == 4000
    assert len({e["src"] for e in events}) == 4000  # every user reports exactly once
    assert all(e["channel"] == f"{method}/report" and e["codec"] == "olh" for e in events)
    # the ledger's bytes are the users' serialized reports: the library measures the same
    assert summary["bits_per_user"]["wire_measured"] == summary["bits_per_user"]["library_wire"]
    # one ledger round per group that answered: each level once (pem) or once per party
    groups = {e["round"] for e in events}
    assert groups == set(range(1, len(summary["levels"]) * (1 if method == "pem" else 3) + 1))
    assert 0 <= summary["f1"] <= 1 and len(summary["found"]) <= 5
    assert summary["f1"] >= 0.6  # 4,000 Zipf users, eps = 4: the heavy items are clear


def test_heavy_hitters_on_basket_ids_and_their_mistakes(tmp_path, db, capsys):
    data_dir = _baskets(tmp_path, text="500 9 9\n9 200\n200 9 1000\n1000\n3 500\n")
    assert main(["analytics", "heavy-hitters", "--data", "retail", "--data-dir", data_dir,
                 "--bits", "10", "--top", "2", "--method", "pem", "--db", db]) == 0
    summary = _export(db, capsys)["summary"]
    assert summary["users"] == 200
    assert {row["item"] for row in summary["truth"]} <= {9, 200, 500, 1000}
    assert main(["analytics", "heavy-hitters", "--data", "retail", "--data-dir", data_dir,
                 "--bits", "9", "--db", db]) == 2
    assert "bits=9 is too few: data=retail has item id 1000" in capsys.readouterr().err
    for args, message in ((["--epsilon", "0"], "epsilon must be > 0; got 0.0"),
                          (["--method", "sfp"], "method must be one of taps, per-party-pem"),
                          (["--oracle", "rappor"], "oracle must be one of"),
                          (["--zipf-items", "2000"], "zipf_items must be in [2, 2^bits = 1024]")):
        assert main([*HH, *args, "--db", db]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
