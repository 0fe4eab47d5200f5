"""NoLoCo: Kolehmainen, Blagoev, Donaghy, Ersoy, Nies, "NoLoCo: No-all-reduce Low Communication
Training Method for Large Models", arXiv 2506.10911 (2025), §3 and Eq. (2); the authors' code is
gensyn-ai/noloco `src/noloco/sparse_optimizer_c.py` (`SparseOptimizerC`, read for facts only).

Like DiLoCo, each worker takes H inner steps of its own optimizer (AdamW) from its slow weights,
but there is no all-reduce and no global model: after every H-th step each worker averages with
ONE partner only, and its slow weights move by a momentum step with an extra term that pulls them
towards the partner's (the "modified Nesterov" step). Replicas are never identical; the pull term
keeps them close. Per worker i of its group G (|G| = n = 2), every H steps:

    g_bar   = (1/n) sum_{j in G} (theta_j - phi_j)   mean progress (-1 x DiLoCo outer grad)
    phi_bar = (1/n) sum_{j in G} phi_j
    m_i    <- beta * m_i + alpha * g_bar + gamma * (phi_bar - phi_i)
    phi_i  <- phi_i + m_i ;   theta_i <- phi_i

Notation -> code (the authors' code names; the paper's letters are given as recalled, [U]):
    phi_i, slow (outer) weights            -> `state.slow`; the served model
    theta_i, fast weights (inner phase)    -> `state.params`
    m_i (the paper's delta), momentum      -> `state.momentum`, per worker, starts at 0
    alpha, outer lr on g_bar               -> `outer_lr` (configs: 0.7)
    beta, outer momentum                   -> `outer_momentum` (configs: 0.5, not DiLoCo's 0.9)
    gamma, local averaging strength        -> `averaging_strength`; None = `outer_lr`, as in
                                              the code, which uses outer_lr for both terms
    H inner steps                          -> `inner_steps` (configs: 50)
    groups from a random permutation       -> `pairs(seed, step, workers)`: a permutation
                                              seeded by the step, so every worker derives the
                                              same pairing without communicating
Sign convention: g_bar = theta - phi is progress, so `+alpha*g_bar` moves phi forwards; this is
-Delta of DiLoCo's outer gradient Delta = phi - theta. The step is heavy-ball shaped (`phi += m`
after the momentum update), as in the code, not PyTorch's Nesterov formula. Only the paper's
abstract and public reviews could be read here (they confirm Eq. (2) and a separate local
averaging strength), so the update above follows the code; the paper's symbols are unverified.

What crosses: with gamma = alpha the update needs only the group's mean fast weights, since
alpha*g_bar + alpha*(phi_bar - phi_i) = alpha*(theta_bar - phi_i); each worker therefore sends
its theta (d values) to its partner in one exchange (one hop) per sync. The authors' code sends
phi and theta - phi to a group root and back (2d each way, two hops); the update is the same.
With gamma != alpha the worker needs phi_bar too and sends theta and phi (2d values).

Odd worker counts: the permutation's last worker is alone that round (a different random worker
each sync); it applies the same update over its group of one (theta_bar = theta_i, phi_bar =
phi_i: a local lookahead step) and sends nothing. The authors' code requires an even count.

Out of scope: NoLoCo also routes activations randomly between pipeline-stage replicas during the
inner steps; these are single-stage models, so there is nothing to route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lowcomm.algorithms.base import describe_optimizer
from lowcomm.algorithms.optim import Optimizer
from lowcomm.algorithms.replicated.base import (
    Exchange,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    StepOutput,
    require_positive_int,
)
from lowcomm.algorithms.replicated.inner import inner_step
from lowcomm.compress import Codec, fp32
from lowcomm.core import Layout, Payload, numpy_rng
from lowcomm.models import ModelFn

CHANNEL = "noloco"


@dataclass(frozen=True)
class NoLoCoState:
    slow: torch.Tensor  # [d] phi_i, this worker's slow weights (served)
    momentum: torch.Tensor  # [d] m_i, this worker's own outer momentum
    params: torch.Tensor  # [d] theta_i, the fast weights of the inner phase
    inner_state: Any  # InnerOpt's state, this worker's own


def pairs(seed: int, step: int, workers: int) -> tuple[tuple[int, ...], ...]:
    """The groups of sync step `step`: consecutive entries of a permutation of the workers drawn
    from the stream `(seed, step, "noloco-pairs")`; with odd `workers` the last group is one
    worker. Every worker computes the same groups from the step alone."""
    order = [int(w) for w in numpy_rng(seed, round=step, purpose="noloco-pairs")
             .permutation(workers)]
    return tuple(tuple(order[k:k + 2]) for k in range(0, workers, 2))


def partner(seed: int, step: int, workers: int, worker: int) -> int | None:
    """`worker`'s partner at sync step `step`, or None when it is alone this round."""
    group = next(g for g in pairs(seed, step, workers) if worker in g)
    return next((w for w in group if w != worker), None)


