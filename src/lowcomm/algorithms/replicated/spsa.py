"""Zeroth-order SPSA training with shared randomness: workers exchange only one-byte scalars.

Zelikman, Huang, Liang, Haber, Goodman, "Just One Byte (per gradient): A Note on Low-Bandwidth
Decentralized Language Model Finetuning Using Shared Randomness", arXiv 2306.10015 (2023), the
decentralised form of MeZO (Malladi et al., "Fine-Tuning Language Models with Just Forward
Passes", NeurIPS 2023, arXiv 2305.17333, Algorithm 1 with n-SPSA, i.e. k perturbations a step).

Per step t, worker i, for each of its k seeds j: regenerate z_{t,i,j} ~ N(0, I_d) from a seed
every worker can derive, evaluate the loss at θ ± εz on the worker's own minibatch, and form the
projected gradient g = (L+ - L-) / (2ε), a scalar estimate of ∇L·z. Only the k quantized
scalars cross the wire (an all-gather); every worker then regenerates all n·k directions and
applies the same update in the same order, so the replicas stay bit-identical.

Paper notation -> code:
    machines 1..n                      -> workers 0..n-1 (`ctx.worker`, `ctx.workers`)
    samples per machine per round      -> k = `seeds_per_step`
    RNG seeded by (iteration, machine,  -> `perturbation(seed, step, worker, j, d)`: a generator
      sample)                             from `derive_seed(run seed, round=t, client=i,
                                          purpose="spsa-z:<j>")`; nothing about it is sent
    θ                                  -> `state.params` (identical on every worker)
    ε (MeZO: 1e-3)                     -> `epsilon`
    L(θ ± εz; B_i)                     -> two forward passes on worker i's minibatch (evaluated
                                          functionally at fresh θ ± εz, so θ is never perturbed
                                          and restored in place and no rounding drift builds up)
    projected gradient (L+ - L-)/(2ε)  -> `projected_gradient`
    single-byte projected gradient     -> `quantizer.encode` (default `int8_scalars`: a fixed
                                          declared clip, stochastic rounding, unbiased inside
                                          the clip; see `lowcomm.compress.scalars`)
    θ ← θ - η/(n·k) Σ_i Σ_j ĝ_ij z_ij   -> `receive`, in the fixed order (i, j); η = `lr`
    MeZO's weight decay                -> not implemented (no decay)

The authors' `app.py` applies θ ← θ + (-lr·g/N)·ε·z (its perturbation helper scales by ε), so its
lr 0.1 at ε = 1e-3 is this update's lr = 1e-4.

Wire: one payload per worker per step holding `g`: k int8 codes (k float32 with `fp32_scalars`),
i.e. k bytes + 19 bytes of payload framing (7 header, 8 array descriptor, 4 CRC), all-gathered
over the ring: n·k scalar bytes are produced per round and each worker forwards n-1 payloads.
Counted compute per worker per step: 2k forward passes (`forward_steps`), plus by formula
`zo_axpy` = 2·d·k·(n + 2) FLOPs (θ ± εz for its k seeds, one axpy θ -= c·z per gathered
scalar, 2 FLOPs per element) and `zo_rng` = d·k·(n + 1) Gaussian draws (its k directions and
the n·k it regenerates), each draw priced as one FLOP in the modeled timeline.
The reported step loss is the mean of (L+ + L-)/2 over the k seeds: L(θ) + O(ε²), not L(θ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lowcomm.algorithms.replicated.base import (
    AllGather,
    Received,
    ReplicatedAlgorithm,
    StepContext,
    StepOutput,
    require_positive_int,
)
from lowcomm.compress.scalars import ScalarQuantizer, int8_scalars
from lowcomm.core import Payload, torch_generator
from lowcomm.models import ModelFn

CHANNEL = "spsa"


@dataclass(frozen=True)
class SPSAState:
    params: torch.Tensor  # [d] θ, identical on every worker
    clipped: int = 0  # this worker's scalars that the quantizer clipped so far (a diagnostic)


def perturbation(seed: int, step: int, worker: int, j: int, d: int) -> torch.Tensor:
    """z_{t,i,j} ~ N(0, I_d): worker i's j-th direction of step t, regenerable by everyone."""
    return torch.randn(d, generator=torch_generator(seed, round=step, client=worker,
                                                    purpose=f"spsa-z:{j}"))


