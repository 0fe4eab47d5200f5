"""The typed configuration of `lowcomm run`, parsed only here at the edge.

One frozen dataclass is the single source of truth: its fields are the YAML keys, their dashed
forms are the command-line flags, and their metadata gives the help text and allowed values.
Flags override the file. Every mistake is reported as one line naming the bad value.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

DATASETS = ("mnist_subset", "digits", "mnist1d", "synthetic", "mnist", "fashion_mnist",
            "femnist", "shakespeare")
PARTITIONS = ("iid", "dirichlet", "shards", "quantity", "natural")
NATURAL_DATASETS = ("synthetic", "femnist", "shakespeare")
MODELS = ("logreg", "mlp_2nn", "cnn", "cnn_femnist", "char_lstm")
ALGORITHMS = ("fedavg", "fedsgd", "fedprox", "scaffold", "simplified_scaffold", "scallion",
              "scafcom", "fedamd", "dgc", "gmf", "ef21")
SPARSE_UPLINK = ("dgc", "gmf")  # algorithms that build their own uplink (DGC's top-k)
CONTROLLED = ("scaffold", "simplified_scaffold", "scallion", "scafcom")
K_STEPS = (*CONTROLLED, "fedamd")  # algorithms that run exactly K local steps
SERVER_OPTIMIZERS = ("avg", "momentum", "nesterov", "adam")
NETWORKS = ("constant", "lognormal", "flash", "mobile")
EXECUTIONS = ("auto", "sequential", "vectorized", "processes", "ray")
RUNTIMES = ("simulator", "distributed")


class ConfigError(ValueError):
    """A user mistake in the configuration; the CLI prints it as one line and exits 2."""


def _opt(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
         section: str) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "section": section})


# The options of a rank of a torch.distributed run, shared by `lowcomm run` and `lowcomm train`
# (a fresh field for each config class; `role` says what one rank is in that command).

def runtime_option(role: str) -> Any:
    return _opt("simulator", f"simulator: the whole run in this process; distributed: this "
                f"process is one rank ({role}) of a torch.distributed run over gloo, started "
                "by `lowcomm launch` or torchrun, which set RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT and LOWCOMM_TOKEN", choices=RUNTIMES, section="runtime")


def bind_address_option() -> Any:
    return _opt("127.0.0.1", "distributed: the address this rank listens on and the other "
                "ranks reach it at (rank 0's rendezvous store too); loopback unless told "
                "otherwise", section="runtime")


def timeout_seconds_option() -> Any:
    return _opt(300.0, "distributed: how long a rank waits for a peer (the rendezvous, each "
                "transfer) before it fails", section="runtime")


# The checkpoint options of `lowcomm run` and `lowcomm train` (a fresh field for each class).

def checkpoint_dir_option() -> Any:
    return _opt(None, "write checkpoints (last.ckpt, atomically) to this folder",
                section="output")


def checkpoint_every_option() -> Any:
    return _opt(1, "checkpoint after every N rounds (steps for train) and after the last",
                section="output")


def checkpoint_keep_option() -> Any:
    return _opt(1, "how many checkpoints to keep (last.ckpt, last.ckpt.1, ...)",
                section="output")


def resume_option() -> Any:
    return _opt(False, "continue from the last checkpoint in --checkpoint-dir (an error if "
                "there is none; the other options must be the checkpointed run's)",
                section="output")


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = _opt("mnist_subset", "dataset to federate", choices=DATASETS, section="data")
    data_dir: str | None = _opt(None, "folder with the real datasets (default: $LOWCOMM_DATA)",
                                section="data")
    partition: str = _opt("dirichlet", "how samples are split across clients",
                          choices=PARTITIONS, section="data")
    clients: int = _opt(100, "number of clients (ignored by natural partitions)", section="data")
    alpha: float = _opt(0.5, "Dirichlet concentration for partition=dirichlet (lower = more "
                        "label skew)", section="data")
    shards_per_client: int = _opt(2, "shards per client for partition=shards", section="data")
    quantity_sigma: float = _opt(1.0, "log-normal sigma of client sizes for partition=quantity",
                                 section="data")
    synthetic_alpha: float = _opt(1.0, "alpha of Synthetic(alpha, beta)", section="data")
    synthetic_beta: float = _opt(1.0, "beta of Synthetic(alpha, beta)", section="data")
    # model and algorithm
    model: str = _opt("mlp_2nn", "model architecture", choices=MODELS, section="training")
    algorithm: str = _opt("fedavg", "federated algorithm", choices=ALGORITHMS,
                          section="training")
    rounds: int = _opt(20, "communication rounds", section="training")
    clients_per_round: int = _opt(10, "clients sampled per round, without replacement",
                                  section="training")
    epochs: int = _opt(1, "local epochs E (fedavg)", section="training")
    local_steps: int | None = _opt(None, "exactly K local steps per client instead of epochs "
                                   "(fedavg)", section="training")
    batch_size: int = _opt(10, "local batch size B (fedavg); 0 means the full local data",
                           section="training")
    lr: float = _opt(0.05, "client learning rate (eta_l), or the gradient step size of fedsgd "
                     "and ef21 (gamma)",
                     section="training")
    prox_mu: float = _opt(0.01, "FedProx proximal weight mu", section="training")
    scallion_alpha: float = _opt(1.0, "SCALLION control-variate step alpha in (0, 1]",
                                 section="training")
    scafcom_beta: float = _opt(0.2, "SCAFCOM local momentum weight beta in (0, 1]; 1 means no "
                               "momentum (with fp32: simplified SCAFFOLD); 0.2 is our default, "
                               "not the paper's", section="training")
    fedamd_anchor_prob: float = _opt(0.2, "FedAMD probability p in (0, 1] that a sampled client "
                                     "is an anchor (full-batch gradient) rather than a miner "
                                     "(K local steps); 0.2 as in the authors' code",
                                     section="training")
    keep_fraction: float = _opt(0.1, "fraction of each layer's entries a dgc/gmf client sends "
                                "(top-k; the GMF code's compress_rate)", section="training")
    dgc_momentum: float = _opt(0.9, "DGC momentum m in [0, 1) of the momentum correction "
                               "(dgc, gmf)", section="training")
    gmf_fusion_ratio: float = _opt(0.6, "GMF: final fusion ratio rho in [0, 1) of the global "
                                   "momentum in the top-k score (0 = plain DGC)",
                                   section="training")
    gmf_fusion_stages: int = _opt(10, "GMF: rho ramps linearly from 0 in this many equal "
                                  "stages over the run (1 = constant rho)", section="training")
    gmf_momentum: float = _opt(0.9, "GMF: decay beta_g in [0, 1) of the global momentum G "
                               "(the server keeps G and broadcasts it with x)",
                               section="training")
    uplink: str = _opt("fp32", "codec of what clients send, e.g. qsgd:15, topk:0.01, "
                       "topk:0.2+kmeans:3+huffman (see docs/codecs.md)", section="training")
    downlink: str = _opt("fp32", "codec of what the server broadcasts", section="training")
    client_momentum: float = _opt(0.0, "client SGD momentum (fedavg)", section="training")
    server_optimizer: str = _opt("avg", "server step: avg (plain averaging), momentum "
                                 "(FedAvgM), nesterov, adam (FedAdam)",
                                 choices=SERVER_OPTIMIZERS, section="training")
    server_lr: float = _opt(1.0, "server learning rate", section="training")
    server_momentum: float = _opt(0.9, "server momentum for momentum/nesterov; beta1 for adam",
                                  section="training")
    server_tau: float = _opt(1e-3, "FedAdam degree of adaptivity tau", section="training")
    eval_every: int = _opt(1, "evaluate on the global test set every N rounds",
                           section="training")
    eval_samples: int | None = _opt(None, "evaluate on a fixed seeded subset of N global test "
                                     "samples (default: all of them)", section="training")
    seed: int = _opt(0, "seed of every random stream of the run", section="training")
    execution: str = _opt("auto", "how the clients of a round run: auto (vectorized when the "
                          "model allows it), sequential, vectorized, processes (one worker "
                          "process per core), ray (Ray actors: pip install 'lowcomm[ray]')",
                          choices=EXECUTIONS, section="training")
    ray_address: str | None = _opt(None, "execution=ray: HOST:PORT of a Ray head started with "
                                   "`ray start --head`, or auto (default: a local Ray instance "
                                   "of --ray-actors CPUs, or the one this process joined)",
                                   section="training")
    ray_actors: int = _opt(2, "execution=ray: Ray actors hosting the clients (one CPU each)",
                           section="training")
    # faults: injected failures and what the server tolerates (docs/simulation.md, "Faults")
    fault: tuple[str, ...] = _opt((), "inject a fault, e.g. 'kill client 2 at round 3', 'stall "
                                  "client 1 at round 2', 'corrupt [nan|shape|field|oversize] "
                                  "client 0 at round 1' (repeatable)", section="faults")
    min_cohort: int = _opt(1, "fewest admitted uploads a round needs for a server update; "
                           "below it the model is unchanged", section="faults")
    max_upload_nbytes: int | None = _opt(None, "reject uploads larger than this many bytes "
                                         "(default: no limit)", section="faults")
    round_timeout_seconds: float | None = _opt(None, "how long a real server waits for a "
                                               "round's uploads (the simulator has no clock: "
                                               "a stall is a dropout)", section="faults")
    # cost models (modeled, never measured)
    network: str = _opt("constant", "network model: constant, lognormal (per-client draws), "
                        "flash (real phone traces), mobile (real 4G/5G/WiFi tests)",
                        choices=NETWORKS, section="cost")
    up_mbps: float | None = _opt(None, "uplink Mb/s (constant: the link; lognormal: median); "
                                 "default: the network model's documented default",
                                 section="cost")
    down_mbps: float | None = _opt(None, "downlink Mb/s, as --up-mbps", section="cost")
    latency_ms: float | None = _opt(None, "one-way latency per transfer in ms", section="cost")
    network_sigma: float = _opt(0.5, "log-normal sigma of per-client bandwidth draws",
                                section="cost")
    traces_dir: str | None = _opt(None, "folder with the real network traces "
                                  "(default: $LOWCOMM_TRACES)", section="cost")
    access_tech: str = _opt("4G", "access technology for network=mobile", section="cost")
    uplink_ratio: float | None = _opt(None, "uplink/downlink bandwidth ratio for "
                                      "network=mobile (required there)", section="cost")
    # runtime
    runtime: str = runtime_option("rank 0 the server, the others hosts of clients")
    bind_address: str = bind_address_option()
    timeout_seconds: float = timeout_seconds_option()
    # bookkeeping
    name: str | None = _opt(None, "a name for the run record", section="output")
    db: str | None = _opt(None, "SQLite file for run records (default: the user's data home)",
                          section="output")
    no_store: bool = _opt(False, "do not store a run record", section="output")
    checkpoint_dir: str | None = checkpoint_dir_option()
    checkpoint_every: int = checkpoint_every_option()
    checkpoint_keep: int = checkpoint_keep_option()
    resume: bool = resume_option()


def option_specs(schema: type | None = None) -> list[tuple[dataclasses.Field, type]]:
    """(field, scalar type) for every option of a config dataclass (default `RunConfig`), in
    declaration order."""
    schema = schema or RunConfig
    hints = get_type_hints(schema)
    specs = []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        base = (tuple if get_origin(hint) is tuple  # a repeatable option of strings
                else next((a for a in get_args(hint) if a is not type(None)), hint))
        specs.append((f, base))
    return specs


def _coerce(name: str, value: Any, kind: type, optional: bool) -> Any:
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be empty")
    if kind is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{name} must be a string or a list of strings; got {value!r}")
        return tuple(items)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false; got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer; got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number; got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number; got {value!r}") from None
    if not isinstance(value, str | int | float):
        raise ConfigError(f"{name} must be a string; got {value!r}")
    return str(value)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot read config file {path}: {first}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def build_config(values: dict[str, Any], *, schema: type | None = None, check=None,
                 command: str = "run") -> Any:
    """A validated config (default: `RunConfig`, checked by `validate`) from a mapping of
    option names (underscored) to raw values."""
    schema, check = schema or RunConfig, check or validate
    specs = {f.name: (f, kind) for f, kind in option_specs(schema)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; see `lowcomm {command} --help`")
    hints = get_type_hints(schema)
    parsed = {}
    for name, value in values.items():
        f, kind = specs[name]
        optional = isinstance(hints[name], types.UnionType)
        parsed[name] = _coerce(name, value, kind, optional)
        choices = f.metadata["choices"]
        if choices and parsed[name] not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    config = schema(**parsed)
    check(config)
    return config


def validate(c: RunConfig) -> None:
    """Reject impossible combinations with a one-line message naming the value."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(c.rounds >= 1, f"rounds must be >= 1; got {c.rounds}")
    validate_checkpointing(c)
    need(c.clients >= 1, f"clients must be >= 1; got {c.clients}")
    need(c.clients_per_round >= 1, f"clients_per_round must be >= 1; got {c.clients_per_round}")
    if c.partition != "natural":
        need(c.clients_per_round <= c.clients, f"clients_per_round ({c.clients_per_round}) "
             f"must not exceed clients ({c.clients})")
    need(c.alpha > 0, f"alpha must be > 0; got {c.alpha}")
    need(c.shards_per_client >= 1, f"shards_per_client must be >= 1; got {c.shards_per_client}")
    need(c.quantity_sigma >= 0, f"quantity_sigma must be >= 0; got {c.quantity_sigma}")
    need(c.synthetic_alpha >= 0, f"synthetic_alpha must be >= 0; got {c.synthetic_alpha}")
    need(c.synthetic_beta >= 0, f"synthetic_beta must be >= 0; got {c.synthetic_beta}")
    need(c.epochs >= 1, f"epochs must be >= 1; got {c.epochs}")
    need(c.batch_size >= 0, f"batch_size must be >= 0 (0 = full batch); got {c.batch_size}")
    need(c.local_steps is None or c.local_steps >= 1,
         f"local_steps must be >= 1; got {c.local_steps}")
    need(c.algorithm not in K_STEPS or c.local_steps is not None,
         f"algorithm={c.algorithm} runs K local steps: set local_steps")
    need(c.prox_mu >= 0, f"prox_mu must be >= 0; got {c.prox_mu}")
    need(0 < c.scallion_alpha <= 1, f"scallion_alpha must be in (0, 1]; got {c.scallion_alpha}")
    need(0 < c.scafcom_beta <= 1, f"scafcom_beta must be in (0, 1]; got {c.scafcom_beta}")
    need(0 < c.fedamd_anchor_prob <= 1,
         f"fedamd_anchor_prob must be in (0, 1]; got {c.fedamd_anchor_prob}")
    need(c.lr > 0, f"lr must be > 0; got {c.lr}")
    need(0 < c.keep_fraction <= 1, f"keep_fraction must be in (0, 1]; got {c.keep_fraction}")
    need(0 <= c.dgc_momentum < 1, f"dgc_momentum must be in [0, 1); got {c.dgc_momentum}")
    need(0 <= c.gmf_fusion_ratio < 1,
         f"gmf_fusion_ratio must be in [0, 1); got {c.gmf_fusion_ratio}")
    need(c.gmf_fusion_stages >= 1, f"gmf_fusion_stages must be >= 1; got {c.gmf_fusion_stages}")
    need(0 <= c.gmf_momentum < 1, f"gmf_momentum must be in [0, 1); got {c.gmf_momentum}")
    need(c.algorithm not in SPARSE_UPLINK or c.uplink == "fp32",
         f"algorithm={c.algorithm} builds its own uplink (DGC's top-k); set keep_fraction and "
         f"dgc_momentum instead of uplink={c.uplink}")
    need(0 <= c.client_momentum < 1, f"client_momentum must be in [0, 1); got {c.client_momentum}")
    need(c.server_lr > 0, f"server_lr must be > 0; got {c.server_lr}")
    need(0 <= c.server_momentum < 1, f"server_momentum must be in [0, 1); got {c.server_momentum}")
    need(c.server_tau > 0, f"server_tau must be > 0; got {c.server_tau}")
    need(c.eval_every >= 1, f"eval_every must be >= 1; got {c.eval_every}")
    need(c.timeout_seconds > 0, f"timeout_seconds must be > 0; got {c.timeout_seconds}")
    need(c.ray_actors >= 1, f"ray_actors must be >= 1; got {c.ray_actors}")
    need(c.execution == "ray" or c.ray_address is None,
         f"ray_address is used by execution=ray only; got execution={c.execution}")
    need(c.execution != "ray" or c.runtime == "simulator",
         "execution=ray runs the simulator's clients on Ray actors; it does not combine with "
         f"runtime={c.runtime}")
    need(c.execution != "ray" or importlib.util.find_spec("ray") is not None,
         "execution=ray needs Ray, an optional extra: pip install 'lowcomm[ray]'")
    need(c.runtime != "distributed" or c.execution != "processes",
         "execution=processes does not run distributed: each rank is already one process "
         "(use auto, sequential or vectorized)")
    need(1 <= c.min_cohort <= c.clients_per_round, f"min_cohort must be in [1, "
         f"clients_per_round={c.clients_per_round}]; got {c.min_cohort}")
    need(c.max_upload_nbytes is None or c.max_upload_nbytes >= 1,
         f"max_upload_nbytes must be >= 1; got {c.max_upload_nbytes}")
    need(c.round_timeout_seconds is None or c.round_timeout_seconds > 0,
         f"round_timeout_seconds must be > 0; got {c.round_timeout_seconds}")
    from lowcomm.runtime.faults import FaultPlan  # torch: not needed for --help

    try:
        plan = FaultPlan.parse(c.fault)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    need(c.checkpoint_dir is None or c.runtime != "distributed"
         or not any(f.kind == "kill" for f in plan.faults),
         "checkpoint_dir with runtime=distributed does not go with a kill fault (a resumed run "
         "would bring the killed rank back)")
    need(c.eval_samples is None or c.eval_samples >= 1,
         f"eval_samples must be >= 1; got {c.eval_samples}")
    need(c.network_sigma >= 0, f"network_sigma must be >= 0; got {c.network_sigma}")
    for name in ("up_mbps", "down_mbps", "uplink_ratio"):
        value = getattr(c, name)
        need(value is None or value > 0, f"{name} must be > 0; got {value}")
    need(c.latency_ms is None or c.latency_ms >= 0, f"latency_ms must be >= 0; got {c.latency_ms}")
    if c.partition == "natural":
        need(c.dataset in NATURAL_DATASETS, f"partition=natural needs a dataset with natural "
             f"clients ({', '.join(NATURAL_DATASETS)}); got dataset={c.dataset}")
    if c.dataset in ("synthetic", "shakespeare"):
        need(c.partition == "natural", f"dataset={c.dataset} is split by its natural clients; "
             f"set partition=natural (got partition={c.partition})")
    if c.network == "mobile":
        need(c.uplink_ratio is not None, "network=mobile needs --uplink-ratio: the traces "
             "measure one direction only")
    need((c.model == "char_lstm") == (c.dataset == "shakespeare"),
         f"model=char_lstm goes with dataset=shakespeare and only there; got model={c.model}, "
         f"dataset={c.dataset}")


def validate_checkpointing(c: Any) -> None:
    """The checkpoint options of a run or train config (either runtime)."""
    for name in ("checkpoint_every", "checkpoint_keep"):
        if getattr(c, name) < 1:
            raise ConfigError(f"{name} must be >= 1; got {getattr(c, name)}")
    if c.resume and c.checkpoint_dir is None:
        raise ConfigError("resume needs checkpoint_dir: the folder to resume from")
