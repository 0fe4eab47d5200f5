"""`lowcomm train`: a tiny run end to end, stored and shown, and bad input as one line."""

from __future__ import annotations

import json

import pytest

from lowcomm.cli.main import main

TINY = ["--workers", "2", "--steps", "4", "--inner-steps", "2", "--batch-size", "2",
        "--seq-len", "16", "--layers", "1", "--width", "32", "--heads", "2", "--eval-every",
        "2", "--eval-windows", "8", "--warmup-steps", "1"]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.sqlite")


def test_train_prints_measured_bytes_and_modeled_time_and_stores_a_record(db, tmp_path,
                                                                          capsys):
    config = tmp_path / "train.yaml"
    config.write_text("algorithm: diloco\ncodec: fp16\nname: tiny-diloco\nsteps: 10\n")
    assert main(["train", "--config", str(config), *TINY, "--db", db]) == 0
    out = capsys.readouterr().out
    for needle in ("validation loss", "bytes sent", "peak bytes per sync", "measured",
                   "counted", "modeled", "utilization", "cross-region", "replicas identical"):
        assert needle in out
    assert main(["show", "1", "--db", db]) == 0
    assert "steps" in capsys.readouterr().out
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    summary = record["summary"]
    assert record["config"]["steps"] == 4 and record["config"]["codec"] == "fp16"
    assert summary["algorithm"]["name"] == "diloco" and summary["replicas_identical"]
    sent = sum(e["nbytes"] for e in record["events"] if e["type"] == "CommEvent")
    assert sent == summary["measured"]["peer"]["total_nbytes"] > 0
    assert summary["measured"]["peer"]["collectives"] == {"allreduce": 2}  # steps 2 and 4
    assert [r["step"] for r in record["rounds"]] == [2, 4]
    scenarios = summary["modeled"]["scenarios"]
    assert scenarios["internet"]["modeled_seconds"] > scenarios["datacenter"]["modeled_seconds"]


def test_ddp_sends_h_times_the_bytes_of_diloco(db, capsys):
    totals = {}
    for algorithm in ("ddp", "diloco"):
        assert main(["train", *TINY, "--algorithm", algorithm, "--db", db]) == 0
    capsys.readouterr()
    for run_id, algorithm in ((1, "ddp"), (2, "diloco")):
        assert main(["export", str(run_id), "--db", db]) == 0
        totals[algorithm] = json.loads(capsys.readouterr().out)["summary"]["measured"]["peer"][
            "total_nbytes"]
    assert totals["ddp"] == 2 * totals["diloco"]  # H = 2


