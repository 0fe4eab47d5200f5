"""Optimizers on flat `[d]` (or stacked `[clients, d]`) vectors, shared by clients and servers.

Each optimizer is written once, as `step_(params, grad, state)`, which updates the caller's own
`params` and `state` tensors in place (local training owns its copies, and in-place updates keep
the hot loop free of allocations). `apply(params, grad, state) -> (new_params, new_state)` is the
pure form, for callers that must not mutate (the server). The same optimizers serve local
training on minibatch gradients and the server step on the pseudo-gradient
`-(weighted mean client delta)` (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR;
arXiv 2003.00295), so FedAvg, FedAvgM and FedAdam differ only in the server optimizer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Optimizer:
    name: str
    hyperparams: dict[str, float | bool]
    init: Callable[[torch.Tensor], Any]
    step_: Callable[[torch.Tensor, torch.Tensor, Any], None]  # (params, grad, state), in place

    def apply(self, params: torch.Tensor, grad: torch.Tensor, state: Any
              ) -> tuple[torch.Tensor, Any]:
        """The pure form of `step_`: new parameters and state; the inputs are not touched."""
        new_params, new_state = params.clone(), map_state(torch.clone, state)
        self.step_(new_params, grad, new_state)
        return new_params, new_state


def map_state(fn: Callable[..., torch.Tensor], *states: Any) -> Any:
    """Apply `fn` to the tensors of optimizer states (None, a tensor, or a dataclass of them)."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return fn(*states)
    return dataclasses.replace(first, **{
        f.name: map_state(fn, *(getattr(s, f.name) for s in states))
        for f in dataclasses.fields(first)})


def state_arrays(prefix: str, state: Any) -> dict[str, torch.Tensor]:
    """An optimizer state's tensors by dotted name (`prefix`, `prefix.field`, ...), for a
    `Payload`; None has none. `state_from_arrays` reverses it."""
    if state is None:
        return {}
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    out: dict[str, torch.Tensor] = {}
    for f in dataclasses.fields(state):
        out.update(state_arrays(f"{prefix}.{f.name}", getattr(state, f.name)))
    return out


def state_from_arrays(prefix: str, template: Any, arrays: Any) -> Any:
    """A state shaped like `template` holding copies of `arrays[name]` (a `Payload` or a
    mapping of tensors, named as by `state_arrays`); a missing or misshapen array is a
    `ValueError` naming it."""
    if template is None:
        return None
    if isinstance(template, torch.Tensor):
        if prefix not in arrays:
            raise ValueError(f"optimizer state array {prefix!r} is missing")
        value = arrays[prefix]
        value = value.clone() if isinstance(value, torch.Tensor) else \
            torch.from_numpy(np.array(value, copy=True))
        if value.shape != template.shape or value.dtype != template.dtype:
            raise ValueError(f"optimizer state array {prefix!r} is {value.dtype}"
                             f"{list(value.shape)}; expected {template.dtype}"
                             f"{list(template.shape)}")
        return value
    return dataclasses.replace(template, **{
        f.name: state_from_arrays(f"{prefix}.{f.name}", getattr(template, f.name), arrays)
        for f in dataclasses.fields(template)})


@dataclass(frozen=True)
class MomentumState:
    buffer: torch.Tensor  # [d]


@dataclass(frozen=True)
class AdamState:
    m: torch.Tensor  # [d] first moment
    v: torch.Tensor  # [d] second moment
    count: torch.Tensor  # [*lead, 1] steps taken (one per stacked model)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value}")


def _fraction(name: str, value: float) -> None:
    """Decay rates and momenta live in [0, 1)."""
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1); got {value}")


def sgd(lr: float, *, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0) -> Optimizer:
    """SGD with optional heavy-ball or Nesterov momentum, in PyTorch's convention:
    `b <- mu*b + g`, step `-lr*b` (or `-lr*(g + mu*b)` with Nesterov).

    On the server with `lr=1, momentum=0` this is plain averaging (FedAvg); with momentum it is
    FedAvgM (Hsu, Qi, Brown 2019, arXiv 1909.06335: `v <- beta*v + Delta; w <- w - v`).
    """
    _positive("lr", lr)
    _fraction("momentum", momentum)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov requires momentum > 0; got momentum=0")

    def init(params: torch.Tensor) -> MomentumState | None:
        return MomentumState(torch.zeros_like(params)) if momentum > 0 else None

    def step_(params: torch.Tensor, grad: torch.Tensor, state: MomentumState | None) -> None:
        if weight_decay:
            grad = grad + weight_decay * params
        if momentum == 0.0:
            params.add_(grad, alpha=-lr)
            return
        state.buffer.mul_(momentum).add_(grad)
        if nesterov:
            params.add_(grad, alpha=-lr).add_(state.buffer, alpha=-lr * momentum)
        else:
            params.add_(state.buffer, alpha=-lr)

    return Optimizer("sgd", {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                             "weight_decay": weight_decay}, init, step_)


