"""DiLoCo with the outer step overlapped with the next inner phase: Kale, Douillard, Donchev,
"Eager Updates For Overlapped Communication and Computation in DiLoCo", arXiv 2502.12996 (2025).

The paper compares two ways of letting the outer-gradient all-reduce of phase j run during the
whole of phase j+1 ("1-outer-step overlap"); it writes them as Algorithm 2 (naive delayed outer
gradients) and Algorithm 3 (eager updates), two variants of one method, so here they are one
algorithm with `mode="delayed" | "eager"`. In both the all-reduce of Delta^(j) is posted after
step jH with `delay_steps = H`: its result is needed only after step (j+1)H, so a full inner
phase of compute hides it.

Phase j runs steps (j-1)H+1 .. jH from theta_m^(j-1); at its end
    Delta_m^(j) = theta_m^(j-1) - theta_m,local^(j)     (sent; the mean Delta^(j) arrives one
                                                         phase later)
- delayed (Algorithm 2): theta^(j) = OuterOpt(theta^(j-1), Delta^(j-1)), with Delta^(0) = 0
  (no outer step after phase 1). Every worker applies the same stale mean, so the replicas'
  outer models stay bit-identical.
- eager (Algorithm 3): worker m uses its own fresh outer gradient as a proxy for its part of
  the missing mean, and the others' delayed ones for theirs:
      Delta~_m^(j) = (1/M) Delta_m^(j) + (1/M) sum_{m' != m} Delta_m'^(j-1)
                   = (1/M) Delta_m^(j) + Delta^(j-1) - (1/M) Delta_m^(j-1)
      theta_m^(j) = OuterOpt(theta_m^(j-1), Delta~_m^(j)).
  Each outer gradient enters every worker's outer optimizer exactly once (its own at once, the
  others one phase late). The replicas' outer models therefore differ, by about lr/M times the
  spread of the fresh local gradients; so does each worker's outer optimizer state.
  [U: this formula is the implementer's card's; secondary summaries of the paper (its TL;DR and
  reviews) describe "a mixture of the current local outer gradient with the delayed [average]
  of all other replicas' outer gradients", which it matches, but §3 of the paper itself could
  not be read through this project's search tool, so the 1/M weights are not verified.]
After the last step the run waits for the last mean: delayed applies Delta^(J); eager applies
the others' remaining part, Delta^(J) - (1/M) Delta_m^(J). The paper's results (its Table 2, a
500M model, H=30): no overlap 2.67 eval loss, 1-outer-step delayed 3.01, eager 2.69.

Paper notation -> code: M -> workers; theta_m^(j-1) -> `state.outer`; theta_m,local ->
`state.params`; Delta_m^(j) -> the posted vector and, until its mean arrives, `state.fresh`;
Delta_m^(j-1) -> `state.own_previous`; Delta^(j-1) -> the all-reduce result; OuterOpt -> SGD
(lr 0.7, momentum 0.9, Nesterov) as DiLoCo. Bytes and compute equal DiLoCo's at the same H.
"""

from __future__ import annotations

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
from lowcomm.algorithms.replicated.diloco import outer_nesterov
from lowcomm.algorithms.replicated.inner import inner_step
from lowcomm.compress import Codec, fp32
from lowcomm.models import ModelFn

MODES = ("eager", "delayed")


@dataclass(frozen=True)
class EagerState:
    outer: torch.Tensor  # [d] theta_m^(j-1): this worker's outer model
    outer_state: Any  # OuterOpt's state (this worker's own in eager mode)
    params: torch.Tensor  # [d] theta_m,local during the inner phase
    inner_state: Any
    fresh: torch.Tensor | None = None  # [d] Delta_m^(j): sent, its eager step not yet taken
    own_previous: torch.Tensor | None = None  # [d] Delta_m^(j-1), whose mean is in flight


def eager_diloco(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int = 100,
                 mode: str = "eager", outer_optimizer: Optimizer | None = None,
                 codec: Codec | None = None) -> ReplicatedAlgorithm:
    """DiLoCo whose outer-gradient all-reduce overlaps the whole next inner phase, applied
    one phase late (`mode="delayed"`) or eagerly with the local proxy (`mode="eager"`)."""
    h = require_positive_int("inner_steps (H)", inner_steps)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    outer_opt = outer_optimizer or outer_nesterov()
    codec = codec or fp32()

    def init(params: torch.Tensor, worker: int, workers: int) -> EagerState:
        outer = params.detach().clone()
        return EagerState(outer, outer_opt.init(outer), outer.clone(),
                          inner_optimizer.init(outer))

    def outer_step(state: EagerState, delta: torch.Tensor, own: torch.Tensor | None
                   ) -> EagerState:
        """theta_m^(j) = OuterOpt(theta_m^(j-1), delta); the next phase starts from it."""
        outer, outer_state = outer_opt.apply(state.outer, delta, state.outer_state)
        return EagerState(outer, outer_state, outer.clone(), state.inner_state, None, own)

    def step(state: EagerState, batch, ctx: StepContext) -> StepOutput:
        params, inner_state, loss = inner_step(model, state.params, state.inner_state,
                                               inner_optimizer, batch)
        state = replace(state, params=params, inner_state=inner_state)
        if ctx.step % h:
            return StepOutput(state, loss, (), steps={len(batch[1]): 1})
        delta = state.outer - params  # Delta_m^(j); its mean is needed one phase later
        post = AllReduce("outer_grad", delta, codec, delay_steps=h)
        # the next phase starts from theta_m^(j-1) until the outer step below or in `receive`
        state = replace(state, params=state.outer.clone())
        if mode == "eager" and ctx.step == h:  # phase 1: nothing in flight, step at once
            state = outer_step(state, delta / ctx.workers, delta)
        elif mode == "eager":
            state = replace(state, fresh=delta)
        return StepOutput(state, loss, (post,), steps={len(batch[1]): 1})

    def receive(state: EagerState, received: Received, ctx: StepContext) -> EagerState:
        mean = received.value  # Delta^(j-1), posted one phase ago
        if mode == "delayed":
            return outer_step(state, mean, None)
        fresh = state.fresh if state.fresh is not None else torch.zeros_like(mean)  # at the end
        delta = (fresh - state.own_previous) / ctx.workers + mean  # Delta~_m^(j)
        return outer_step(state, delta, state.fresh)

    return ReplicatedAlgorithm(
        name="eager_diloco",
        hyperparams={"inner_steps": h, "mode": mode,
                     "inner_optimizer": describe_optimizer(inner_optimizer),
                     "outer_optimizer": describe_optimizer(outer_opt), "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.outer,
        num_params=model.layout.size,
        overlap=f"the outer-gradient all-reduce overlaps the whole next inner phase "
                f"({h} steps); outer step {mode}")