def test_noloco_runs_with_its_paper_momentum_and_exchanges_instead_of_all_reducing(db, capsys):
    assert main(["train", *TINY, "--algorithm", "noloco", "--workers", "4", "--db", db]) == 0
    assert "replicas identical" in capsys.readouterr().out
    assert main(["export", "1", "--db", db]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    algorithm, peer = summary["algorithm"], summary["measured"]["peer"]
    assert algorithm["name"] == "noloco" and algorithm["outer_momentum"] == 0.5
    assert algorithm["averaging_strength"] == algorithm["outer_lr"] == 0.7
    assert peer["collectives"] == {"exchange": 4}  # 2 pairs at steps 2 and 4
    assert set(peer["hops"].values()) == {2}
    assert summary["replica_spread"] >= 0


def test_co2_runs_with_its_defaults_and_overlaps_one_allreduce_per_tau_steps(db, capsys):
    assert main(["train", *TINY, "--algorithm", "co2", "--co2-penalty", "0.5", "--db", db]) == 0
    assert "replicas identical" in capsys.readouterr().out
    assert main(["export", "1", "--db", db]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    algorithm, peer = summary["algorithm"], summary["measured"]["peer"]
    assert algorithm["name"] == "co2" and algorithm["outer_momentum"] == 0.5
    assert algorithm["outer_lr"] == 1.0  # the authors' port's, not DiLoCo's 0.7
    assert algorithm["penalty"] == 0.5
    assert peer["collectives"] == {"allreduce": 2}  # tau = 2 over 4 steps
    assert summary["replica_spread"] == 0


def test_streaming_and_eager_diloco_run_from_flags_and_send_what_diloco_sends(db, capsys):
    blocks = ["--layers", "2", "--inner-steps", "4", "--steps", "8"]
    runs = [["--algorithm", "diloco"],
            ["--algorithm", "streaming_diloco", "--fragments", "2", "--overlap-steps", "1",
             "--mixing", "0.5"],
            ["--algorithm", "eager_diloco", "--outer-overlap", "delayed"],
            ["--algorithm", "streaming_diloco", "--fragments", "2", "--overlap-steps", "0",
             "--codec", "fp4"]]
    for extra in runs:
        assert main(["train", *TINY, *blocks, *extra, "--db", db]) == 0
    capsys.readouterr()
    peer = []
    for run_id in range(1, len(runs) + 1):
        assert main(["export", str(run_id), "--db", db]) == 0
        record = json.loads(capsys.readouterr().out)
        peer.append(record["summary"]["measured"]["peer"])
    assert record["config"]["codec"] == "fp4" and record["summary"]["replicas_identical"]
    plain, streaming, eager, low = peer
    assert eager == plain  # the same all-reduces, only applied one phase later
    assert streaming["collectives"] == {"allreduce": 2 * plain["collectives"]["allreduce"]}
    assert 0.45 < streaming["peak_sync_nbytes"] / plain["peak_sync_nbytes"] < 0.55  # P = 2
    assert low["total_nbytes"] < streaming["total_nbytes"] / 6  # 4-bit outer gradients


def test_spsa_sends_k_one_byte_scalars_per_worker_per_step(db, capsys):
    k, n, steps = 3, 2, 4
    assert main(["train", *TINY, "--algorithm", "spsa", "--zo-seeds", str(k), "--zo-lr",
                 "1e-4", "--db", db]) == 0
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    peer = summary["measured"]["peer"]
    assert summary["algorithm"]["name"] == "spsa" and summary["replicas_identical"]
    assert summary["algorithm"]["quantizer"]["nbytes_per_value"] == 1
    assert peer["collectives"] == {"allgather": steps}
    assert peer["total_nbytes"] == steps * n * (n - 1) * (k + 19)  # k bytes + payload framing
    assert set(summary["counted"]["by_kind"]) == {"forward", "zo_axpy", "zo_rng"}


@pytest.mark.parametrize(("args", "message"), [
    (["--inner-steps", "0"], "inner_steps must be >= 1; got 0"),
    (["--algorithm", "streaming_diloco", "--fragments", "2"],
     "dividing the number of transformer blocks (1); got P=2"),
    (["--algorithm", "streaming_diloco", "--fragments", "1", "--overlap-steps", "2"],
     "overlap_steps (tau) must be an integer in [0, H/P) = [0, 2) for H=2, P=1; got 2"),
    (["--mixing", "1.5"], "mixing must be in [0, 1]; got 1.5"),
    (["--outer-overlap", "lazy"], "outer_overlap must be one of eager, delayed"),
    (["--width", "30", "--heads", "4"], "width (30) must be a multiple of heads (4)"),
    (["--algorithm", "fedavg"], "algorithm must be one of ddp, localsgd, diloco, noloco, "
     "streaming_diloco, eager_diloco"),
    (["--network", "lan"], "network must be one of datacenter, cross-region, internet"),
    (["--codec", "topk:0.1,ef"], "needs a stateless codec"),
    (["--outer-momentum", "1"], "outer_momentum must be in [0, 1); got 1.0"),
    (["--dataset", "tiny_shakespeare", "--data-dir", "/nonexistent/lowcomm-data"],
     "/nonexistent/lowcomm-data"),
    (["--seq-len", "100000"], "too short for one window of seq_len=100000"),
    (["--algorithm", "noloco", "--workers", "1"],
     "noloco pairs workers and needs workers >= 2; got 1"),
    (["--algorithm", "noloco", "--averaging-strength", "-1"],
     "averaging_strength must be >= 0; got -1.0"),
    (["--algorithm", "noloco", "--outer-optimizer", "adam"], "noloco has its own outer step"),
    (["--algorithm", "spsa", "--zo-seeds", "0"], "zo_seeds must be >= 1; got 0"),
    (["--algorithm", "spsa", "--zo-lr", "0"], "zo_lr must be a finite number > 0; got 0.0"),
    (["--zo-epsilon", "-0.001"], "zo_epsilon must be a finite number > 0; got -0.001"),
    (["--algorithm", "co2", "--co2-penalty", "-1"],
     "co2_penalty must be a finite number >= 0; got -1.0"),
    (["--algorithm", "co2", "--co2-clip-threshold", "0"],
     "co2_clip_threshold must be a finite number > 0; got 0.0"),
    (["--zo-clip", "inf"], "zo_clip must be a finite number > 0; got inf"),
    (["--zo-quantization", "int4"], "zo_quantization must be one of int8, int8-nearest, fp32"),
    (["--bogus", "1"], None),
])
def test_bad_input_is_one_line_naming_the_value(args, message, db, capsys):
    if message is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", *args])
        assert exit_info.value.code == 2
        return
    assert main(["train", *TINY, *args, "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_an_interrupted_train_run_keeps_its_steps_and_ledger(db, monkeypatch, capsys):
    import lowcomm.cli.train as train

    original = train.train_workers

    def interrupted(*args, on_record=None, **kwargs):
        def stop_after_first(record):
            on_record(record)
            raise KeyboardInterrupt

        return original(*args, on_record=stop_after_first, **kwargs)

    monkeypatch.setattr(train, "train_workers", interrupted)
    assert main(["train", *TINY, "--db", db]) == 130
    capsys.readouterr()
    assert main(["export", "1", "--db", db]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "interrupted"
    assert [r["step"] for r in record["rounds"]] == [2]
    assert any(e["type"] == "CollectiveEvent" for e in record["events"])
