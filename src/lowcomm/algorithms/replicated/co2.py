"""CO2: Sun, Qin, Sun, Li, Li, Shen, Qiao, Zhong, "CO2: Efficient Distributed Training with Full
Communication-Computation Overlap", ICLR 2024, arXiv 2401.16265.

Local updating (tau inner AdamW steps) plus an asynchronous all-reduce: the outer gradient of
round t is posted after step t*tau with `delay_steps = tau`, so the whole next round of compute
hides it, and the outer step taken at the end of round t+1 uses round t's average (one round
stale). Two stabilisers, each switchable for ablations:
- staleness gap penalty: the stale average Delta was computed against theta^(t-1) but is
  applied to theta^(t); the gap G = theta^(t) - theta^(t-1) shrinks the update,
  Delta <- Delta / lambda, lambda = 1 + penalty * ||G|| / ||Delta||  (penalty=0 switches it off);
- outer momentum clipping: every element of the outer momentum m is clamped to
  [-clip_threshold, clip_threshold] (clip=False switches it off).
What was checked (paper abstract and Fig. 1 caption, the ICLR 2024 reviews, the authors' fairscale
port; see docs/training.md): the one-round-stale overlapped outer step; that the penalty is
recomputed every outer step from the staleness gap and divides the new outer gradient before
it enters the momentum (m <- beta*m + Delta/lambda); that the clip acts on the outer momentum
after that update, with a threshold (phi); the clip is element-wise (the port calls
torch.clamp(m, -phi, phi), though it drops the result); the port's defaults (outer_momentum
0.5, outer_lr 1.0, penalty 1.0, clip threshold 1.0). [U: the exact lambda (here one scalar from
a norm ratio; the paper's Lambda_t may be per element) was not readable in the stored sources,
nor are the paper's own tau and outer lr per experiment (the reviews ask for them); the port
uses a constant lambda = penalty and leaves the clip off by default; here it is on.]

Paper notation -> code:
    tau local steps                -> `inner_steps`, `inner_optimizer` (AdamW)
    theta^(t) (global model)       -> `state.outer`, identical on every worker
    theta_{i,t} (local replica)    -> `state.params`
    Delta_i = theta^(t-1) - theta_i -> the posted all-reduce vector
    m (outer momentum), beta, alpha -> `state.momentum`, `outer_momentum`, `outer_lr`
    Lambda_t (staleness penalty)    -> `staleness_factor(...)`, coefficient `penalty`
    phi (clip threshold)            -> `clip_threshold`
    m <- clip(beta*m + Delta/lambda, phi); theta^(t+1) = theta^(t) - alpha*m  -> `receive`
Every worker applies the same stale mean with the same penalty and clip, so the outer models
(what is served and hashed) stay bit-identical. Bytes equal DiLoCo's at H = tau: one
all-reduce of d values per tau steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from lowcomm.algorithms.base import describe_optimizer
from lowcomm.algorithms.optim import Optimizer
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
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class CO2State:
    outer: torch.Tensor  # [d] theta^(t), identical on every worker
    previous: torch.Tensor  # [d] theta^(t-1): what the in-flight Delta was computed against
    momentum: torch.Tensor  # [d] m, identical on every worker
    params: torch.Tensor  # [d] this worker's replica during the local phase
    inner_state: Any


def _finite(name: str, value: Any, ok: bool, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not ok:
        raise ValueError(f"{name} must be {rule}; got {value!r}")
    return float(value)


def staleness_factor(delta: torch.Tensor, gap: torch.Tensor, penalty: float) -> float:
    """lambda = 1 + penalty * ||gap|| / ||delta|| (1 when delta is zero)."""
    norm = float(delta.norm())
    return 1.0 if norm == 0.0 else 1.0 + penalty * float(gap.norm()) / norm


def clip_elements(m: torch.Tensor, threshold: float) -> torch.Tensor:
    """Every element of `m` clamped to [-threshold, threshold] (the authors' port's clamp)."""
    return m.clamp(-threshold, threshold)


def co2(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int = 3,
        outer_lr: float = 1.0, outer_momentum: float = 0.5, penalty: float = 1.0,
        clip: bool = True, clip_threshold: float = 1.0, codec: Codec | None = None
        ) -> ReplicatedAlgorithm:
    """CO2 with tau = `inner_steps`; `penalty=0` / `clip=False` switch the stabilisers off."""
    tau = require_positive_int("inner_steps (tau)", inner_steps)
    lr = _finite("outer_lr", outer_lr, outer_lr > 0, "a finite number > 0")
    beta = _finite("outer_momentum", outer_momentum, 0 <= outer_momentum < 1, "in [0, 1)")
    pen = _finite("penalty", penalty, penalty >= 0, "a finite number >= 0")
    threshold = _finite("clip_threshold", clip_threshold, clip_threshold > 0,
                        "a finite number > 0")
    codec = codec or fp32()

    def init(params: torch.Tensor, worker: int, workers: int) -> CO2State:
        outer = params.detach().clone()
        return CO2State(outer, outer.clone(), torch.zeros_like(outer), outer.clone(),
                        inner_optimizer.init(outer))

    def step(state: CO2State, batch, ctx: StepContext) -> StepOutput:
        params, inner_state, loss = inner_step(model, state.params, state.inner_state,
                                               inner_optimizer, batch)
        state = replace(state, params=params, inner_state=inner_state)
        posts = ()
        if ctx.step % tau == 0:  # Delta_i = theta^(t) - theta_i, its mean needed a round later
            posts = (AllReduce("outer_grad", state.outer - params, codec, delay_steps=tau),)
            state = replace(state, params=state.outer.clone())
        return StepOutput(state, loss, posts, steps={len(batch[1]): 1})

    def receive(state: CO2State, received: Received, ctx: StepContext) -> CO2State:
        delta = received.value  # computed against state.previous, applied to state.outer
        lam = staleness_factor(delta, state.outer - state.previous, pen) if pen > 0 else 1.0
        m = beta * state.momentum + delta / lam
        if clip:
            m = clip_elements(m, threshold)
        outer = state.outer - lr * m
        return CO2State(outer, state.outer.clone(), m, outer.clone(), state.inner_state)

    return ReplicatedAlgorithm(
        name="co2",
        hyperparams={"inner_steps": tau, "outer_lr": lr, "outer_momentum": beta,
                     "penalty": pen, "clip": clip, "clip_threshold": threshold,
                     "inner_optimizer": describe_optimizer(inner_optimizer),
                     "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.outer,
        num_params=model.layout.size,
        overlap=f"the outer-gradient all-reduce overlaps the next {tau} local steps; the "
                "outer step uses the previous round's average")
