"""A model as a function of its flat parameter vector.

`ModelFn.logits(params, x)` is pure (it substitutes views of `params` through
`torch.func.functional_call`). For the hot path of local training, `ModelFn.trainer()` gives a
`FlatTrainer`: a private copy of the module whose parameters *are* views of a caller-owned `[d]`
vector and whose gradients land in one `[d]` buffer. This avoids the per-step cost of
re-parametrising the module and of autograd scattering each parameter's gradient into a fresh
`[d]` tensor, and computes exactly the same gradients (a reference test checks it).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from lowcomm.core import Layout


@dataclass(frozen=True)
class ModelFn:
    """`logits(params, x)` and `loss(params, x, y)` for a `[d]` parameter vector.

    The module is only a template: its own parameters are never read or written.
    """

    module: nn.Module
    layout: Layout

    def logits(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.layout.views(params), (x,))

    def loss(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the batch."""
        return nn.functional.cross_entropy(self.logits(params, x), y)

    def trainer(self) -> FlatTrainer:
        """This process's trainer for the model, made once (a deep copy of the module) and
        rebound to each client's vector; callers use one trainer at a time."""
        return self._trainer

    @functools.cached_property
    def _trainer(self) -> FlatTrainer:
        return FlatTrainer(self)


class FlatTrainer:
    """Mean cross-entropy gradients of a module bound to a flat parameter vector.

    `bind(params)` makes the module's parameters views of `params` (no copy; in-place updates of
    `params` are what the module sees next). `loss_and_grad(x, y)` returns the loss and the `[d]`
    gradient buffer, which is overwritten by the next call: copy it to keep it. `loss(x, y)` is the
    forward-only loss (zeroth-order methods).
    """

    __slots__ = ("_grad", "_grad_views", "_layout", "_module", "_params")

    def __init__(self, model: ModelFn) -> None:
        self._module = copy.deepcopy(model.module)
        self._layout = model.layout
        self._grad = torch.zeros(model.layout.size)
        self._grad_views = model.layout.views(self._grad)
        self._params = dict(self._module.named_parameters())
        if list(self._params) != list(self._layout.names):
            raise ValueError("the module's parameters do not match the layout's names and order")

    def bind(self, params: torch.Tensor) -> None:
        if params.shape != (self._layout.size,) or params.dtype != torch.float32:
            raise ValueError(f"params must be a [{self._layout.size}] float32 tensor; got "
                             f"{tuple(params.shape)} {params.dtype}")
        for (name, p), view in zip(self._params.items(), self._layout.views(params).values(),
                                   strict=True):
            p.data = view
            p.grad = self._grad_views[name]

    @torch.no_grad()
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean cross-entropy at the bound parameters, forward only (no autograd graph)."""
        return float(nn.functional.cross_entropy(self._module(x), y))

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._grad.zero_()
        loss = nn.functional.cross_entropy(self._module(x), y)
        loss.backward()
        for name, p in self._params.items():
            if p.grad is not self._grad_views[name]:  # autograd replaced the buffer: copy back
                self._grad_views[name].copy_(p.grad)
                p.grad = self._grad_views[name]
        return loss.detach(), self._grad
