"""Objects of a `lowcomm train` run, built from its config: the only name -> factory registry of
data-centre algorithms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lowcomm import cost, data, models
from lowcomm.algorithms import adam, adamw, sgd
from lowcomm.algorithms.optim import Optimizer
from lowcomm.algorithms.replicated import (
    ReplicatedAlgorithm,
    co2,
    ddp,
    diloco,
    eager_diloco,
    localsgd,
    noloco,
    spsa,
    streaming_diloco,
)
from lowcomm.cli.codecs import parse_codec
from lowcomm.cli.config import ConfigError
from lowcomm.cli.train_config import (
    SCENARIO_NAMES,
    TrainConfig,
    membership_of,
    outer_lr,
    outer_momentum,
)
from lowcomm.compress import Codec, ScalarQuantizer, fp32_scalars, int8_scalars
from lowcomm.data import DataDirError
from lowcomm.runtime import WorkerData


@dataclass(frozen=True)
class TrainParts:
    corpus: data.TextCorpus
    spec: models.ModelSpec
    model: models.ModelFn
    params: torch.Tensor
    worker_data: WorkerData
    algorithm: ReplicatedAlgorithm


def inner_optimizer(c: TrainConfig) -> Optimizer:
    return adamw(c.inner_lr, b1=0.9, b2=c.beta2, weight_decay=c.weight_decay,
                 warmup_steps=c.warmup_steps,
                 total_steps=c.steps if c.schedule == "cosine" else None)


def outer_optimizer(c: TrainConfig) -> Optimizer:
    if c.outer_optimizer == "avg":
        return sgd(1.0)
    if c.outer_optimizer == "adam":
        return adam(outer_lr(c), b1=outer_momentum(c))
    return sgd(outer_lr(c), momentum=outer_momentum(c),
               nesterov=c.outer_optimizer == "nesterov")


def wire_codec(c: TrainConfig) -> Codec:
    codec = parse_codec(c.codec)
    if codec.stateful:
        raise ConfigError(f"codec {c.codec!r} keeps state between messages; a ring all-reduce "
                          "re-encodes partial sums at every hop and needs a stateless codec")
    return codec


def zo_quantizer(c: TrainConfig) -> ScalarQuantizer:
    if c.zo_quantization == "fp32":
        return fp32_scalars()
    return int8_scalars(c.zo_clip, stochastic=c.zo_quantization == "int8")


Factory = Callable[[models.ModelFn, TrainConfig], ReplicatedAlgorithm]

ALGORITHMS: dict[str, Factory] = {
    "ddp": lambda m, c: ddp(m, optimizer=inner_optimizer(c), codec=wire_codec(c)),
    "localsgd": lambda m, c: localsgd(m, inner_optimizer=inner_optimizer(c),
                                      inner_steps=c.inner_steps, codec=wire_codec(c)),
    "diloco": lambda m, c: diloco(m, inner_optimizer=inner_optimizer(c),
                                  inner_steps=c.inner_steps, outer_optimizer=outer_optimizer(c),
                                  codec=wire_codec(c)),
    "noloco": lambda m, c: noloco(m, inner_optimizer=inner_optimizer(c),
                                  inner_steps=c.inner_steps, outer_lr=outer_lr(c),
                                  outer_momentum=outer_momentum(c),
                                  averaging_strength=c.averaging_strength, codec=wire_codec(c)),
    "streaming_diloco": lambda m, c: streaming_diloco(
        m, inner_optimizer=inner_optimizer(c), inner_steps=c.inner_steps, fragments=c.fragments,
        overlap_steps=c.overlap_steps, mixing=c.mixing, outer_optimizer=outer_optimizer(c),
        codec=wire_codec(c)),
    "eager_diloco": lambda m, c: eager_diloco(
        m, inner_optimizer=inner_optimizer(c), inner_steps=c.inner_steps, mode=c.outer_overlap,
        outer_optimizer=outer_optimizer(c), codec=wire_codec(c)),
    "spsa": lambda m, c: spsa(m, lr=c.zo_lr, epsilon=c.zo_epsilon, seeds_per_step=c.zo_seeds,
                              quantizer=zo_quantizer(c)),
    "co2": lambda m, c: co2(m, inner_optimizer=inner_optimizer(c), inner_steps=c.inner_steps,
                            outer_lr=outer_lr(c), outer_momentum=outer_momentum(c),
                            penalty=c.co2_penalty, clip=not c.co2_no_clip,
                            clip_threshold=c.co2_clip_threshold, codec=wire_codec(c)),
}


def load_corpus(c: TrainConfig) -> data.TextCorpus:
    if c.dataset == "python_docs":
        return data.python_docs()
    try:
        return data.tiny_shakespeare(c.data_dir)
    except DataDirError as err:
        raise ConfigError(str(err)) from None


def build_train(c: TrainConfig) -> TrainParts:
    corpus = load_corpus(c)
    try:
        shards = data.shard_text(corpus.train_ids, membership_of(c).total_ids)  # one per id
        val_x, val_y = data.eval_windows(corpus.val_ids, seq_len=c.seq_len,
                                         max_windows=c.eval_windows)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if min(s.numel() for s in shards) <= c.seq_len:
        raise ConfigError(f"a shard of {shards[0].numel()} characters is too short for "
                          f"seq_len={c.seq_len}; use fewer workers or a shorter seq_len")
    spec = models.char_transformer(corpus.vocab_size, seq_len=c.seq_len, layers=c.layers,
                                   width=c.width, heads=c.heads)
    model, params = models.init_params(spec, seed=c.seed)

    def sample(worker: int, generator: torch.Generator):
        return data.sample_windows(shards[worker], batch_size=c.batch_size, seq_len=c.seq_len,
                                   generator=generator)

    worker_data = WorkerData(sample, val_x, val_y, (c.seq_len,))
    try:
        algorithm = ALGORITHMS[c.algorithm](model, c)
        algorithm.check_workers(c.workers)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return TrainParts(corpus, spec, model, params, worker_data, algorithm)


def build_networks(c: TrainConfig) -> dict[str, cost.ClusterNetwork]:
    """Every named scenario, with the caller's overrides applied to the chosen one."""
    out = {name: cost.scenario(name) for name in SCENARIO_NAMES}
    out[c.network] = cost.scenario(
        c.network, bandwidth_bps=None if c.bandwidth_gbps is None else c.bandwidth_gbps * 1e9,
        latency_seconds=None if c.latency_ms is None else c.latency_ms / 1e3)
    return out


def build_device(c: TrainConfig) -> cost.Accelerator:
    if c.flops_per_second == cost.Accelerator().flops_per_second:
        return cost.Accelerator()
    return cost.Accelerator(c.flops_per_second, source="declared by caller")
