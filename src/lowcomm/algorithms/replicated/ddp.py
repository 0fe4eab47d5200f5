"""Data-parallel training: the gradient is all-reduced after every step (the baseline).

Every worker computes the gradient of its own minibatch; the ring all-reduce averages the p
gradients; every worker applies the same optimizer step to the same parameters, so the replicas
stay identical. With p workers of batch B this is single-machine training at batch p·B (Goyal
et al. 2017, "Accurate, Large Minibatch SGD", arXiv 1706.02677, §2). DiLoCo's paper compares
against exactly this baseline (Douillard et al. 2023, §3).

Notation -> code: theta -> `state.params`; g_i = grad L_i(theta) -> the posted `vector`;
g = (1/p) sum_i g_i -> the all-reduce result; theta <- Opt(theta, g) -> `receive`.
Per worker per step: one all-reduce of d values, sent as `codec` (fp32 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lowcomm.algorithms.base import describe_optimizer
from lowcomm.algorithms.optim import Optimizer, state_arrays, state_from_arrays
from lowcomm.algorithms.replicated.base import (
    AllReduce,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    StepOutput,
)
from lowcomm.algorithms.replicated.inner import gradient
from lowcomm.compress import Codec, fp32
from lowcomm.core import Payload
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class DDPState:
    params: torch.Tensor  # [d] theta, identical on every worker
    opt_state: Any


def ddp(model: ModelFn, *, optimizer: Optimizer, codec: Codec | None = None
        ) -> ReplicatedAlgorithm:
    """Data-parallel `optimizer` (e.g. `adamw(4e-4)`) with a blocking gradient all-reduce."""
    codec = codec or fp32()

    def init(params: torch.Tensor, worker: int, workers: int) -> DDPState:
        params = params.detach().clone()
        return DDPState(params, optimizer.init(params))

    def step(state: DDPState, batch, ctx: StepContext) -> StepOutput:
        loss, grad = gradient(model, state.params, batch)
        post = AllReduce("grad", grad, codec)  # needed before the next step: no overlap
        return StepOutput(state, loss, (post,), steps={len(batch[1]): 1})

    def receive(state: DDPState, received: Received, ctx: StepContext) -> DDPState:
        params, opt_state = optimizer.apply(state.params, received.value, state.opt_state)
        return DDPState(params, opt_state)

    def shared(state: DDPState) -> Payload:  # every replica holds theta and Opt's state
        return Payload({"params": state.params, **state_arrays("opt_state", state.opt_state)})

    def adopt(state: DDPState, payload: Payload) -> DDPState:
        return DDPState(payload.tensor("params"),
                        state_from_arrays("opt_state", state.opt_state, payload))

    return ReplicatedAlgorithm(
        name="ddp", hyperparams={"optimizer": describe_optimizer(optimizer),
                                 "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.params,
        num_params=model.layout.size,
        overlap="none: the gradient all-reduce blocks the next step",
        shared=shared, adopt=adopt)
