"""Evaluation of a global model on a held-out set (instrumentation, not a protocol cost)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowcomm.models import ModelFn


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    num_samples: int


@torch.no_grad()
def evaluate(model: ModelFn, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
             batch_size: int = 2048) -> Evaluation:
    """Top-1 accuracy and mean cross-entropy of `params` on `(x, y)`, per target.

    Targets are `[n]` with `[B, classes]` logits, or `[n, T]` with a sequence model's
    `[B, classes, T]` logits; accuracy and loss are then means over all n·T positions.
    `num_samples` is n (sequences, not positions).
    """
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty test set")
    correct = 0
    loss_sum = 0.0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        logits = model.logits(params, xb)  # [B, classes] or [B, classes, T]
        loss_sum += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    return Evaluation(correct / y.numel(), loss_sum / y.numel(), len(y))
