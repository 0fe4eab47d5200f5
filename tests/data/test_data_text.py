"""Character corpora, worker shards and windows."""

import sys

import pytest
import torch

from lowcomm.data import (
    DataDirError,
    TextCorpus,
    eval_windows,
    python_docs,
    sample_windows,
    shard_text,
    tiny_shakespeare,
)


@pytest.fixture(scope="module")
def docs():
    return python_docs()


def _text_of(corpus: TextCorpus) -> str:
    return corpus.decode(torch.cat([corpus.train_ids, corpus.val_ids]))


def test_python_docs_is_the_stdlib_topics_in_sorted_key_order(docs):
    from pydoc_data.topics import topics

    text = "".join(topics[k] for k in sorted(topics))
    assert _text_of(docs) == text
    assert docs.vocab == tuple(sorted(set(text))) and docs.vocab_size == len(set(text))
    assert docs.val_ids.numel() == len(text) - int(0.9 * len(text))  # the last 10 %
    if sys.version_info[:3] == (3, 11, 7):  # the figures the docs quote
        assert (len(text), docs.vocab_size) == (464_970, 103)


def test_val_fraction_moves_the_cut(docs):
    small = python_docs(val_fraction=0.25)
    n = docs.train_ids.numel() + docs.val_ids.numel()
    assert small.val_ids.numel() == n - int(0.75 * n)
    assert torch.equal(small.train_ids, docs.train_ids[: small.train_ids.numel()])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_val_fraction_is_named(fraction):
    with pytest.raises(ValueError, match=f"val_fraction must be in \\(0, 1\\); got {fraction}"):
        python_docs(val_fraction=fraction)


def test_tiny_shakespeare_from_the_data_dir(data_dir):
    path = data_dir / "shakespeare" / "tinyshakespeare_input.txt"
    if not path.exists():
        pytest.skip(f"{path} absent")
    corpus = tiny_shakespeare(data_dir)
    text = path.read_text(encoding="utf-8")
    assert _text_of(corpus) == text
    assert corpus.vocab_size == len(set(text)) == 65 and len(text) == 1_115_394
    assert corpus.val_ids.numel() == len(text) - int(0.9 * len(text))


def test_tiny_shakespeare_without_the_file_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("LOWCOMM_DATA", raising=False)
    with pytest.raises(DataDirError, match="--data-dir"):
        tiny_shakespeare()
    with pytest.raises(DataDirError, match=r"tinyshakespeare_input\.txt"):
        tiny_shakespeare(tmp_path)


def test_corpus_rejects_ids_outside_the_vocabulary():
    ok = torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match=r"val_ids must lie in \[0, 2\); got \[0, 2\]"):
        TextCorpus("t", ("a", "b"), ok, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="train_ids must be a 1-D int64"):
        TextCorpus("t", ("a", "b"), ok.float(), ok)
    with pytest.raises(ValueError, match="distinct single characters"):
        TextCorpus("t", ("a", "a"), ok, ok)


@pytest.mark.parametrize("workers", [1, 3, 8])
def test_shards_are_equal_contiguous_and_disjoint(docs, workers):
    ids = docs.train_ids
    shards = shard_text(ids, workers)
    n = ids.numel() // workers
    assert len(shards) == workers and all(s.numel() == n for s in shards)
    assert torch.equal(torch.cat(shards), ids[: workers * n])  # in order, no overlap, no gap
    assert ids.numel() - workers * n < workers
    assert all(s.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()
               for s in shards)  # views, not copies


def test_windows_are_in_range_and_shifted_by_one():
    ids = torch.arange(100) * 7  # id value v sits at position v // 7
    gen = torch.Generator().manual_seed(0)
    x, y = sample_windows(ids, batch_size=500, seq_len=10, generator=gen)
    assert x.shape == y.shape == (500, 10) and x.dtype == torch.int64
    starts = x[:, 0] // 7
    assert torch.equal(x, ids[starts[:, None] + torch.arange(10)])
    assert torch.equal(y, ids[starts[:, None] + torch.arange(1, 11)])
    assert int(starts.min()) == 0 and int(starts.max()) == 100 - 10 - 1  # every start reachable


def test_windows_are_determined_by_the_generator():
    ids = torch.arange(1000)
    draw = [sample_windows(ids, batch_size=4, seq_len=8,
                           generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(draw[0][0], draw[1][0]) and not torch.equal(draw[0][0], draw[2][0])


def test_a_window_exactly_fills_a_shard():
    x, y = sample_windows(torch.arange(5), batch_size=3, seq_len=4,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, torch.arange(4).expand(3, 4)) and torch.equal(y, x + 1)


def test_eval_windows_are_fixed_non_overlapping_and_spread(docs):
    ids = docs.val_ids
    x, y = eval_windows(ids, seq_len=64)
    total = (ids.numel() - 1) // 64
    assert x.shape == y.shape == (total, 64)
    assert torch.equal(x.reshape(-1), ids[: total * 64])
    assert torch.equal(y.reshape(-1), ids[1 : total * 64 + 1])
    some_x, some_y = eval_windows(ids, seq_len=64, max_windows=10)
    keep = torch.arange(10) * total // 10
    assert torch.equal(some_x, x[keep]) and torch.equal(some_y, y[keep])
    assert int(keep[-1]) > total * 0.8  # spread over the whole tail, not its first windows
    again = eval_windows(ids, seq_len=64, max_windows=10)
    assert torch.equal(again[0], some_x)
    assert eval_windows(ids, seq_len=64, max_windows=10**9)[0].shape == (total, 64)


def test_bad_windows_and_shards_are_named():
    ids = torch.arange(10)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="seq_len must be >= 1; got 0"):
        sample_windows(ids, batch_size=2, seq_len=0, generator=gen)
    with pytest.raises(ValueError, match=r"10 ids is too short .* seq_len=10 .* 11"):
        sample_windows(ids, batch_size=2, seq_len=10, generator=gen)
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        sample_windows(ids, batch_size=0, seq_len=3, generator=gen)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator; got int"):
        sample_windows(ids, batch_size=2, seq_len=3, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"10 ids is too short .* seq_len=12"):
        eval_windows(ids, seq_len=12)
    with pytest.raises(ValueError, match="max_windows must be >= 1 or None; got 0"):
        eval_windows(ids, seq_len=3, max_windows=0)
    with pytest.raises(ValueError, match="workers must be >= 1; got 0"):
        shard_text(ids, 0)
    with pytest.raises(ValueError, match="10 ids cannot be split into 11"):
        shard_text(ids, 11)
    with pytest.raises(ValueError, match="scheme must be 'contiguous'; got 'speaker'"):
        shard_text(ids, 2, scheme="speaker")
    with pytest.raises(ValueError, match="1-D int64"):
        shard_text(ids.float(), 2)
