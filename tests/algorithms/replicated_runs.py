"""A tiny data-centre workload shared by the replicated-algorithm tests: a small MLP on
scikit-learn's digits, one contiguous shard per worker, minibatches of 8. `equal_layers=True`
swaps in a model of three equal-size layers (the 64 pixels average-pooled to 10 features, then
three Linear(10, 10)), for exact per-fragment byte counts; `convex=True` swaps in multinomial
logistic regression."""

from __future__ import annotations

import torch
from torch import nn

from lowcomm import data, models
from lowcomm.cost import FlopCounter
from lowcomm.runtime import TrainingSettings, WorkerData, train_workers

BATCH = 8


def equal_layers_spec() -> models.ModelSpec:
    def build() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, (1, 64)), nn.AdaptiveAvgPool1d(10),
                             nn.Flatten(),
                             nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 10), nn.Tanh(),
                             nn.Linear(10, 10))
    return models.ModelSpec("equal_layers(64->pool10->10x3)", build, (1, 8, 8), torch.float32,
                            10)


def workload(workers: int, *, hidden: int = 16, equal_layers: bool = False,
             convex: bool = False):
    central = data.digits(seed=0)
    x, y = central.x_train, central.y_train
    spec = (equal_layers_spec() if equal_layers
            else models.logistic_regression(tuple(x.shape[1:]), 10) if convex
            else models.mlp_2nn(tuple(x.shape[1:]), 10, hidden=hidden))
    model, params = models.init_params(spec, seed=0)
    shards = torch.arange(len(y)).tensor_split(workers)

    def sample(w: int, g: torch.Generator):
        idx = shards[w][torch.randint(len(shards[w]), (BATCH,), generator=g)]
        return x[idx], y[idx]

    worker_data = WorkerData(sample, central.x_test, central.y_test, tuple(x.shape[1:]))
    flops = FlopCounter(spec.key, spec.build, input_dtype=spec.input_dtype)
    return model, params, worker_data, flops


def run(algorithm, *, workers: int, steps: int, eval_every: int | None = None, seed: int = 0,
        hidden: int = 16, equal_layers: bool = False, convex: bool = False):
    model, params, worker_data, flops = workload(workers, hidden=hidden,
                                                 equal_layers=equal_layers, convex=convex)
    settings = TrainingSettings(steps=steps, workers=workers, seed=seed,
                                eval_every=eval_every or steps)
    return train_workers(algorithm(model), worker_data, model, params, flops, settings)
