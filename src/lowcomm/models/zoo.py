"""The models of the federated-learning papers lowcomm reproduces.

Each factory returns a `ModelSpec`: a builder for the `nn.Module` plus what the rest of the
system needs to know without building it (per-sample input shape and dtype, classes, a key that
identifies the architecture for FLOP caching). Parameters are initialised by `init_params` from an
explicit seed, never from torch's global generator state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lowcomm.core import flatten_module, torch_generator
from lowcomm.models.functional import ModelFn


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture: how to build it and the shape of what it eats."""

    key: str  # architecture and hyper-parameters, e.g. "mlp_2nn(784->200x2->10)"
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    input_dtype: torch.dtype
    num_classes: int

    def num_params(self) -> int:
        return sum(p.numel() for p in self.build().parameters() if p.requires_grad)


def init_params(spec: ModelSpec, *, seed: int) -> tuple[ModelFn, torch.Tensor]:
    """Build the model with parameters drawn from a generator derived from `seed`.

    Returns the model as a function of its flat parameters (the module inside is only a
    template; training never mutates it) and the `[d]` float32 initial parameters.
    """
    with torch.random.fork_rng(devices=[]):
        # nn.init draws from the default generator; seed it from an explicit derived stream
        # inside fork_rng so no global state leaks in or out.
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=torch_generator(
            seed, round=-1, client=-1, purpose="model-init"))))
        module = spec.build()
    flat, layout = flatten_module(module)
    return ModelFn(module, layout), flat


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")


def logistic_regression(input_shape: tuple[int, ...], num_classes: int) -> ModelSpec:
    """Multinomial logistic regression: one linear layer on the flattened input."""
    check_positive(num_classes=num_classes, features=math.prod(input_shape))
    features = math.prod(input_shape)
    return ModelSpec(
        key=f"logreg({features}->{num_classes})",
        build=lambda: nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes)),
        input_shape=tuple(input_shape), input_dtype=torch.float32, num_classes=num_classes,
    )


def mlp_2nn(input_shape: tuple[int, ...], num_classes: int, *, hidden: int = 200) -> ModelSpec:
    """The "2NN" of McMahan et al. 2017: two hidden layers of 200 ReLU units (199,210 params
    on MNIST)."""
    features = math.prod(input_shape)
    check_positive(num_classes=num_classes, features=features, hidden=hidden)
    return ModelSpec(
        key=f"mlp_2nn({features}->{hidden}x2->{num_classes})",
        build=lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        ),
        input_shape=tuple(input_shape), input_dtype=torch.float32, num_classes=num_classes,
    )


def _two_conv_cnn(name: str, input_shape: tuple[int, ...], num_classes: int,
                  hidden: int) -> ModelSpec:
    """conv5x5(32) -> pool2 -> conv5x5(64) -> pool2 -> FC(hidden) -> FC(classes), "same"
    padding, ReLU after each conv and the hidden layer."""
    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] % 4:
        raise ValueError(
            "input_shape must be (channels, side, side) with side divisible by 4; "
            f"got {input_shape}"
        )
    check_positive(num_classes=num_classes)
    channels, side = input_shape[0], input_shape[1]

    def build() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (side // 4) ** 2, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    return ModelSpec(key=f"{name}({tuple(input_shape)}->{num_classes})", build=build,
                     input_shape=tuple(input_shape), input_dtype=torch.float32,
                     num_classes=num_classes)


def cnn_fedavg(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> ModelSpec:
    """The CNN of McMahan et al. 2017 (1,663,370 params on MNIST): two 5x5 conv layers (32, 64
    channels) each followed by 2x2 max pooling, a 512-unit ReLU layer and a softmax output."""
    return _two_conv_cnn("cnn_fedavg", input_shape, num_classes, hidden=512)


def cnn_femnist(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 62) -> ModelSpec:
    """The LEAF FEMNIST CNN (Caldas et al. 2018, arXiv 1812.01097): as `cnn_fedavg` with a
    2048-unit dense layer and 62 classes (6,603,710 params)."""
    return _two_conv_cnn("cnn_femnist", input_shape, num_classes, hidden=2048)


class CharLSTM(nn.Module):
    """Embedding -> stacked LSTM -> linear read-out of the last step (next-character logits)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # chars: [B, T] int64
        states, _ = self.lstm(self.embed(chars))  # [B, T, hidden]
        return self.out(states[:, -1])  # [B, vocab]


def char_lstm(vocab_size: int, *, seq_len: int = 80, embed_dim: int = 8, hidden: int = 256,
              layers: int = 2) -> ModelSpec:
    """The LEAF/FedAvg Shakespeare model: 8-dim character embedding, two LSTM layers of 256
    units, next-character softmax (McMahan et al. 2017; Caldas et al. 2018)."""
    check_positive(vocab_size=vocab_size, seq_len=seq_len, embed_dim=embed_dim, hidden=hidden,
                    layers=layers)
    return ModelSpec(
        key=f"char_lstm(v{vocab_size},e{embed_dim},h{hidden}x{layers})",
        build=lambda: CharLSTM(vocab_size, embed_dim, hidden, layers),
        input_shape=(seq_len,), input_dtype=torch.int64, num_classes=vocab_size,
    )