def projected_gradient(model: ModelFn, params: torch.Tensor, z: torch.Tensor, epsilon: float,
                       batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float, float]:
    """(g, L+, L-) with L± = L(θ ± εz) on `batch` and g = (L+ - L-) / (2ε)."""
    trainer = model.trainer()
    step = epsilon * z
    trainer.bind(params + step)  # fresh tensors: `params` itself is never perturbed
    plus = trainer.loss(*batch)
    trainer.bind(params - step)
    minus = trainer.loss(*batch)
    return (plus - minus) / (2 * epsilon), plus, minus


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def spsa(model: ModelFn, *, lr: float, epsilon: float = 1e-3, seeds_per_step: int = 1,
         quantizer: ScalarQuantizer | None = None) -> ReplicatedAlgorithm:
    """Shared-randomness SPSA: k = `seeds_per_step` directions per worker per step, step size
    `lr`, perturbation `epsilon`; scalars sent as `quantizer` (default `int8_scalars(8.0)`)."""
    lr = _positive("lr", lr)
    epsilon = _positive("epsilon", epsilon)
    k = require_positive_int("seeds_per_step (k)", seeds_per_step)
    quantizer = quantizer or int8_scalars(8.0)

    def init(params: torch.Tensor, worker: int, workers: int) -> SPSAState:
        return SPSAState(params.detach().clone())

    def step(state: SPSAState, batch, ctx: StepContext) -> StepOutput:
        d = state.params.numel()
        g = torch.empty(k, dtype=torch.float64)
        losses = []
        for j in range(k):
            z = perturbation(ctx.seed, ctx.step, ctx.worker, j, d)
            g[j], plus, minus = projected_gradient(model, state.params, z, epsilon, batch)
            if not math.isfinite(g[j]):
                raise ValueError(f"step {ctx.step}, worker {ctx.worker}, seed {j}: the projected "
                                 f"gradient is not finite (L+ = {plus}, L- = {minus}); lower "
                                 f"lr or epsilon")
            losses.append((plus + minus) / 2)
        codes = quantizer.encode(g, ctx.generator)  # [k] what crosses the wire
        clipped = int((g.abs() > quantizer.clip).sum())
        n = ctx.workers
        extra = {"zo_axpy": 2 * d * k * (n + 2), "zo_rng": d * k * (n + 1)}
        return StepOutput(SPSAState(state.params, state.clipped + clipped),
                          sum(losses) / k, (AllGather(CHANNEL, Payload(g=codes)),),
                          forward_steps={len(batch[1]): 2 * k}, extra_flops=extra)

    def receive(state: SPSAState, received: Received, ctx: StepContext) -> SPSAState:
        payloads = received.value
        if len(payloads) != ctx.workers:
            raise ValueError(f"expected {ctx.workers} workers' scalars; got {len(payloads)}")
        params = state.params.clone()
        d = params.numel()
        scale = lr / (len(payloads) * k)
        for i, payload in enumerate(payloads):  # the fixed order every worker follows
            if list(payload) != ["g"]:
                raise ValueError(f"worker {i}'s payload must hold only 'g'; got {list(payload)}")
            g_hat = quantizer.decode(payload["g"], k)
            for j in range(k):
                z = perturbation(ctx.seed, received.posted_step, i, j, d)
                params.add_(z, alpha=-scale * float(g_hat[j]))
        return SPSAState(params, state.clipped)

    return ReplicatedAlgorithm(
        name="spsa",
        hyperparams={"lr": lr, "epsilon": epsilon, "seeds_per_step": k,
                     "quantizer": quantizer.describe()},
        init=init, step=step, receive=receive, model=lambda s: s.params,
        num_params=model.layout.size,
        overlap="none: the all-gather of the projected-gradient scalars blocks the next step")
