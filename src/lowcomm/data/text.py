"""Character corpora for language-model training, worker shards and (input, target) windows.

A `TextCorpus` is one text encoded as character ids over the sorted set of its characters, split
into a train part and a validation tail. Two corpora:

- `python_docs()`: the embedded default, needing no data directory: the text of Python's own
  documentation topics shipped with the standard library (`pydoc_data.topics.topics`, the pages
  behind `help("if")`), concatenated in sorted key order. On Python 3.11.7 that is 79 topics,
  464,970 characters, 103 distinct; the exact text depends on the Python version.
- `tiny_shakespeare(data_dir)`: Karpathy's TinyShakespeare (1,115,394 characters, 65 distinct)
  from `<dir>/shakespeare/tinyshakespeare_input.txt`.

Data-parallel workers each get a contiguous shard of the train ids (`shard_text`) and draw
random windows from it (`sample_windows`); validation uses a fixed set of non-overlapping windows
of the validation tail (`eval_windows`). Targets are the inputs shifted by one character.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from lowcomm.data.files import _encode, _require, resolve_data_dir


@dataclass(frozen=True)
class TextCorpus:
    """A character-level text: `train_ids [N]` and `val_ids [M]` int64 ids into `vocab`."""

    name: str
    vocab: tuple[str, ...]  # sorted distinct characters; id i is vocab[i]
    train_ids: torch.Tensor  # [N] int64
    val_ids: torch.Tensor  # [M] int64, the text's tail

    def __post_init__(self) -> None:
        if len(set(self.vocab)) != len(self.vocab) or any(len(c) != 1 for c in self.vocab):
            raise ValueError(f"vocab must be distinct single characters; got {self.vocab[:10]}...")
        for part in ("train_ids", "val_ids"):
            ids = getattr(self, part)
            if ids.ndim != 1 or ids.dtype != torch.int64:
                raise ValueError(f"{part} must be a 1-D int64 tensor; got {ids.dtype} "
                                 f"{tuple(ids.shape)}")
            if ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) < len(self.vocab):
                raise ValueError(f"{part} must lie in [0, {len(self.vocab)}); got "
                                 f"[{int(ids.min())}, {int(ids.max())}]")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: torch.Tensor) -> str:
        """The text of a 1-D tensor of ids."""
        return "".join(self.vocab[i] for i in ids.tolist())

    def describe(self) -> str:
        return (f"{self.name}: {self.train_ids.numel():,} train / {self.val_ids.numel():,} "
                f"validation characters, vocabulary {self.vocab_size}")


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")


def _corpus(name: str, text: str, val_fraction: float) -> TextCorpus:
    vocab = sorted(set(text))
    ids = torch.from_numpy(_encode(text, vocab))  # [len(text)] int64
    cut = math.floor((1.0 - val_fraction) * ids.numel())  # val = the last val_fraction
    if cut < 1 or cut == ids.numel():
        raise ValueError(f"{name}: val_fraction={val_fraction} of {ids.numel()} characters "
                         "leaves an empty train or validation part")
    return TextCorpus(name, tuple(vocab), ids[:cut], ids[cut:])


def python_docs(*, val_fraction: float = 0.1) -> TextCorpus:
    """Python's documentation topics (`pydoc_data.topics`, standard library; no data directory).

    The topics are concatenated in sorted key order; the text, and so the vocabulary and the ids,
    depend on the Python version (464,970 characters and 103 distinct on 3.11.7).
    """
    _check_val_fraction(val_fraction)
    from pydoc_data.topics import topics  # imported here: ~0.5 MB of text, needed only now

    return _corpus("python_docs", "".join(topics[key] for key in sorted(topics)), val_fraction)


def tiny_shakespeare(data_dir: str | Path | None = None, *,
                     val_fraction: float = 0.1) -> TextCorpus:
    """TinyShakespeare (Karpathy 2015, char-rnn) from `<dir>/shakespeare/tinyshakespeare_input.txt`.

    The whole file as one text (unlike `shakespeare`, which splits it by speaker for federated
    clients); the validation part is its last `val_fraction`.
    """
    _check_val_fraction(val_fraction)
    path = _require(resolve_data_dir(data_dir) / "shakespeare" / "tinyshakespeare_input.txt")
    return _corpus("tiny_shakespeare", path.read_text(encoding="utf-8"), val_fraction)


def _check_ids(ids: torch.Tensor) -> None:
    if ids.ndim != 1 or ids.dtype != torch.int64:
        raise ValueError(f"ids must be a 1-D int64 tensor; got {ids.dtype} {tuple(ids.shape)}")


def _check_window(ids: torch.Tensor, seq_len: int) -> None:
    _check_ids(ids)
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1; got {seq_len}")
    if ids.numel() < seq_len + 1:
        raise ValueError(f"a text of {ids.numel()} ids is too short for one window of "
                         f"seq_len={seq_len} (it needs seq_len + 1 = {seq_len + 1})")


def shard_text(ids: torch.Tensor, workers: int, *,
               scheme: str = "contiguous") -> list[torch.Tensor]:
    """Split `ids [N]` into `workers` equal contiguous shards (views), `[N // workers]` each.

    Worker w gets `ids[w·n : (w+1)·n]` with n = N // workers; the last N mod workers ids (fewer
    than `workers`) belong to no shard. Contiguous parts of one text differ in topic and style,
    so the shards are not IID draws of the text; `sample_windows` within a shard is uniform.
    """
    _check_ids(ids)
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if scheme != "contiguous":
        raise ValueError(f"scheme must be 'contiguous'; got {scheme!r}")
    n = ids.numel() // workers
    if n < 1:
        raise ValueError(f"{ids.numel()} ids cannot be split into {workers} non-empty shards")
    return [ids[w * n : (w + 1) * n] for w in range(workers)]


def sample_windows(ids: torch.Tensor, *, batch_size: int, seq_len: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows of `ids` starting uniformly at random: x, y `[B, T]`, where
    `y[:, t]` is the id after `x[:, t]` in the text (so `y[:, :-1] == x[:, 1:]`).

    Starts are drawn from `generator` uniformly in `[0, N - T - 1]` (every start that leaves
    room for the last target), independently, with replacement.
    """
    _check_window(ids, seq_len)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    starts = torch.randint(0, ids.numel() - seq_len, (batch_size, 1), generator=generator)
    windows = ids[starts + torch.arange(seq_len + 1)]  # [B, T + 1]
    return windows[:, :-1], windows[:, 1:]


def eval_windows(ids: torch.Tensor, *, seq_len: int,
                 max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of non-overlapping windows of `ids`: x, y `[m, T]`, y = x shifted by one.

    The text holds K = (N - 1) // T aligned windows (`x_k = ids[kT : kT + T]`); all of them are
    returned, or, with `max_windows` < K, the evenly spaced `k = i·K // max_windows`.
    No randomness: the same ids give the same windows.
    """
    _check_window(ids, seq_len)
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None; got {max_windows}")
    total = (ids.numel() - 1) // seq_len
    m = total if max_windows is None else min(max_windows, total)
    keep = torch.arange(m) * total // m  # [m] distinct, evenly spaced window numbers
    x = ids[: total * seq_len].view(total, seq_len)
    y = ids[1 : total * seq_len + 1].view(total, seq_len)
    return x[keep], y[keep]