def outer_update(state: NoLoCoState, theta_bar: torch.Tensor, phi_bar: torch.Tensor | None, *,
                 alpha: float, beta: float, gamma: float) -> NoLoCoState:
    """Eq. (2) for one worker given its group's means (phi_bar None requires gamma == alpha)."""
    if phi_bar is None:  # alpha*(theta_bar - phi_bar) + alpha*(phi_bar - phi_i)
        momentum = beta * state.momentum + alpha * (theta_bar - state.slow)
    else:
        momentum = (beta * state.momentum + alpha * (theta_bar - phi_bar)
                    + gamma * (phi_bar - state.slow))
    slow = state.slow + momentum
    return NoLoCoState(slow, momentum, slow.clone(), state.inner_state)


def noloco(model: ModelFn, *, inner_optimizer: Optimizer, inner_steps: int = 50,
           outer_lr: float = 0.7, outer_momentum: float = 0.5,
           averaging_strength: float | None = None, codec: Codec | None = None
           ) -> ReplicatedAlgorithm:
    """NoLoCo with H = `inner_steps`, alpha = `outer_lr`, beta = `outer_momentum` and gamma =
    `averaging_strength` (None: alpha, as in the authors' code); defaults are the authors'
    configs. Exchanged vectors are sent as `codec` (stateless; fp32 by default)."""
    h = require_positive_int("inner_steps (H)", inner_steps)
    _check("outer_lr", outer_lr, low=0.0, open_low=True)
    _check("outer_momentum", outer_momentum, low=0.0, high=1.0)
    gamma = outer_lr if averaging_strength is None else averaging_strength
    _check("averaging_strength", gamma, low=0.0)
    codec = codec or fp32()
    if codec.stateful:
        raise ValueError(f"codec {codec.name!r} keeps state between messages; NoLoCo meets a "
                         "new partner every sync and needs a stateless codec")
    tied = gamma == outer_lr  # then only theta crosses the wire (module docstring)
    sent = ("theta",) if tied else ("theta", "slow")
    layout = model.layout

    def init(params: torch.Tensor, worker: int, workers: int) -> NoLoCoState:
        slow = params.detach().clone()
        return NoLoCoState(slow, torch.zeros_like(slow), slow.clone(),
                           inner_optimizer.init(slow))

    def step(state: NoLoCoState, batch, ctx: StepContext) -> StepOutput:
        params, inner_state, loss = inner_step(model, state.params, state.inner_state,
                                               inner_optimizer, batch)
        state = NoLoCoState(state.slow, state.momentum, params, inner_state)
        posts = ()
        if ctx.step % h == 0:
            peer = partner(ctx.seed, ctx.step, ctx.workers, ctx.worker)
            if peer is None:  # alone this round: the update over a group of one, no bytes
                state = outer_update(state, params, None if tied else state.slow,
                                     alpha=outer_lr, beta=outer_momentum, gamma=gamma)
            else:  # blocking: the partner's vectors are needed before the next inner phase
                vectors = {"theta": params, "slow": state.slow}
                payload = _pack({k: vectors[k] for k in sent}, codec, layout, ctx.generator)
                posts = (Exchange(CHANNEL, payload, peer),)
        return StepOutput(state, loss, posts, steps={len(batch[1]): 1})

    def receive(state: NoLoCoState, received: Received, ctx: StepContext) -> NoLoCoState:
        other = _unpack(received.value, sent, codec, layout)
        theta_bar = (state.params + other["theta"]) / 2
        phi_bar = None if tied else (state.slow + other["slow"]) / 2
        return outer_update(state, theta_bar, phi_bar, alpha=outer_lr, beta=outer_momentum,
                            gamma=gamma)

    return ReplicatedAlgorithm(
        name="noloco",
        hyperparams={"inner_steps": h, "inner_optimizer": describe_optimizer(inner_optimizer),
                     "outer_lr": outer_lr, "outer_momentum": outer_momentum,
                     "averaging_strength": gamma, "group_size": 2, "sent": list(sent),
                     "codec": codec.name},
        init=init, step=step, receive=receive, model=lambda s: s.slow,
        num_params=layout.size,
        overlap="none: each pair exchange blocks only its two workers' next inner phase",
        min_workers=2)


def _pack(vectors: dict[str, torch.Tensor], codec: Codec, layout: Layout,
          generator: torch.Generator) -> Payload:
    """One payload holding each vector encoded by `codec`, its arrays prefixed by the name."""
    arrays = {}
    for name, vector in vectors.items():
        encoded, _ = codec.encode(vector, codec.init(layout), generator)
        arrays.update({f"{name}:{key}": value for key, value in encoded.items()})
    return Payload(arrays)


def _unpack(payload: Payload, names: tuple[str, ...], codec: Codec, layout: Layout
            ) -> dict[str, torch.Tensor]:
    out = {}
    for name in names:
        prefix = f"{name}:"
        part = {k[len(prefix):]: v for k, v in payload.items() if k.startswith(prefix)}
        if not part:
            raise ValueError(f"a NoLoCo payload must hold {name!r}; it holds {sorted(payload)}")
        out[name] = codec.decode(Payload(part), layout)
    return out


def _check(name: str, value: float, *, low: float, high: float | None = None,
           open_low: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value < high)
    if not ok:
        bounds = f"{'(' if open_low else '['}{low}, {'inf)' if high is None else f'{high})'}"
        raise ValueError(f"{name} must be a finite number in {bounds}; got {value!r}")
