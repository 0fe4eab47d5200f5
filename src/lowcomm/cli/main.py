"""The `lowcomm` command: run, list, show and export federated-learning runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from lowcomm.cli.config import ConfigError, build_config, load_yaml, option_specs

DESCRIPTION = """\
Federated learning where every cost is measured: bytes are the length of the real serialized
payloads, FLOPs are counted by PyTorch's FLOP counter, and time, energy, money and carbon are
modeled from them by declared, printed models.
"""

EPILOG = """\
examples:
  lowcomm run                                   # FedAvg, 2NN, bundled MNIST subset, 20 rounds
  lowcomm run --config configs/demo.yaml --rounds 5
  lowcomm run --algorithm fedsgd --partition shards --shards-per-client 2
  lowcomm run --dataset mnist --data-dir ../shared/data --model cnn
  lowcomm models                                # parameters and counted FLOPs
  lowcomm runs
  lowcomm show 3
  lowcomm export 3 --format csv -o run3.csv
"""

TRAIN_EPILOG = """\
examples:
  lowcomm train                                          # DiLoCo, 4 workers, Python's docs
  lowcomm train --algorithm ddp --steps 100
  lowcomm train --algorithm diloco --workers 8 --inner-steps 50 --codec fp16
  lowcomm train --dataset tiny_shakespeare --data-dir ../shared/data --steps 1000
  lowcomm train --network cross-region --bandwidth-gbps 10
  lowcomm launch --nproc 2 -- train --algorithm ddp --steps 50   # 2 processes, gloo
"""

SECTIONS = {"data": "data", "model": "model", "training": "model and algorithm",
            "privacy": "mechanism and privacy",
            "faults": "faults (injected failures and what the server tolerates)",
            "cost": "cost models (modeled, never measured)",
            "runtime": "runtime (simulator, or one rank of a torch.distributed run)",
            "output": "run records"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_run_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="simulate a federated training run and print its cost ledger",
        description="Simulate a federated training run. Every option can also be given in a "
                    "YAML file (--config) under the same name with underscores; flags win.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    _add_config_options(run, None)
    run.set_defaults(command=_run)


def _add_train_parser(subparsers) -> None:
    from lowcomm.cli.train_config import TrainConfig

    train = subparsers.add_parser(
        "train", help="simulate low-communication data-centre training (DDP, DiLoCo, ...)",
        description="Simulate p workers training one character-level transformer with "
                    "little, late or overlapped communication. Bytes are measured per worker "
                    "and per collective; time and compute utilization are modeled under every "
                    "bandwidth scenario. Options can also come from a YAML file (--config).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_EPILOG)
    _add_config_options(train, TrainConfig)
    train.set_defaults(command=_train)


def _add_launch_parser(subparsers) -> None:
    from lowcomm.cli.launch import add_launch_parser  # no torch: keeps --help fast

    add_launch_parser(subparsers)


def _add_config_options(parser, schema) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML mapping")
    sections = {f.metadata["section"] for f, _ in option_specs(schema)}
    groups = {key: parser.add_argument_group(title) for key, title in SECTIONS.items()
              if key in sections}
    for f, kind in option_specs(schema):
        group = groups[f.metadata["section"]]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            group.add_argument(_flag(f.name), dest=f.name, action="store_true",
                               default=argparse.SUPPRESS, help=f.metadata["help"])
        elif kind is tuple:
            group.add_argument(_flag(f.name), dest=f.name, action="append",
                               default=argparse.SUPPRESS, metavar="TEXT",
                               help=f.metadata["help"])
        else:
            # choices are checked by build_config, so flags and YAML fail the same way
            group.add_argument(_flag(f.name), dest=f.name, default=argparse.SUPPRESS,
                               metavar=_metavar(f, kind), help=help_text)


def _metavar(f, kind: type) -> str:
    if f.metadata["choices"]:
        return "{" + ",".join(f.metadata["choices"]) + "}"
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _add_record_parsers(subparsers) -> None:
    db_help = "SQLite file of run records (default: the user's data home, or $LOWCOMM_HOME)"
    runs = subparsers.add_parser("runs", help="list stored runs, newest first")
    runs.add_argument("--db", help=db_help)
    runs.add_argument("--limit", type=int, default=50, help="how many runs (default: 50)")
    runs.set_defaults(command=_runs)
    show = subparsers.add_parser("show", help="print one stored run: config, summary, rounds")
    show.add_argument("id", type=int, help="run id (see `lowcomm runs`)")
    show.add_argument("--db", help=db_help)
    show.set_defaults(command=_show)
    export = subparsers.add_parser("export", help="export a stored run as JSON or CSV")
    export.add_argument("id", type=int, help="run id (see `lowcomm runs`)")
    export.add_argument("--format", choices=("json", "csv"), default="json",
                        help="json: the whole record with its ledger events; csv: one row per "
                             "round (default: json)")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.add_argument("--db", help=db_help)
    export.set_defaults(command=_export)


def _add_models_parser(subparsers) -> None:
    models = subparsers.add_parser(
        "models", help="list the models with their parameter counts and counted FLOPs",
        description="Parameters and FLOPs (counted by PyTorch's FLOP counter: matmul, conv and "
                    "attention at 2 FLOPs per multiply-accumulate) per sample, for the inputs "
                    "each model is used with by default.")
    models.add_argument("--batch-size", type=int, default=1,
                        help="count FLOPs for one batch of this size (default: 1)")
    models.set_defaults(command=_models)


ANALYTICS_EPILOG = """\
examples:
  lowcomm analytics frequency --oracle olh --epsilon 2 --users 50000
  lowcomm analytics frequency --data retail --data-dir ../shared/data --oracle hr --plot f.png
  lowcomm analytics roc --mode ldp --epsilon 3 --height 3
  lowcomm analytics heavy-hitters --method taps --parties 4 --split dirichlet --epsilon 4
