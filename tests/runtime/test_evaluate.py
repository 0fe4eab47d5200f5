"""`evaluate` gives per-target accuracy and loss for classifiers and sequence models alike."""

import torch
from tests.conftest import make_model
from torch import nn

from lowcomm.models import char_transformer, init_params
from lowcomm.runtime.evaluate import evaluate


def _reference(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean over every target of the batch, computed in one go."""
    accuracy = int((logits.argmax(dim=1) == y).sum()) / y.numel()
    return accuracy, nn.functional.cross_entropy(logits, y).item()


def test_sequence_targets_are_averaged_over_every_position():
    model, params = init_params(char_transformer(7, seq_len=6, layers=1, width=8, heads=2),
                                seed=0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 7, (10, 6), generator=gen)
    guess = torch.randint(0, 7, (10, 6), generator=gen)
    hit = torch.rand((10, 6), generator=gen) < 0.5  # about half the targets are the argmax
    y = torch.where(hit, model.logits(params, x).argmax(dim=1), guess)  # [n, T]
    result = evaluate(model, params, x, y, batch_size=4)  # 3 uneven batches
    accuracy, loss = _reference(model.logits(params, x), y)
    assert result.num_samples == 10
    assert result.accuracy == accuracy and abs(result.loss - loss) < 1e-5


def test_class_targets_are_unchanged(digits_central):
    _, model, params = make_model("logreg")
    x, y = digits_central.x_test, digits_central.y_test
    result = evaluate(model, params, x, y, batch_size=100)
    accuracy, loss = _reference(model.logits(params, x), y)
    assert result.num_samples == len(y)
    assert result.accuracy == accuracy and abs(result.loss - loss) < 1e-5
