"""A worker's inner computation on one minibatch, shared by the data-centre algorithms."""

from __future__ import annotations

from typing import Any

import torch

from lowcomm.algorithms.optim import Optimizer, map_state
from lowcomm.models import ModelFn


def gradient(model: ModelFn, params: torch.Tensor,
             batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, torch.Tensor]:
    """The minibatch loss at `params` and its `[d]` gradient (a fresh tensor)."""
    trainer = model.trainer()
    trainer.bind(params.detach().clone())  # the trainer's views must not alias the caller's
    loss, grad = trainer.loss_and_grad(*batch)
    return float(loss), grad.clone()


def inner_step(model: ModelFn, params: torch.Tensor, opt_state: Any, optimizer: Optimizer,
               batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Any, float]:
    """One optimizer step on one minibatch; returns new parameters and state (the inputs are
    not modified) and the loss at `params`."""
    w = params.detach().clone()
    state = map_state(torch.clone, opt_state)
    trainer = model.trainer()
    trainer.bind(w)
    loss, grad = trainer.loss_and_grad(*batch)
    optimizer.step_(w, grad, state)
    return w, state, float(loss)
