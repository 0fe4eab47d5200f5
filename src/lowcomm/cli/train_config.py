"""The typed configuration of `lowcomm train` (data-centre training), parsed only at the edge.

As for `lowcomm run`: the dataclass fields are the YAML keys, their dashed forms the flags, and
every mistake is one line naming the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lowcomm.cli.config import (
    ConfigError,
    _opt,
    bind_address_option,
    checkpoint_dir_option,
    checkpoint_every_option,
    checkpoint_keep_option,
    resume_option,
    runtime_option,
    timeout_seconds_option,
    validate_checkpointing,
)

if TYPE_CHECKING:
    from lowcomm.runtime.membership import Membership

CORPORA = ("python_docs", "tiny_shakespeare")
TRAIN_ALGORITHMS = ("ddp", "localsgd", "diloco", "noloco", "streaming_diloco",
                    "eager_diloco", "spsa", "co2")
OUTER_OVERLAPS = ("eager", "delayed")
ZO_QUANTIZATIONS = ("int8", "int8-nearest", "fp32")
OUTER_OPTIMIZERS = ("nesterov", "avg", "momentum", "adam")
SCHEDULES = ("cosine", "constant")
SCENARIO_NAMES = ("datacenter", "cross-region", "internet")
ELASTIC = ("ddp", "localsgd", "diloco")  # may change membership (`ReplicatedAlgorithm.elastic`)
# The paper's outer momentum of each algorithm, used when --outer-momentum is not given.
# NoLoCo's configs (arXiv 2506.10911) and CO2's (the authors' fairscale port of arXiv 2401.16265;
# the paper's per-experiment value is not stated); the rest: DiLoCo's.
OUTER_MOMENTUM = {"noloco": 0.5, "co2": 0.5}
# Likewise the outer learning rate when --outer-lr is not given: CO2's from the authors' port
# (docs/training.md, CO2); the rest DiLoCo's 0.7 (NoLoCo's alpha is 0.7 too).
OUTER_LR = {"co2": 1.0}


@dataclass(frozen=True)
class TrainConfig:
    # data
    dataset: str = _opt("python_docs", "text corpus: python_docs (Python's own documentation, "
                        "shipped with Python; no data directory) or tiny_shakespeare (from the "
                        "data directory)", choices=CORPORA, section="data")
    data_dir: str | None = _opt(None, "folder with the real datasets (default: $LOWCOMM_DATA)",
                                section="data")
    seq_len: int = _opt(64, "characters per training window", section="data")
    batch_size: int = _opt(16, "windows per worker per inner step", section="data")
    eval_windows: int = _opt(64, "held-out windows evaluated (fixed, from the text's tail)",
                             section="data")
    # model
    layers: int = _opt(2, "transformer blocks", section="model")
    width: int = _opt(128, "model width (embedding size)", section="model")
    heads: int = _opt(4, "attention heads", section="model")
    # algorithm
    algorithm: str = _opt("diloco", "training algorithm", choices=TRAIN_ALGORITHMS,
                          section="training")
    workers: int = _opt(4, "workers (replicas), each with its own contiguous shard",
                        section="training")
    steps: int = _opt(200, "global inner steps T (every worker takes T steps)",
                      section="training")
    inner_steps: int = _opt(50, "H: inner steps between synchronisations (diloco, localsgd, "
                            "noloco)",
                            section="training")
    inner_lr: float = _opt(1e-3, "inner AdamW learning rate (DiLoCo's paper: 4e-4 at 60M+ "
                           "parameters; small models take more)", section="training")
    weight_decay: float = _opt(0.1, "inner AdamW decoupled weight decay (paper: 0.1)",
                               section="training")
    beta2: float = _opt(0.95, "inner AdamW beta2 (paper: 0.95; beta1 is 0.9)",
                        section="training")
    warmup_steps: int = _opt(20, "inner linear warmup steps", section="training")
    schedule: str = _opt("cosine", "inner learning-rate schedule after warmup: cosine (to 0 at "
                         "--steps, as in DiLoCo) or constant", choices=SCHEDULES,
                         section="training")
    outer_optimizer: str = _opt("nesterov", "outer step on the averaged outer gradient: "
                                "nesterov (DiLoCo), avg (plain averaging = Local SGD), "
                                "momentum, adam", choices=OUTER_OPTIMIZERS, section="training")
    outer_lr: float | None = _opt(None, "outer learning rate (default: the algorithm's value, "
                                  "DiLoCo 0.7, NoLoCo's alpha on the pair's mean progress 0.7, "
                                  "CO2 1.0)", section="training")
    outer_momentum: float | None = _opt(None, "outer momentum (default: the algorithm's "
                                        "paper value, DiLoCo 0.9, NoLoCo 0.5)",
                                        section="training")
    averaging_strength: float | None = _opt(None, "noloco: gamma, the pull towards the "
                                            "partner's slow weights (default: outer_lr, as in "
                                            "the authors' code; 0 drops the term)",
                                            section="training")
    fragments: int = _opt(2, "P: fragments of streaming_diloco, strided over transformer blocks "
                          "(must divide --layers and --inner-steps)", section="training")
    overlap_steps: int = _opt(1, "tau: inner steps a fragment's all-reduce overlaps before it "
                              "is applied (streaming_diloco; must be < H/P)", section="training")
    mixing: float = _opt(0.5, "alpha in [0, 1]: a synced fragment becomes alpha*local + "
                         "(1-alpha)*global (streaming_diloco; 0 takes the global one)",
                         section="training")
    outer_overlap: str = _opt("eager", "eager_diloco's outer step while the mean is in flight: "
                              "eager (local proxy) or delayed (one phase late)",
                              choices=OUTER_OVERLAPS, section="training")
    co2_penalty: float = _opt(1.0, "co2: staleness gap penalty coefficient (0 switches it off)",
                              section="training")
    co2_clip_threshold: float = _opt(1.0, "co2: outer momentum clip threshold (element-wise clamp)",
                                     section="training")
    co2_no_clip: bool = _opt(False, "co2: switch outer momentum clipping off (ablation)",
                             section="training")
    codec: str = _opt("fp32", "wire codec of the all-reduced vectors, applied per ring chunk "
                      "with fp32 accumulation (noloco: of the exchanged vectors): fp32, fp16, "
                      "bf16, fp4 (4-bit E3M0), or a stateless codec spec",
                      section="training")
    zo_lr: float = _opt(1e-3, "spsa: step size lr of theta <- theta - lr/(n*k) sum g*z",
                        section="training")
    zo_epsilon: float = _opt(1e-3, "spsa: perturbation size epsilon (MeZO: 1e-3)",
                             section="training")
    zo_seeds: int = _opt(4, "spsa: k, seeds (perturbation directions) per worker per step",
                         section="training")
    zo_quantization: str = _opt("int8", "spsa: wire format of each projected gradient: int8 "
                                "(one byte, stochastic rounding, unbiased within +-zo_clip), "
                                "int8-nearest (one byte, rounded to nearest: biased) or fp32 "
                                "(4 bytes)", choices=ZO_QUANTIZATIONS, section="training")
    zo_clip: float = _opt(8.0, "spsa: clip C of the one-byte grid (C/127)*{-127..127}; larger "
                          "projected gradients are clipped to +-C", section="training")
    membership: str | None = _opt(None, "elastic membership: workers join or leave between "
                                  "outer steps, e.g. '20:join,40:leave 1' (STEP:join or "
                                  "STEP:leave W, STEP a multiple of inner_steps; a new worker "
                                  "takes the next unused id; ddp, localsgd, diloco). --workers "
                                  "is the initial count; distributed: one process per id",
                                  section="training")
    fault: tuple[str, ...] = _opt((), "inject a fault: 'kill worker W at step T' ends worker "
                                  "W's process by SIGKILL after its step T, inside an inner "
                                  "phase (distributed); the run goes on as if W had left at the "
                                  "boundary before, which is what the simulator runs (needs "
                                  "eval_every == inner_steps; repeatable)", section="faults")
    eval_every: int = _opt(50, "evaluate (and hash the replicas) every N steps",
                           section="training")
    seed: int = _opt(0, "seed of every random stream of the run", section="training")
    # cost models (modeled, never measured)
    network: str = _opt("internet", "bandwidth scenario for the headline modeled time; the "
                        "summary also prints every scenario", choices=SCENARIO_NAMES,
                        section="cost")
    bandwidth_gbps: float | None = _opt(None, "override the scenario's per-worker bandwidth "
                                        "in Gb/s", section="cost")
    latency_ms: float | None = _opt(None, "override the scenario's one-way latency per hop in "
                                    "ms", section="cost")
    flops_per_second: float = _opt(1e12, "each worker's sustained counted FLOP/s (assumed "
                                   "default: 1 TFLOP/s)", section="cost")
    # runtime
    runtime: str = runtime_option("one worker")
    bind_address: str = bind_address_option()
    timeout_seconds: float = timeout_seconds_option()
    unannounced_leaves: bool = _opt(False, "distributed: survive workers that end without "
                                    "notice between outer steps (as if they left at the "
                                    "boundary before; needs eval_every == inner_steps; on "
                                    "with --fault)", section="runtime")
    # bookkeeping
    name: str | None = _opt(None, "a name for the run record", section="output")
    db: str | None = _opt(None, "SQLite file for run records (default: the user's data home)",
                          section="output")
    no_store: bool = _opt(False, "do not store a run record", section="output")
    checkpoint_dir: str | None = checkpoint_dir_option()
    checkpoint_every: int = checkpoint_every_option()
    checkpoint_keep: int = checkpoint_keep_option()
    resume: bool = resume_option()


def validate_train(c: TrainConfig) -> None:
    """Reject impossible combinations with a one-line message naming the value."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    for name in ("seq_len", "batch_size", "eval_windows", "layers", "width", "heads",
                 "workers", "steps", "inner_steps", "zo_seeds", "eval_every"):
        value = getattr(c, name)
        need(value >= 1, f"{name} must be >= 1; got {value}")
    need(c.width % c.heads == 0, f"width ({c.width}) must be a multiple of heads ({c.heads})")
    need(c.fragments >= 1, f"fragments must be >= 1; got {c.fragments}")
    need(c.overlap_steps >= 0, f"overlap_steps must be >= 0; got {c.overlap_steps}")
    need(0 <= c.mixing <= 1, f"mixing must be in [0, 1]; got {c.mixing}")
    need(c.inner_lr > 0, f"inner_lr must be > 0; got {c.inner_lr}")
    need(c.weight_decay >= 0, f"weight_decay must be >= 0; got {c.weight_decay}")
    need(0 <= c.beta2 < 1, f"beta2 must be in [0, 1); got {c.beta2}")
    need(c.warmup_steps >= 0, f"warmup_steps must be >= 0; got {c.warmup_steps}")
    need(c.schedule == "constant" or c.warmup_steps < c.steps,
         f"warmup_steps ({c.warmup_steps}) must be < steps ({c.steps}) with a cosine schedule")
    need(c.outer_lr is None or c.outer_lr > 0, f"outer_lr must be > 0; got {c.outer_lr}")
    momentum = outer_momentum(c)
    need(0 <= momentum < 1, f"outer_momentum must be in [0, 1); got {momentum}")
    need(c.outer_optimizer != "nesterov" or momentum > 0,
         "outer_optimizer=nesterov needs outer_momentum > 0")
    need(c.averaging_strength is None or c.averaging_strength >= 0,
         f"averaging_strength must be >= 0; got {c.averaging_strength}")
    need(c.algorithm != "noloco" or c.outer_optimizer == "nesterov",
         f"noloco has its own outer step; outer_optimizer applies to diloco (got "
         f"{c.outer_optimizer})")
    need(c.algorithm != "noloco" or c.workers >= 2,
         f"noloco pairs workers and needs workers >= 2; got {c.workers}")
    need(math.isfinite(c.co2_penalty) and c.co2_penalty >= 0,
         f"co2_penalty must be a finite number >= 0; got {c.co2_penalty}")
    need(math.isfinite(c.co2_clip_threshold) and c.co2_clip_threshold > 0,
         f"co2_clip_threshold must be a finite number > 0; got {c.co2_clip_threshold}")
    for name in ("zo_lr", "zo_epsilon", "zo_clip"):
        value = getattr(c, name)
        need(math.isfinite(value) and value > 0, f"{name} must be a finite number > 0; got "
             f"{value}")
    need(c.bandwidth_gbps is None or c.bandwidth_gbps > 0,
         f"bandwidth_gbps must be > 0; got {c.bandwidth_gbps}")
    need(c.latency_ms is None or c.latency_ms >= 0, f"latency_ms must be >= 0; got {c.latency_ms}")
    need(c.flops_per_second > 0, f"flops_per_second must be > 0; got {c.flops_per_second}")
    need(c.timeout_seconds > 0, f"timeout_seconds must be > 0; got {c.timeout_seconds}")
    validate_checkpointing(c)
    distributed_checkpoints = c.checkpoint_dir is not None and c.runtime == "distributed"
    for name, what in (("membership", "--membership"), ("unannounced_leaves",
                                                        "--unannounced-leaves"),
                       ("fault", "--fault")):
        need(not (distributed_checkpoints and getattr(c, name)),
             f"checkpoint_dir with runtime=distributed does not go with {what} (a rank that "
             "leaves or vanishes holds no checkpoint of every step); checkpoint without it")
    need(c.membership is None or c.algorithm in ELASTIC,
         f"membership: {c.algorithm} cannot change its workers between syncs (its replicas do "
         f"not hold one identical state); elastic algorithms: {', '.join(ELASTIC)}")
    membership_of(c)
    from lowcomm.cli.train_faults import kills_of  # it builds on this module

    kills_of(c)
    need(not c.unannounced_leaves or c.algorithm in ELASTIC,
         f"unannounced_leaves: {c.algorithm} cannot change its workers between syncs; "
         f"elastic algorithms: {', '.join(ELASTIC)}")
    need(not c.fault or c.algorithm in ELASTIC,
         f"fault: a killed worker leaves, and {c.algorithm} cannot change its workers between "
         f"syncs; elastic algorithms: {', '.join(ELASTIC)}")


