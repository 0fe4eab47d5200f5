"""FLOPs counted with PyTorch's FLOP counter, once per (model, batch shape, kind), then cached.

What is counted (the convention of `torch.utils.flop_counter.FlopCounterMode`, torch 2.13):
matrix multiplies (`mm`, `addmm`, `bmm`, `baddbmm`), convolutions and their backward, and
scaled-dot-product attention, at 2 FLOPs per multiply-accumulate. Bias additions, activations,
pooling, normalisation, softmax, the loss and optimizer updates count as zero. lowcomm adds two
formulas the counter lacks: the fused CPU LSTM layer (`aten.mkldnn_rnn_layer` and its backward),
counted with the same 2-FLOPs-per-MAC rule over its input and recurrent matmuls, and the CPU
flash-attention kernel (`aten._scaled_dot_product_flash_attention_for_cpu` and its backward,
where `scaled_dot_product_attention` lands on CPU), counted with the counter's own formula for
the other attention kernels: the two T×T matmuls (four plus a recomputation backward) over the
full square, i.e. a causal mask is *not* discounted.

Counting runs under `FakeTensorMode`, so no real arithmetic happens (tens of milliseconds per
shape); the result is multiplied by the number of steps of that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

COUNTED_OPS = "matmul/conv/attention (+ fused LSTM layers), 2 FLOPs per multiply-accumulate"

_aten = torch.ops.aten


def _lstm_layer_forward_flops(input_shape, w_ih_shape, w_hh_shape) -> int:
    steps, batch = input_shape[0], input_shape[1]  # the op is time-major: [T, B, in]
    return 2 * steps * batch * (w_ih_shape[0] * w_ih_shape[1] + w_hh_shape[0] * w_hh_shape[1])


def _mkldnn_rnn_layer_flops(input, weight0, weight1, *args, out_shape=None, **kwargs) -> int:
    return _lstm_layer_forward_flops(input, weight0, weight1)


def _mkldnn_rnn_layer_backward_flops(input, weight1, weight2, *args, out_shape=None,
                                     **kwargs) -> int:
    # Gradients w.r.t. the layer input, the hidden state and both weight matrices: two matmuls
    # of the forward's size per forward matmul.
    return 2 * _lstm_layer_forward_flops(input, weight1, weight2)


def _cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flops(grad_out, query, key, value, *args, out_shape=None,
                                        **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


_CUSTOM_FORMULAS = {
    _aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flops,
    _aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward_flops,
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward:
        _cpu_flash_attention_backward_flops,
}


def count_flops(
    build: Callable[[], nn.Module],
    batch_shape: tuple[int, ...],
    *,
    input_dtype: torch.dtype,
    kind: str,
) -> int:
    """FLOPs of one forward ('eval') or forward + cross-entropy + backward ('train') step.

    The training targets have the logits' shape without the class dimension (dimension 1):
    `[B]` for `[B, classes]` logits, `[B, T]` for a sequence model's `[B, classes, T]`.
    """
    if kind not in ("train", "eval"):
        raise ValueError(f"kind must be 'train' or 'eval'; got {kind!r}")
    if not batch_shape or batch_shape[0] < 1:
        raise ValueError(f"batch_shape must start with a batch size >= 1; got {batch_shape}")
    with FakeTensorMode():
        model = build()
        x = torch.zeros(batch_shape, dtype=input_dtype)  # token ids 0 are valid for embeddings
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FORMULAS) as counter:
            if kind == "train":
                logits = model(x)
                y = torch.zeros((logits.shape[0], *logits.shape[2:]), dtype=torch.long)
                nn.functional.cross_entropy(logits, y).backward()
            else:
                with torch.no_grad():
                    model(x)
    _check_recurrent_layers_counted(model, counter)
    return int(counter.get_total_flops())


def _check_recurrent_layers_counted(model: nn.Module, counter: FlopCounterMode) -> None:
    counts = counter.get_flop_counts()
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNBase):
            key = f"{type(model).__name__}.{name}"
            if sum(counts.get(key, {}).values()) == 0:
                raise RuntimeError(
                    f"the FLOP counter saw no matmul inside recurrent layer {name!r}: this torch "
                    "build dispatches RNNs through an op lowcomm has no formula for"
                )


class FlopCounter:
    """A cache of counted FLOPs keyed by (model key, batch shape, kind). One per run."""

    __slots__ = ("_build", "_cache", "_input_dtype", "_model_key")

    def __init__(self, model_key: Hashable, build: Callable[[], nn.Module], *,
                 input_dtype: torch.dtype) -> None:
        self._model_key = model_key
        self._build = build
        self._input_dtype = input_dtype
        self._cache: dict[tuple, int] = {}

    def step(self, batch_shape: tuple[int, ...], *, kind: str = "train") -> int:
        key = (self._model_key, tuple(batch_shape), kind)
        if key not in self._cache:
            self._cache[key] = count_flops(self._build, tuple(batch_shape),
                                           input_dtype=self._input_dtype, kind=kind)
        return self._cache[key]
