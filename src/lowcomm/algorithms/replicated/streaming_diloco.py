"""Streaming DiLoCo: Douillard, Donchev, Rush, Kale, Charles, Garrett, Teston, Lacey, McIlroy,
Shen, Ramé, Szlam, Ranzato, Barham, "Streaming DiLoCo with overlapping communication: Towards a
Distributed Free Lunch", arXiv 2501.18512 (2025).

DiLoCo (`diloco.py`) with three changes, each a parameter here:

1. Streaming partial synchronisation. The model is split into P fragments, by transformer
   block, strided over depth (`fragments.py`). Each fragment is synchronised once every H inner
   steps, on a staggered schedule: fragment p (0-based) at global steps t with t = o_p + kH,
   o_p = (p+1)·H/P, the offsets of torchft's `DiLoCo` (`torchft/local_sgd.py`, which the
   implementer's card reads as the reference for the paper's schedule [C]). Fragment P-1 syncs
   with DiLoCo's own schedule (H, 2H, ...), the others H/P, 2H/P, ... steps earlier. Each
   fragment is in one all-reduce per H steps, so the total bytes equal DiLoCo's (plus one ring
   header per extra all-reduce), and the peak bytes of one sync are those of one fragment,
   about 1/P of DiLoCo's.
2. Overlap. Fragment p's outer gradient is sent at step t and applied tau inner steps later:
   the all-reduce is posted with `delay_steps = tau`, so the worker computes steps t+1..t+tau
   while it is in flight. Then the new global fragment is merged with the locally advanced one:
   theta_m,p <- alpha·theta_m,p + (1-alpha)·theta_p (torchft's `p.lerp_(local, alpha)`; alpha=0
   takes the global fragment, as DiLoCo does). tau < H/P keeps one fragment in flight at a time.
3. Low-precision outer gradients. `codec=fp4()` sends them as 4-bit E3M0 floats with a scale per
   ring chunk (`lowcomm.compress.fp4`); the ring decodes every hop and accumulates in float32.

Paper notation -> code (per worker m; the algorithm is written SPMD):
    M workers, fragment p of P, its indices          -> workers; `fragments[p]` ([n_p] int64)
    theta_p (the global fragment, last synced)       -> `state.outer[fragments[p]]`, identical
                                                        on every worker at all times
    theta_m (worker m's replica)                     -> `state.params`
    H, tau, alpha                                    -> `inner_steps`, `overlap_steps`, `mixing`
    Delta_m,p = theta_p - theta_m,p (at step t)      -> the posted all-reduce vector
    Delta_p = (1/M) sum_m Delta_m,p                  -> the all-reduce result (channel p)
    theta_p <- OuterOpt_p(theta_p, Delta_p)          -> `receive`; one outer optimizer state
                                                        per fragment (Nesterov 0.7/0.9)
    theta_m,p <- alpha theta_m,p + (1-alpha) theta_p -> `receive`, right after the outer step
Defaults: P=2, tau=1, alpha=0.5 [U: the card reports alpha=0.5 as good; the paper's own
defaults could not be read here]. The served model is the global one (`state.outer`): every
fragment as last synchronised, so replicas serve bit-identical parameters throughout. With
alpha = 0 the replicas' own fragment p also equals the global one right after its sync; with
alpha > 0 they keep part of their local progress and differ.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from lowcomm.algorithms.replicated.fragments import strided_fragments
from lowcomm.algorithms.replicated.inner import inner_step
from lowcomm.compress import Codec, fp32
from lowcomm.models import ModelFn


@dataclass(frozen=True)
class StreamingState:
    outer: torch.Tensor  # [d] the global model: every fragment as last synchronised
    outer_states: tuple[Any, ...]  # OuterOpt's state per fragment, identical on every worker
    params: torch.Tensor  # [d] theta_m, this worker's replica
    inner_state: Any  # InnerOpt's state, this worker's own


def check_mixing(mixing: float) -> float:
    if not isinstance(mixing, (int, float)) or isinstance(mixing, bool) or not 0 <= mixing <= 1:
        raise ValueError(f"mixing (alpha) must be in [0, 1]; got {mixing!r}")
    return float(mixing)


def streaming_diloco(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int = 100,
                     fragments: int = 2, overlap_steps: int = 1, mixing: float = 0.5,
                     outer_optimizer: Optimizer | None = None, codec: Codec | None = None
                     ) -> ReplicatedAlgorithm:
    """Streaming DiLoCo with H = `inner_steps`, P = `fragments`, tau = `overlap_steps`,
    alpha = `mixing` (module docstring); outer gradients are sent as `codec` (fp32 default)."""
    h = require_positive_int("inner_steps (H)", inner_steps)
    p_count = require_positive_int("fragments (P)", fragments)
    parts = strided_fragments(model.layout, p_count)  # raises unless P divides the layers
    if h % p_count:
        raise ValueError(f"fragments (P={p_count}) must divide inner_steps (H={h}) so that "
                         "the fragments' syncs are evenly staggered")
    if not isinstance(overlap_steps, int) or isinstance(overlap_steps, bool) \
            or not 0 <= overlap_steps < h // p_count:
        raise ValueError(f"overlap_steps (tau) must be an integer in [0, H/P) = [0, "
                         f"{h // p_count}) for H={h}, P={p_count}; got {overlap_steps!r}")
    alpha = check_mixing(mixing)
    offsets = tuple(h * (p + 1) // p_count for p in range(p_count))
    channels = {f"outer_grad:{p}": p for p in range(p_count)}
    outer_opt = outer_optimizer or outer_nesterov()
    codec = codec or fp32()

    def init(params: torch.Tensor, worker: int, workers: int) -> StreamingState:
        outer = params.detach().clone()
        return StreamingState(outer, tuple(outer_opt.init(outer[idx]) for idx in parts),
                              outer.clone(), inner_optimizer.init(outer))

    def step(state: StreamingState, batch, ctx: StepContext) -> StepOutput:
        params, inner_state, loss = inner_step(model, state.params, state.inner_state,
                                               inner_optimizer, batch)
        posts = tuple(
            AllReduce(f"outer_grad:{p}", state.outer[idx] - params[idx], codec,
                      delay_steps=overlap_steps)  # Delta_m,p, applied tau steps later
            for p, idx in enumerate(parts) if (ctx.step - offsets[p]) % h == 0)
        return StepOutput(StreamingState(state.outer, state.outer_states, params, inner_state),
                          loss, posts, steps={len(batch[1]): 1})

    def receive(state: StreamingState, received: Received, ctx: StepContext) -> StreamingState:
        p = channels[received.channel]
        idx = parts[p]
        fragment, fragment_state = outer_opt.apply(state.outer[idx], received.value,
                                                   state.outer_states[p])
        outer, params = state.outer.clone(), state.params.clone()
        outer[idx] = fragment
        params[idx] = alpha * params[idx] + (1.0 - alpha) * fragment  # the mixing merge
        outer_states = (*state.outer_states[:p], fragment_state, *state.outer_states[p + 1:])
        return StreamingState(outer, outer_states, params, state.inner_state)

    return ReplicatedAlgorithm(
        name="streaming_diloco",
        hyperparams={"inner_steps": h, "fragments": p_count, "overlap_steps": overlap_steps,
                     "mixing": alpha, "fragment_sizes": [int(idx.numel()) for idx in parts],
                     "inner_optimizer": describe_optimizer(inner_optimizer),
                     "outer_optimizer": describe_optimizer(outer_opt), "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.outer,
        num_params=model.layout.size,
        overlap=(f"each fragment's outer-gradient all-reduce overlaps the next {overlap_steps} "
                 "inner steps" if overlap_steps else
                 "none: each fragment's all-reduce blocks the next inner step"))
