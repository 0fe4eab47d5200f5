"""`lowcomm launch --nproc N -- train ...` and `lowcomm launch --nproc N -- run ...`: N local
ranks of a torch.distributed run; and how a rank of `lowcomm train --runtime distributed` or
`lowcomm run --runtime distributed` finds its run (the environment torchrun sets).

The launcher checks the command's options once, before any process starts, then forks N ranks on
this machine, each running the command with `--runtime distributed` and RANK, WORLD_SIZE,
MASTER_ADDR=127.0.0.1, a free MASTER_PORT and a fresh LOWCOMM_TOKEN in its environment (the
token never appears on a command line). Rank 0 prints and stores the run; the others are quiet.
`train` runs one worker per rank; `run` (a star algorithm) runs the server on rank 0 and hosts
the clients on ranks 1..N-1, so it needs N >= 2.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from rich.console import Console

from lowcomm.cli.config import ConfigError, RunConfig, build_config
from lowcomm.cli.train_config import (
    TrainConfig,
    membership_of,
    membership_schedule,
    validate_train,
)

ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_PORT", "LOWCOMM_TOKEN")


@dataclass(frozen=True)
class RankEnvironment:
    rank: int
    world_size: int
    master_addr: str
    master_port: int
    token: str
    agent_store: bool  # torchrun's agent serves the rendezvous store


def rank_environment(command: str) -> RankEnvironment:
    """This process's place in a run of `lowcomm <command>`, from the variables `lowcomm
    launch` and torchrun set."""
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"runtime=distributed needs {', '.join(missing)} in the environment: "
                          f"start the ranks with `lowcomm launch --nproc N -- {command} ...` or "
                          "torchrun (and export the same LOWCOMM_TOKEN on every node)")
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        port = int(os.environ["MASTER_PORT"])
    except ValueError as err:
        raise ConfigError(f"RANK, WORLD_SIZE and MASTER_PORT must be integers: {err}") from None
    if command == "run" and world < 2:
        raise ConfigError(f"a distributed `lowcomm run` needs WORLD_SIZE >= 2 (the server on "
                          f"rank 0 and at least one rank of clients); got {world}")
    return RankEnvironment(rank, world, os.environ.get("MASTER_ADDR", "127.0.0.1"), port,
                           os.environ["LOWCOMM_TOKEN"],
                           os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


def join_run(env: RankEnvironment, c: TrainConfig | RunConfig):
    from lowcomm.runtime.distributed import join

    try:
        return join(rank=env.rank, world_size=env.world_size, master_addr=env.master_addr,
                    master_port=env.master_port, token=env.token, bind_address=c.bind_address,
                    timeout_seconds=c.timeout_seconds,
                    serve_store=False if env.agent_store else None)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def runtime_summary(rank_result: Any, c: TrainConfig) -> dict[str, Any]:
    """The distributed training run's own measurements for the record: the transport's counters
    of every rank checked against the merged ledger, and rank 0's measured time per step."""
    from lowcomm.cost.ledger import worker_name

    comm = [e for e in rank_result.run.ledger.comm_events()  # what this launch's ranks moved
            if e.round >= rank_result.first_step]
    agrees = all(
        w.payload_sent_nbytes == sum(e.nbytes for e in comm if e.src == worker_name(r))
        and w.payload_received_nbytes == sum(e.nbytes for e in comm if e.dst == worker_name(r))
        for r, w in enumerate(rank_result.wire))
    return {**_transport_summary(rank_result, c, agrees),
            "resumed_from_step": rank_result.first_step - 1,
            "rank0_step_seconds_mean": (fmean(rank_result.step_seconds)
                                        if rank_result.step_seconds else None),
            "rank0_comm_seconds_mean": (fmean(rank_result.comm_seconds)
                                        if rank_result.comm_seconds else None)}


def star_runtime_summary(rank_result: Any, c: RunConfig) -> dict[str, Any]:
    """The same for a star run (`StarRankResult`): every rank's counters against the ledger's
    bytes to and from the parties it hosts, and the server's measured time per round."""
    from lowcomm.runtime.distributed.star import wire_equals_ledger

    return {**_transport_summary(rank_result, c, wire_equals_ledger(rank_result)),
            "resumed_ledger_events": rank_result.ledger_start,
            "rank0_round_seconds_mean": (fmean(rank_result.round_seconds)
                                         if rank_result.round_seconds else None)}


def _transport_summary(rank_result: Any, c: TrainConfig | RunConfig,
                       agrees: bool) -> dict[str, Any]:
    wire = rank_result.wire
    return {"name": "torch.distributed", "backend": "gloo", "world_size": rank_result.world_size,
            "bind_address": c.bind_address,
            "transport": {"payload_sent_nbytes": sum(w.payload_sent_nbytes for w in wire),
                          "control_nbytes": sum(w.control_sent_nbytes for w in wire),
                          "framing_nbytes": sum(w.framing_nbytes for w in wire),
                          "equals_ledger": agrees, "per_rank": [w.as_dict() for w in wire]}}


def add_launch_parser(subparsers) -> None:
    launch = subparsers.add_parser(
        "launch", help="run `lowcomm train` or `lowcomm run` as N local processes over "
                       "torch.distributed (gloo)",
        description="Start N ranks of a torch.distributed run on this machine, bound to "
                    "127.0.0.1: each one worker of `lowcomm train --runtime distributed`, or, "
                    "for `lowcomm run --runtime distributed`, the server (rank 0) and N-1 ranks "
                    "hosting the clients (N >= 2). Rank 0 prints and stores the run. Across "
                    "machines use torchrun (docs/distributed.md).",
        epilog="examples:\n  lowcomm launch --nproc 2 -- train --algorithm diloco --steps 100\n"
               "  lowcomm launch --nproc 3 -- run --algorithm scaffold --local-steps 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    launch.add_argument("--nproc", type=int, required=True,
                        help="number of ranks (train: workers; run: the server and N-1 client "
                             "ranks)")
    launch.add_argument("--master-port", type=int, default=0,
                        help="rendezvous port on 127.0.0.1 (default: a free one)")
    launch.add_argument("command_args", nargs=argparse.REMAINDER, metavar="-- train|run ...",
                        help="the train or run command and its options")
    launch.set_defaults(command=launch_command)


def _rank_argv(args: argparse.Namespace) -> list[str]:
    """Every rank's command line, after checking its options as that rank will."""
    from lowcomm.cli.config import load_yaml, validate
    from lowcomm.cli.main import build_parser

    rest = list(args.command_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if rest[:1] not in (["train"], ["run"]):
        raise ConfigError("launch runs `train` (data-centre training) or `run` (a federated "
                          "algorithm): lowcomm launch --nproc N -- train|run [options]; got "
                          f"{' '.join(rest) or 'nothing'}")
    command = rest[0]
    least = 2 if command == "run" else 1
    if args.nproc < least:
        why = " for run (the server and at least one rank of clients)" if command == "run" else ""
        raise ConfigError(f"nproc must be >= {least}{why}; got {args.nproc}")
    parsed = vars(build_parser().parse_args(rest))
    flags = {k: v for k, v in parsed.items() if k not in ("command", "config")}
    values = {**(load_yaml(parsed["config"]) if parsed.get("config") else {}), **flags}
    if values.get("runtime", "distributed") != "distributed":
        raise ConfigError(f"launch runs runtime=distributed; got runtime={values['runtime']}")
    values["runtime"] = "distributed"
    if command == "run":
        build_config(values, schema=RunConfig, check=validate, command="run")
        return [*rest, "--runtime", "distributed"]
    if values.get("membership"):  # one process per worker id: the joiners' too
        joins = sum(event == "join" for events in
                    membership_schedule(str(values["membership"])).values() for event in events)
        config = build_config({"workers": args.nproc - joins, **values},
                              schema=TrainConfig, check=validate_train, command="train")
        ids = membership_of(config).total_ids
        if ids != args.nproc:
            raise ConfigError(f"membership {config.membership!r} with workers={config.workers} "
                              f"uses {ids} worker ids: nproc must be {ids} (one process per "
                              f"id); got {args.nproc}")
        return [*rest, "--workers", str(config.workers), "--runtime", "distributed"]
    if "workers" in values and int(values["workers"]) != args.nproc:
        raise ConfigError(f"workers ({values['workers']}) must equal nproc ({args.nproc}): one "
                          "worker per process")
    values["workers"] = args.nproc
    build_config(values, schema=TrainConfig, check=validate_train, command="train")
    return [*rest, "--workers", str(args.nproc), "--runtime", "distributed"]


def _killed_ranks(argv: list[str], nproc: int) -> set[int]:
    """The ranks a `run --fault 'kill client c at round t'` kills on purpose (the hosts of
    those clients), or the ranks of a `train` whose workers may end without notice (every
    rank but 0 with --unannounced-leaves, the killed ones with --fault): their death is no
    failure of the launch."""
    from lowcomm.cli.config import load_yaml
    from lowcomm.cli.main import build_parser

    parsed = vars(build_parser().parse_args(argv))
    file = load_yaml(parsed["config"]) if parsed.get("config") else {}
    specs = parsed.get("fault") or file.get("fault") or ()
    specs = [specs] if isinstance(specs, str) else specs
    if argv[:1] == ["train"]:
        if parsed.get("unannounced_leaves") or file.get("unannounced_leaves"):
            return set(range(1, nproc))
        return {int(spec.split()[2]) for spec in specs}  # checked: 'kill worker W at step T'
    from lowcomm.runtime.distributed.star import client_rank
    from lowcomm.runtime.faults import FaultPlan

    return {client_rank(f.client, nproc) for f in FaultPlan.parse(specs).faults
            if f.kind == "kill"}


def _checkpoint_dir(argv: list[str]) -> str | None:
    """Where a `run` or `train` writes its checkpoints (flag or config file), or None."""
    from lowcomm.cli.config import load_yaml
    from lowcomm.cli.main import build_parser

    parsed = vars(build_parser().parse_args(argv))
    file = load_yaml(parsed["config"]) if parsed.get("config") else {}
    return parsed.get("checkpoint_dir") or file.get("checkpoint_dir")


def launch_command(args: argparse.Namespace, console: Console) -> int:
    argv = _rank_argv(args)  # every mistake surfaces here, before any process starts
    from lowcomm.cli.main import main
    from lowcomm.runtime.distributed import Endpoint, RankFailedError, free_port, spawn_local

    endpoint = Endpoint("127.0.0.1", args.master_port or free_port(), secrets.token_hex(32))

    def rank_main(rank: int, nproc: int, ep: Endpoint) -> int:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                          MASTER_ADDR=ep.master_addr, MASTER_PORT=str(ep.master_port),
                          LOWCOMM_TOKEN=ep.token)
        return main(argv)

    try:
        codes = spawn_local(rank_main, args.nproc, endpoint=endpoint,
                            may_vanish=_killed_ranks(argv, args.nproc))
    except RankFailedError as err:
        for rank, text in err.errors.items():
            print(f"error: rank {rank}: {text.splitlines()[0]}", file=sys.stderr)
        if (directory := _checkpoint_dir(argv)) is not None:
            print(f"the checkpoints of the run are in {directory}: the same command with "
                  "--resume continues from the last one", file=sys.stderr)
        return 1
    return max(code for code in codes if code is not None)  # None: a rank killed on purpose
