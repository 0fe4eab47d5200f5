"""DiLoCo: Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen,
"DiLoCo: Distributed Low-Communication Training of Language Models", arXiv 2311.08105 (2023),
Algorithm 1; and Local SGD (Stich, "Local SGD Converges Fast and Communicates Little", ICLR 2019,
arXiv 1805.09767) as its special case with plain averaging.

Algorithm 1, paper notation -> code:
    k workers, shard D_i                   -> the runtime's workers and their shards
    theta^(t-1) (global model)             -> `state.outer` (identical on every worker)
    theta_i^(t) (worker i's replica)       -> `state.params`
    H inner steps of InnerOpt              -> `inner_steps`, `inner_optimizer` (AdamW in the
                                              paper: lr 4e-4, wd 0.1, betas (0.9, 0.95), warmup
                                              + cosine; its state persists across outer steps)
    delta_i = theta^(t-1) - theta_i^(t)    -> the posted all-reduce `vector` (the outer gradient)
    Delta^(t) = (1/k) sum_i delta_i         -> the all-reduce result
    theta^(t) = OuterOpt(theta^(t-1), Delta) -> `receive`; OuterOpt = SGD(lr 0.7, momentum 0.9,
                                              Nesterov) in the paper, PyTorch's convention
A sync happens after every H-th inner step (global steps H, 2H, ...); the replica restarts from
the new theta. Elastic membership: every replica holds the same theta and OuterOpt state after
a sync, so a joiner receives exactly those (`shared`) and starts its own InnerOpt afresh.
Bytes: one all-reduce of d values per H steps, so exactly H times fewer than data-parallel
training at the same wire codec; `codec=fp16()` sends the outer gradients in half precision
(OpenDiLoCo, Jaghouar et al. 2024, arXiv 2407.07852) while the ring accumulates in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lowcomm.algorithms.base import describe_optimizer
from lowcomm.algorithms.optim import Optimizer, sgd, state_arrays, state_from_arrays
from lowcomm.algorithms.replicated.base import (
    AllReduce,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    StepOutput,
    require_positive_int,
)
from lowcomm.algorithms.replicated.inner import inner_step
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class DiLoCoState:
    outer: torch.Tensor  # [d] theta^(t-1), the last synchronised global model
    outer_state: Any  # OuterOpt's state (the Nesterov buffer), identical on every worker
    params: torch.Tensor  # [d] theta_i, this worker's replica during the inner phase
    inner_state: Any  # InnerOpt's state, this worker's own


def outer_nesterov(lr: float = 0.7, momentum: float = 0.9) -> Optimizer:
    """DiLoCo's outer optimizer: SGD with Nesterov momentum (the paper's lr 0.7, momentum 0.9)."""
    return sgd(lr, momentum=momentum, nesterov=True)


def diloco(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int = 500,
           outer_optimizer: Optimizer | None = None, codec: Codec | None = None
           ) -> ReplicatedAlgorithm:
    """DiLoCo with H = `inner_steps` (the paper's default 500) and OuterOpt =
    `outer_optimizer` (default `outer_nesterov()`); outer gradients are sent as `codec`."""
    h = require_positive_int("inner_steps (H)", inner_steps)
    outer_opt = outer_optimizer or outer_nesterov()
    codec = codec or fp32()

    def init(params: torch.Tensor, worker: int, workers: int) -> DiLoCoState:
        outer = params.detach().clone()
        return DiLoCoState(outer, outer_opt.init(outer), outer.clone(),
                           inner_optimizer.init(outer))

    def step(state: DiLoCoState, batch, ctx: StepContext) -> StepOutput:
        params, inner_state, loss = inner_step(model, state.params, state.inner_state,
                                               inner_optimizer, batch)
        state = DiLoCoState(state.outer, state.outer_state, params, inner_state)
        posts = ()
        if ctx.step % h == 0:  # delta_i = theta^(t-1) - theta_i^(t), blocking
            posts = (AllReduce("outer_grad", state.outer - params, codec),)
        return StepOutput(state, loss, posts, steps={len(batch[1]): 1})

    def receive(state: DiLoCoState, received: Received, ctx: StepContext) -> DiLoCoState:
        outer, outer_state = outer_opt.apply(state.outer, received.value, state.outer_state)
        return DiLoCoState(outer, outer_state, outer.clone(), state.inner_state)

    def shared(state: DiLoCoState) -> Payload:  # what a joiner receives: theta and OuterOpt
        return Payload({"outer": state.outer, **state_arrays("outer_state", state.outer_state)})

    def adopt(state: DiLoCoState, payload: Payload) -> DiLoCoState:
        outer = payload.tensor("outer")  # the joiner's InnerOpt state stays its own (fresh)
        outer_state = state_from_arrays("outer_state", state.outer_state, payload)
        return DiLoCoState(outer, outer_state, outer.clone(), state.inner_state)

    return ReplicatedAlgorithm(
        name="diloco",
        hyperparams={"inner_steps": h, "inner_optimizer": describe_optimizer(inner_optimizer),
                     "outer_optimizer": describe_optimizer(outer_opt), "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.outer,
        num_params=model.layout.size,
        overlap="none: the outer-gradient all-reduce blocks the next inner phase",
        shared=shared, adopt=adopt)


def localsgd(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int,
             codec: Codec | None = None) -> ReplicatedAlgorithm:
    """Local SGD: every H steps the replicas are averaged. This is DiLoCo with OuterOpt =
    SGD(lr 1, no momentum): theta - (1/k) sum_i (theta - theta_i) = (1/k) sum_i theta_i."""
    algorithm = diloco(model, inner_optimizer=inner_optimizer, inner_steps=inner_steps,
                       outer_optimizer=sgd(1.0), codec=codec)
    return ReplicatedAlgorithm(**{**algorithm.__dict__, "name": "localsgd"})
