"""Model fragments for Streaming DiLoCo: the parameters split by layer, strided.

Streaming DiLoCo (Douillard et al. 2025, arXiv 2501.18512, §2) synchronises one *fragment* of
the model at a time; a fragment is a set of transformer blocks, taken strided over depth
(fragment p holds blocks p, p+P, p+2P, ...), which the paper found slightly better than
contiguous runs of blocks.

The unit of the split:

- a model with transformer blocks (`lowcomm.models.block_of` names one for some parameter):
  the blocks. Parameters outside every block are not in the paper's split; here those listed
  before the first block (the embeddings) join block 0 and those after the last block (the
  final norm and head) join the last block, so every parameter is in exactly one fragment;
- any other model: its layers, a layer being the consecutive parameters that share a module
  prefix (`1.weight` and `1.bias` are layer `1`), in layout order.

P must divide the number of units, so every fragment holds the same number of them.
"""

from __future__ import annotations

import torch

from lowcomm.core import Layout
from lowcomm.models import block_of


def layer_units(layout: Layout) -> tuple[str, list[list[str]]]:
    """(kind, units): the split's units, each a list of parameter names in layout order."""
    blocks = [block_of(name) for name in layout.names]
    if any(b is not None for b in blocks):
        order = sorted({b for b in blocks if b is not None})
        first = blocks.index(order[0])
        units: list[list[str]] = [[] for _ in order]
        position = {b: i for i, b in enumerate(order)}
        for i, (name, b) in enumerate(zip(layout.names, blocks, strict=True)):
            unit = position[b] if b is not None else 0 if i < first else len(order) - 1
            units[unit].append(name)
        return "transformer blocks", units
    units, prefixes = [], []
    for name in layout.names:
        prefix = name.rsplit(".", 1)[0]
        if not prefixes or prefixes[-1] != prefix:
            prefixes.append(prefix)
            units.append([])
        units[-1].append(name)
    return "layers", units


def strided_fragments(layout: Layout, count: int) -> tuple[torch.Tensor, ...]:
    """`count` fragments as int64 index tensors into the flat `[d]` vector: fragment p holds
    units p, p + count, p + 2*count, ... (module docstring)."""
    kind, units = layer_units(layout)
    if not isinstance(count, int) or count < 1 or len(units) % count:
        raise ValueError(f"fragments (P) must be an integer >= 1 dividing the number of {kind} "
                         f"({len(units)}); got P={count!r}")
    offsets = dict(zip(layout.names, layout.offsets, strict=True))
    out = []
    for p in range(count):
        names = [n for unit in units[p::count] for n in unit]
        out.append(torch.cat([torch.arange(offsets[n], offsets[n] + layout.numel(n))
                              for n in sorted(names, key=offsets.get)]))
    return tuple(out)
