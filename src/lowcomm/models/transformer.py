"""A small decoder-only character transformer: the workload of low-communication training.

GPT-style (Radford et al. 2018/2019): token embedding plus a learned positional embedding, pre-
LayerNorm blocks of causal multi-head self-attention and a GELU MLP, each wrapped in a residual
connection, a final LayerNorm and a linear head over the vocabulary. No dropout.

Output logits are `[B, vocab, T]` (the class dimension second), so the plain
`cross_entropy(logits, y)` of `ModelFn.loss` and `FlatTrainer` with targets `y [B, T]` is the mean
next-token loss over every position, and `argmax(dim=1)` gives the `[B, T]` predictions.

Parameter order (that of `named_parameters()`, hence of the flat vector), with names grouped so
that a split by transformer block ("fragments" of Streaming DiLoCo) is a prefix test:

    embed.tokens.weight [V, W], embed.positions.weight [T, W]
    blocks.<i>.attn_norm.{weight,bias} [W]
    blocks.<i>.attn_in.{weight [3W, W], bias [3W]}     (q, k, v stacked in that order)
    blocks.<i>.attn_out.{weight [W, W], bias [W]}
    blocks.<i>.mlp_norm.{weight,bias} [W]
    blocks.<i>.mlp_in.{weight [mW, W], bias [mW]}
    blocks.<i>.mlp_out.{weight [W, mW], bias [W]}       for i = 0 .. layers-1
    head.norm.{weight,bias} [W], head.out.{weight [V, W], bias [V]}

`block_of(name)` gives the block index of a parameter name (None for `embed.*` and `head.*`).

The head is *not* tied to the token embedding: tying would make one parameter belong to both the
first and the last fragment of a per-block split, and at character vocabularies (65-103 symbols,
width 128) it would save only V·W ≈ 13k parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lowcomm.models.zoo import ModelSpec, check_positive


class _Block(nn.Module):
    """x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width)
        self.attn_in = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp_in = nn.Linear(width, mlp_width)
        self.mlp_out = nn.Linear(mlp_width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, W]
        b, t, w = x.shape
        qkv = self.attn_in(self.attn_norm(x))  # [B, T, 3W]
        q, k, v = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, W/H]
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, t, w))
        return x + self.mlp_out(nn.functional.gelu(self.mlp_in(self.mlp_norm(x))))


class _Embed(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int, width: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(seq_len, width)


class _Head(nn.Module):
    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)


class CharTransformer(nn.Module):
    """Token ids `[B, T]` (T <= seq_len) -> next-token logits `[B, vocab, T]`."""

    def __init__(self, vocab_size: int, *, seq_len: int, layers: int, width: int, heads: int,
                 mlp_ratio: int) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.embed = _Embed(vocab_size, seq_len, width)
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio * width) for _ in range(layers))
        self.head = _Head(width, vocab_size)
        self._init_weights(layers)

    def _init_weights(self, layers: int) -> None:
        # GPT-2's scheme (Radford et al. 2019): N(0, 0.02) weights, zero biases, and the two
        # projections that write into the residual stream scaled by 1/sqrt(2 * layers). It starts
        # the loss near log(vocab). Draws come from torch's default generator, which
        # `init_params` seeds from an explicit derived stream.
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                scaled = name.endswith(("attn_out.weight", "mlp_out.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers) if scaled else 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: [B, T] int64
        t = tokens.shape[1]
        if t > self.seq_len:
            raise ValueError(f"sequence length must be <= seq_len={self.seq_len}; got {t}")
        x = self.embed.tokens(tokens) + self.embed.positions.weight[:t]  # [B, T, W]
        for block in self.blocks:
            x = block(x)
        return self.head.out(self.head.norm(x)).transpose(1, 2)  # [B, V, T]


def block_of(name: str) -> int | None:
    """The transformer block a parameter belongs to: `blocks.3.mlp_in.weight` -> 3; `embed.*`,
    `head.*` (and any other name) -> None."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None


def char_transformer(vocab_size: int, *, seq_len: int = 64, layers: int = 2, width: int = 128,
                     heads: int = 4, mlp_ratio: int = 4) -> ModelSpec:
    """A decoder-only causal character transformer (see the module docstring for its layout).

    Parameters: V·W + T·W + layers·((4 + 2m)W² + (9 + m)W) + 2W + V·W + V with m = `mlp_ratio`
    (12W² + 13W per block at m = 4): 421,697 at V=65 and the defaults, 431,463 at V=103.
    Input `[B, T]` int64 with T <= seq_len; output `[B, vocab, T]`.
    """
    check_positive(vocab_size=vocab_size, seq_len=seq_len, layers=layers, width=width,
                   heads=heads, mlp_ratio=mlp_ratio)
    if width % heads:
        raise ValueError(f"width must be divisible by heads={heads}; got {width}")
    return ModelSpec(
        key=f"char_transformer(v{vocab_size},t{seq_len},w{width}x{layers},h{heads},m{mlp_ratio})",
        build=lambda: CharTransformer(vocab_size, seq_len=seq_len, layers=layers, width=width,
                                      heads=heads, mlp_ratio=mlp_ratio),
        input_shape=(seq_len,), input_dtype=torch.int64, num_classes=vocab_size,
    )
