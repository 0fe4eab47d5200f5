"""`lowcomm train --checkpoint-dir ... --resume`: a run continued from the checkpoint of an
earlier step (with the outer all-reduce of CO2 in flight) ends with the uninterrupted run's
model hash, ledger and step records."""

from __future__ import annotations

import json
import shutil

from tests.cli.test_cli_train import TINY

from lowcomm.cli.main import main
from lowcomm.runtime.checkpoint import load

ARGS = ["train", *TINY, "--steps", "6", "--eval-every", "3", "--algorithm", "co2",
        "--checkpoint-every", "1"]


def _export(db, capsys) -> dict:
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_resumed_from_step_4_equals_the_uninterrupted_run(tmp_path, capsys):
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_db, resumed_db = str(tmp_path / "whole.sqlite"), str(tmp_path / "resumed.sqlite")
    assert main([*ARGS, "--checkpoint-dir", str(whole_dir), "--checkpoint-keep", "3",
                 "--db", whole_db]) == 0
    # the directory a run killed during step 5 leaves behind: step 4's checkpoint as last.ckpt
    killed_dir.mkdir()
    shutil.copy(whole_dir / "last.ckpt.2", killed_dir / "last.ckpt")
    point = load(killed_dir)
    assert point.next_round == 5 and point.state["inbox"].pending()  # CO2's sync in flight
    assert main([*ARGS, "--checkpoint-dir", str(killed_dir), "--resume", "--db", resumed_db]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    whole, resumed = _export(whole_db, capsys), _export(resumed_db, capsys)
    assert resumed["status"] == "done" and resumed["summary"]["resumed_from_step"] == 4
    assert resumed["summary"]["final_model_sha256"] == whole["summary"]["final_model_sha256"]
    assert resumed["summary"]["measured"]["peer"] == whole["summary"]["measured"]["peer"]
    assert resumed["events"] == whole["events"]
    strip = [[{k: v for k, v in r.items() if k != "simulator_seconds"} for r in rec["rounds"]]
             for rec in (resumed, whole)]
    assert strip[0] == strip[1] and [r["step"] for r in strip[0]] == [3, 6]


def test_train_resume_with_other_options_is_one_line(tmp_path, capsys):
    directory, db = str(tmp_path / "ck"), str(tmp_path / "runs.sqlite")
    assert main([*ARGS, "--checkpoint-dir", directory, "--db", db]) == 0
    assert main([*ARGS, "--checkpoint-dir", directory, "--resume", "--inner-lr", "0.01",
                 "--db", db]) == 2
    assert "config.inner_lr: 0.001 there, 0.01 here" in capsys.readouterr().err