def adam(lr: float, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         bias_correction: bool = True) -> Optimizer:
    """Adam (Kingma & Ba 2015): `m <- b1*m + (1-b1)g`, `v <- b2*v + (1-b2)g^2`,
    step `-lr * m_hat / (sqrt(v_hat) + eps)` with bias-corrected `m_hat, v_hat`."""
    _positive("lr", lr)
    _fraction("b1", b1)
    _fraction("b2", b2)
    _positive("eps", eps)
    return _adam("adam", lr, b1=b1, b2=b2, eps=eps, bias_correction=bias_correction, v0=0.0)


def adamw(lr: float, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.01, warmup_steps: int = 0,
          total_steps: int | None = None) -> Optimizer:
    """AdamW (Loshchilov & Hutter, ICLR 2019, arXiv 1711.05101), in PyTorch's convention:
    decoupled decay `params <- params * (1 - lr_t * weight_decay)`, then the Adam step at `lr_t`.

    `lr_t = lr * min(1, t / warmup_steps)` during a linear warmup, then, when `total_steps` is
    given, a cosine decay to 0 at `total_steps` (the inner schedule of DiLoCo, Douillard et al.
    2023); t counts this optimizer's own steps (its state), so each worker's schedule is its own.
    """
    _positive("lr", lr)
    _fraction("b1", b1)
    _fraction("b2", b2)
    _positive("eps", eps)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0; got {warmup_steps!r}")
    if total_steps is not None and (not isinstance(total_steps, int)
                                    or total_steps <= warmup_steps):
        raise ValueError(f"total_steps must be an integer > warmup_steps ({warmup_steps}) or "
                         f"None; got {total_steps!r}")

    def factor(t: float) -> float:  # t = 1 at the first step
        if warmup_steps and t <= warmup_steps:
            return t / warmup_steps
        if total_steps is None:
            return 1.0
        progress = min(1.0, (t - warmup_steps) / (total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    adam_step = _adam("adam", lr, b1=b1, b2=b2, eps=eps, bias_correction=True, v0=0.0)

    def step_(params: torch.Tensor, grad: torch.Tensor, state: AdamState) -> None:
        scale = factor(float(state.count.reshape(-1)[0]) + 1.0)
        if weight_decay:
            params.mul_(1.0 - lr * scale * weight_decay)
        adam_step.step_(params, grad, state, lr_scale=scale)

    return Optimizer("adamw", {"lr": lr, "b1": b1, "b2": b2, "eps": eps,
                               "weight_decay": weight_decay, "warmup_steps": warmup_steps,
                               "total_steps": total_steps}, adam_step.init, step_)


def fedadam(lr: float, *, b1: float = 0.9, b2: float = 0.99, tau: float = 1e-3) -> Optimizer:
    """The server optimizer of FedAdam (Reddi et al. 2021, Algorithm 2).

    Paper notation -> code: Delta_t -> minus the pseudo-gradient; eta -> lr; beta_1, beta_2 ->
    b1, b2; tau (degree of adaptivity) -> tau. Algorithm 2 has no bias correction and starts from
    m_{-1} = 0, v_{-1} >= tau^2 (we take tau^2): `x <- x + eta * m / (sqrt(v) + tau)`.
    Defaults b1=0.9, b2=0.99, tau=1e-3 are the values the paper's experiments fix (its lr grids
    vary by task, so lr has no default).
    """
    _positive("lr", lr)
    _fraction("b1", b1)
    _fraction("b2", b2)
    _positive("tau", tau)
    return _adam("fedadam", lr, b1=b1, b2=b2, eps=tau, bias_correction=False, v0=tau * tau)


def _adam(name: str, lr: float, *, b1: float, b2: float, eps: float, bias_correction: bool,
          v0: float) -> Optimizer:
    def init(params: torch.Tensor) -> AdamState:
        count = torch.zeros((*params.shape[:-1], 1), dtype=params.dtype)
        return AdamState(torch.zeros_like(params), torch.full_like(params, v0), count)

    def step_(params: torch.Tensor, grad: torch.Tensor, state: AdamState, *,
              lr_scale: float = 1.0) -> None:
        state.count.add_(1)
        state.m.mul_(b1).add_(grad, alpha=1.0 - b1)
        state.v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        if bias_correction:
            m_hat = state.m / (1.0 - b1**state.count)
            v_hat = state.v / (1.0 - b2**state.count)
        else:
            m_hat, v_hat = state.m, state.v
        params.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr * lr_scale)

    return Optimizer(name, {"lr": lr, "b1": b1, "b2": b2, "eps": eps,
                            "bias_correction": bias_correction}, init, step_)
