"""Item streams for frequency estimation: Zipf and spike (procedural, chunked, reproducible) and
the real market baskets (one seeded item per basket, mapped to [0, k))."""

from __future__ import annotations

import gzip
import math
import re

import numpy as np
import pytest

from lowcomm.data import DataDirError, basket_items, read_baskets, spike_items, zipf_items


def test_zipf_follows_the_truncated_law_and_chunks_are_reproducible():
    k, n, s = 50, 200_000, 1.1
    stream = zipf_items(k, n, s=s, seed=3, chunk_users=30_000)
    counts = stream.true_counts()
    p = np.arange(1, k + 1) ** -s
    p /= p.sum()
    assert counts.sum() == n and stream.num_chunks == 7
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.max(np.abs(z)) < 5  # every item within 5 standard errors of n p_i
    again = list(zipf_items(k, n, s=s, seed=3, chunk_users=30_000).chunks())
    assert all(np.array_equal(a, b) for a, b in zip(stream.chunks(), again, strict=True))
    assert not np.array_equal(next(zipf_items(k, n, s=s, seed=4, chunk_users=30_000).chunks()),
                              again[0])
    assert [c.size for c in again] == [30_000] * 6 + [20_000]
    # chunk c depends only on (seed, c): a stream of more users starts with the same chunks
    longer = zipf_items(k, 10 * n, s=s, seed=3, chunk_users=30_000)
    assert np.array_equal(longer.chunk(5), again[5])


def test_spike_puts_every_user_on_one_item():
    stream = spike_items(8, 1_001, item=5, chunk_users=100)
    np.testing.assert_array_equal(stream.true_counts(), [0, 0, 0, 0, 0, 1_001, 0, 0])
    assert stream.num_chunks == 11


@pytest.mark.parametrize(("call", "message"), [
    (lambda: zipf_items(1, 10, s=1.0, seed=0), "k must be an integer >= 2; got 1"),
    (lambda: zipf_items(10, 0, s=1.0, seed=0), "n must be an integer >= 1; got 0"),
    (lambda: zipf_items(10, 5, s=-1.0, seed=0), "s must be a number in [0, 100); got -1.0"),
    (lambda: spike_items(10, 5, item=10), "spike item must be an integer in [0, 10); got 10"),
    (lambda: spike_items(10, 5, chunk_users=0), "chunk_users must be an integer >= 1; got 0"),
    (lambda: zipf_items(10, 5, s=1.0, seed=0).chunk(1), "chunk index must be in [0, 1); got 1"),
])
def test_bad_parameters_name_the_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write(text)


def test_one_item_per_basket_and_the_documented_domain_map(tmp_path):
    # item 7 is in 4 baskets, item 3 in 3, items 1 and 9 in 2 (tie: 1 first), item 5 in 1
    _write(tmp_path / "itemsets" / "retail.dat.gz", "7 3 1\n7 7 3\n\n9 7\n1 9 3 7\n5\n")
    offsets, items = read_baskets(tmp_path / "itemsets" / "retail.dat.gz")
    np.testing.assert_array_equal(offsets, [0, 3, 5, 7, 11, 12])  # the empty basket is dropped
    np.testing.assert_array_equal(items, [1, 3, 7, 3, 7, 7, 9, 1, 3, 7, 9, 5])  # distinct, sorted
    stream = basket_items("retail", tmp_path, k=4, seed=0)
    assert stream.n == 5
    np.testing.assert_array_equal(stream.labels, [7, 3, 1, -1])  # the top 3, then "other"
    values = np.concatenate(list(stream.chunks()))
    assert values[4] == 3  # basket {5}: item 5 is outside the top 3, so "other"
    for v, basket in zip(values, np.split(items, offsets[1:-1]), strict=True):
        label = stream.labels[v]
        if label >= 0:
            assert label in basket
        else:  # "other": the basket holds an item outside the top 3
            assert set(basket.tolist()) - {7, 3, 1}
    picks = np.stack([np.concatenate(list(basket_items("retail", tmp_path, k=4, seed=s)
                                          .chunks())) for s in range(400)])
    share = (picks[:, 0] == 0).mean()  # basket {1, 3, 7}: item 7 (value 0) one time in three
    assert abs(share - 1 / 3) < 4 * math.sqrt(2 / 9 / 400)


def test_basket_errors_name_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("LOWCOMM_DATA", raising=False)
    with pytest.raises(DataDirError, match="LOWCOMM_DATA"):
        basket_items("retail", None, k=16, seed=0)
    with pytest.raises(DataDirError, match=r"itemsets/kosarak_partial_36682\.dat\.gz"):
        basket_items("kosarak", tmp_path, k=16, seed=0)
    with pytest.raises(ValueError, match="one of retail, kosarak; got 'mushroom'"):
        basket_items("mushroom", tmp_path, k=16, seed=0)
    _write(tmp_path / "itemsets" / "retail.dat.gz", "1 2\n3 x\n")
    with pytest.raises(ValueError, match="not an item id"):
        basket_items("retail", tmp_path, k=16, seed=0)


def test_the_real_item_sets(data_dir):
    for name, n, first_basket in (("retail", 88_162, 30), ("kosarak", 36_682, None)):
        relative = {"retail": "itemsets/retail.dat.gz",
                    "kosarak": "itemsets/kosarak_partial_36682.dat.gz"}[name]
        if not (data_dir / relative).exists():
            pytest.skip(f"{data_dir / relative} absent")
        stream = basket_items(name, data_dir, k=1024, seed=0)
        assert stream.n == n  # kosarak: the cut last line is dropped
        counts = stream.true_counts()
        assert counts.sum() == n and counts.shape == (1024,)
        assert stream.params["distinct_items"] > 1024
        if first_basket is not None:
            offsets, _ = read_baskets(data_dir / relative)
            assert offsets[1] == first_basket  # retail's first basket: items 0..29
