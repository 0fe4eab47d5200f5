"""Item streams for heavy hitters: original ids, ranks spread over a bit domain, party splits,
and the real baskets as ids (skipped when the data directory is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from lowcomm.core import numpy_rng
from lowcomm.data import basket_items, item_ids, party_split, spread_ids, zipf_items


def test_spread_ids_are_distinct_random_and_seeded():
    ranks = zipf_items(100, 50_000, s=1.0, seed=1).chunk(0)
    ids = spread_ids(ranks, 100, bits=20, rng=numpy_rng(2, purpose="t"))
    assert ids.min() >= 0 and ids.max() < 1 << 20
    # the map is one-to-one: equal ranks get equal ids, distinct ranks distinct ids
    pairs = np.unique(np.stack([ranks, ids]), axis=1)
    assert np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1]
    assert np.array_equal(ids, spread_ids(ranks, 100, bits=20, rng=numpy_rng(2, purpose="t")))
    assert np.unique(ids >> 15).size > 20  # spread over the domain, not packed near 0
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 2\^bits = 16\]; got 17"):
        spread_ids(ranks, 17, bits=4, rng=numpy_rng(2, purpose="t"))
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 62\]; got 0"):
        spread_ids(ranks, 4, bits=0, rng=numpy_rng(2, purpose="t"))


def test_item_ids_of_a_procedural_stream_are_its_values():
    stream = zipf_items(50, 70_000, s=1.1, seed=3, chunk_users=30_000)
    assert np.array_equal(item_ids(stream), np.concatenate(list(stream.chunks())))


def test_party_splits_keep_every_user_once():
    items = spread_ids(zipf_items(200, 5000, s=1.0, seed=1).chunk(0), 200, bits=12,
                       rng=numpy_rng(1, purpose="t"))
    contiguous = party_split(items, 3, how="contiguous", rng=numpy_rng(2, purpose="t"))
    assert np.array_equal(np.concatenate(contiguous), items)
    for how in ("iid", "dirichlet"):
        parts = party_split(items, 3, how=how, rng=numpy_rng(2, purpose="t"), alpha=0.1)
        assert len(parts) == 3
        assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(items))
    top = np.bincount(items).argmax()
    shares = [np.mean(p == top) for p in parts]  # dirichlet(0.1): the top item is lopsided
    assert max(shares) > 2 * min(shares)
    iid_shares = [np.mean(p == top) for p in party_split(items, 3, how="iid",
                                                          rng=numpy_rng(2, purpose="t"))]
    assert max(iid_shares) < 1.5 * min(iid_shares)
    with pytest.raises(ValueError, match="how must be one of"):
        party_split(items, 3, how="random", rng=numpy_rng(2, purpose="t"))
    with pytest.raises(ValueError, match=r"num_parties .* \[1, 5000\] .*; got 0"):
        party_split(items, 0, how="iid", rng=numpy_rng(2, purpose="t"))


@pytest.mark.parametrize(("name", "users", "distinct", "top"), [
    ("retail", 88_162, 16_470, 39),
    ("kosarak", 36_682, 17_035, 6),
])
def test_real_baskets_as_original_ids(data_dir, name, users, distinct, top):
    relative = {"retail": "retail.dat.gz", "kosarak": "kosarak_partial_36682.dat.gz"}[name]
    if not (data_dir / "itemsets" / relative).exists():
        pytest.skip(f"{data_dir}/itemsets/{relative} absent")
    ids = item_ids(basket_items(name, data_dir, k=1 << 15, seed=0))
    assert ids.shape == (users,) and ids.min() >= 0 and ids.max() < distinct
    assert np.bincount(ids).argmax() == top  # the known most frequent item of the file
    with pytest.raises(ValueError, match="folded into 'other'"):
        item_ids(basket_items(name, data_dir, k=1024, seed=0))