def membership_schedule(text: str) -> dict[int, list[str]]:
    """`"20:join,40:leave 1"` as `{20: ["join"], 40: ["leave 1"]}` (events of a step in order);
    the events themselves are checked by `parse_membership`."""
    schedule: dict[int, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        step, sep, event = item.partition(":")
        if not sep or not step.strip().isdigit():
            raise ConfigError(f"membership entry {item!r} must be STEP:join or STEP:leave W "
                              "(e.g. '20:join,40:leave 1')")
        schedule.setdefault(int(step), []).append(" ".join(event.split()))
    return schedule


def membership_of(c: TrainConfig) -> Membership:
    """The run's membership (static without --membership); mistakes as `ConfigError`."""
    from lowcomm.runtime.membership import parse_membership  # imports torch: not for --help

    try:
        return parse_membership(membership_schedule(c.membership or ""),
                                initial_workers=c.workers, steps=c.steps,
                                inner_steps=1 if c.algorithm == "ddp" else c.inner_steps)
    except ValueError as err:
        raise ConfigError(f"membership: {err}") from None


def outer_lr(c: TrainConfig) -> float:
    """The outer learning rate of the run: the flag, else the algorithm's value."""
    if c.outer_lr is not None:
        return c.outer_lr
    return OUTER_LR.get(c.algorithm, 0.7)


def outer_momentum(c: TrainConfig) -> float:
    """The outer momentum of the run: the flag, else the algorithm's paper value."""
    if c.outer_momentum is not None:
        return c.outer_momentum
    return OUTER_MOMENTUM.get(c.algorithm, 0.9)