"""


def _add_analytics_parser(subparsers) -> None:
    from lowcomm.cli.analytics_config import FrequencyConfig, HeavyHittersConfig, RocConfig

    parser = subparsers.add_parser(
        "analytics", help="private federated analytics: frequency oracles, ROC/PR curves",
        description="Local-DP frequency estimation and federated ROC/PR curves; every user's "
                    "report is serialized, measured in the ledger and parsed back, and the run "
                    "is stored like a training run.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ANALYTICS_EPILOG)
    commands = parser.add_subparsers(title="analytics commands", metavar="ANALYSIS")
    for name, cls, help_text in (
            ("frequency", FrequencyConfig, "estimate item frequencies with a local-DP frequency "
             "oracle on synthetic or real market-basket data"),
            ("roc", RocConfig, "federated ROC and PR curves of a classifier on scikit-learn's "
             "breast-cancer data"),
            ("heavy-hitters", HeavyHittersConfig, "find the top-k items across parties with "
             "TAPS, the per-party PEM baseline or pooled PEM")):
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper()
                                  + help_text[1:] + ". Options can also come from a YAML file "
                                  "(--config); flags win.")
        _add_config_options(sub, cls)
        sub.set_defaults(command=_analytics, analysis=name)


def _analytics(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.cli import analytics, analytics_heavy  # numpy, torch, scikit-learn: keep --help
    from lowcomm.cli import analytics_config as ac  # fast

    values = load_yaml(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "analysis")}
    cls, check, run = {
        "frequency": (ac.FrequencyConfig, ac.check_frequency, analytics.frequency_command),
        "roc": (ac.RocConfig, ac.check_roc, analytics.roc_command),
        "heavy-hitters": (ac.HeavyHittersConfig, ac.check_heavy_hitters,
                          analytics_heavy.heavy_hitters_command),
    }[args.analysis]
    config = build_config({**values, **flags}, schema=cls, check=check,
                          command=f"analytics {args.analysis}")
    return run(config, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowcomm", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run_parser(subparsers)
    _add_train_parser(subparsers)
    _add_analytics_parser(subparsers)
    _add_launch_parser(subparsers)
    _add_models_parser(subparsers)
    _add_record_parsers(subparsers)
    return parser


def _version() -> str:
    import lowcomm

    return f"lowcomm {lowcomm.__version__}"


def _run(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.cli.run import run_command  # imports torch; keep --help fast

    values = load_yaml(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    return run_command(build_config({**values, **flags}), console)


def _train(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.cli.train import train_command  # imports torch; keep --help fast
    from lowcomm.cli.train_config import TrainConfig, validate_train

    values = load_yaml(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    config = build_config({**values, **flags}, schema=TrainConfig, check=validate_train,
                          command="train")
    return train_command(config, console)


def _models(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from lowcomm.cli.build import MODELS
    from lowcomm.cost import count_flops

    if args.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {args.batch_size}")
    # The inputs each model meets in lowcomm's datasets: MNIST-like images, FEMNIST's 62
    # classes, and the Shakespeare loader's 65-character vocabulary with 80-character windows.
    inputs = {"logreg": ((1, 28, 28), 10), "mlp_2nn": ((1, 28, 28), 10),
              "cnn": ((1, 28, 28), 10), "cnn_femnist": ((1, 28, 28), 62),
              "char_lstm": ((80,), 65)}
    table = Table(title=f"models (FLOPs counted for a batch of {args.batch_size})",
                  header_style="bold")
    for column in ("model", "input", "classes", "parameters", "forward FLOPs",
                   "train-step FLOPs"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for name, make in MODELS.items():
        shape, classes = inputs[name]
        spec = make(shape, classes)
        batch = (args.batch_size, *spec.input_shape)
        forward, train = (count_flops(spec.build, batch, input_dtype=spec.input_dtype, kind=k)
                          for k in ("eval", "train"))
        table.add_row(name, str(shape), str(classes), f"{spec.num_params():,}",
                      f"{forward:,}", f"{train:,}")
    console.print(table)
    return 0


def _store(args: argparse.Namespace):
    from lowcomm.report import RunStore, default_db_path

    path = Path(args.db) if args.db else default_db_path()
    if not path.exists():
        raise ConfigError(f"no run database at {path}; run `lowcomm run` first or pass --db")
    try:
        return RunStore(path)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _record(args: argparse.Namespace, *, with_events: bool = False) -> dict:
    with _store(args) as store:
        try:
            return store.get(args.id, with_events=with_events)
        except ValueError as err:  # no such run
            raise ConfigError(f"{err}; see `lowcomm runs`") from None


def _runs(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.report import runs_table

    if args.limit < 1:
        raise ConfigError(f"limit must be >= 1; got {args.limit}")
    with _store(args) as store:
        console.print(runs_table(store.list_runs(limit=args.limit)))
    return 0


def _show(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.report import rounds_table, summary_table
    from lowcomm.report.training import steps_table, training_summary_table

    record = _record(args)
    name = f" ({record['name']})" if record["name"] else ""
    console.print(f"[bold]run {record['id']}{name}[/]: {record['status']}")
    console.print("config: " + ", ".join(f"{k}={v}" for k, v in record["config"].items()
                                         if v is not None))
    if record["error"]:
        console.print(f"error: {record['error']}")
    if str(record["config"].get("command", "")).startswith("analytics"):
        from lowcomm.report.analytics_tables import analytics_tables

        for table in analytics_tables(record["summary"]) if record["summary"] else ():
            console.print(table)
        return 0
    training = record["config"].get("command") == "train"
    if record["rounds"]:
        console.print((steps_table if training else rounds_table)(record["rounds"]))
    if record["summary"]:
        console.print((training_summary_table if training else summary_table)(record["summary"]))
    return 0


def _export(args: argparse.Namespace, console: Console) -> int:
    from lowcomm.report import record_to_json, rounds_to_csv

    record = _record(args, with_events=args.format == "json")
    text = record_to_json(record) if args.format == "json" else rounds_to_csv(record)
    if args.output:
        Path(args.output).write_text(text)
        console.print(f"wrote run {args.id} as {args.format} to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return 2
    console = Console()
    try:
        return args.command(args, console)
    except ConfigError as err:
        # one unwrapped line, whatever the terminal width, in one write: the ranks of a launch
        # share stderr, and print's separate write of the newline let their lines interleave
        sys.stderr.write(f"error: {err}\n")
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
