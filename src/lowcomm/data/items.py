"""Item streams for frequency estimation: each of n users holds one item of a domain [0, k).

An `ItemStream` produces its users' items in chunks on demand (`chunks()`), the same chunks on
every pass, so 10^7 users never sit in memory at once; `true_counts()` is one pass of
`np.bincount`. Three sources:

- `zipf_items(k, n, s=..., seed=...)`: truncated Zipf, Pr[item i] ∝ (i + 1)^(-s) for i in
  [0, k) (item 0 most frequent), as in the synthetic inputs of the PGR experiments (Feldman,
  Nelson, Nguyen, Talwar, ICML 2022; repository minilek/private_frequency_oracles,
  `run_all_experiments.py`, `zipfian`). Chunk c is drawn by inverting the CDF with uniforms
  from `numpy_rng(seed, round=c, purpose="zipf-items")`, so chunks are independent of each
  other and of the chunk count that came before.
- `spike_items(k, n, item=0)`: every user holds the same item (the same experiments' "spike").
  Deterministic: there is nothing to draw.
- `basket_items(name, data_dir, k=..., seed=...)`: the real market baskets of the data directory
  (`itemsets/retail.dat.gz`: 88,162 baskets; `itemsets/kosarak_partial_36682.dat.gz`: the first
  36,682 Kosarak transactions, whose last, cut line is dropped), one user per non-empty basket.
  The rule, explicit and seeded: each user holds one of the basket's *distinct* items, drawn
  uniformly with `numpy_rng(seed, purpose="basket-item")` (one uniform per basket, in file
  order). The domain: items are ranked by the number of baskets that contain them (ties: the
  smaller item id first); the k - 1 most frequent become 0 .. k - 2 in rank order and every
  other item becomes k - 1, "other". `labels[v]` is the original item id of domain value v
  (-1 for "other"). The real frequencies are those of the picked items, not of the baskets.

For heavy hitters (`lowcomm.analytics.pem`, `taps`), which need the items' own ids:
`item_ids(stream)` returns all users' original ids (a basket stream built with k - 1 at least its
distinct items, so nothing is "other"); `spread_ids` maps Zipf ranks onto distinct random
`bits`-bit ids; `party_split` divides users into parties (contiguous, iid or Dirichlet non-IID).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lowcomm.core import numpy_rng
from lowcomm.data.files import DataDirError, resolve_data_dir
from lowcomm.data.partition import dirichlet, iid

BASKET_FILES = {"retail": ("itemsets/retail.dat.gz", False),
                "kosarak": ("itemsets/kosarak_partial_36682.dat.gz", True)}  # (path, cut line)
DEFAULT_CHUNK_USERS = 1 << 16
OTHER = -1  # the label of the domain value that gathers the items outside the top k - 1


@dataclass(frozen=True)
class ItemStream:
    """n users' items in [0, k), in chunks of at most `chunk_users`: `chunk(c)` -> [m] int64."""

    name: str
    k: int
    n: int
    chunk_users: int
    chunk: Callable[[int], np.ndarray]
    labels: np.ndarray | None = None  # [k] original item ids (basket data); None: v is itself
    params: dict = field(default_factory=dict)

    @property
    def num_chunks(self) -> int:
        return -(-self.n // self.chunk_users)

    def chunks(self) -> Iterator[np.ndarray]:
        for c in range(self.num_chunks):
            yield self.chunk(c)

    def true_counts(self) -> np.ndarray:
        """[k] int64: how many users hold each item (one pass over the chunks)."""
        counts = np.zeros(self.k, dtype=np.int64)
        for values in self.chunks():
            counts += np.bincount(values, minlength=self.k)
        return counts

    def describe(self) -> dict:
        return {"name": self.name, "k": self.k, "n": self.n, **self.params}


def _check(k: int, n: int, chunk_users: int) -> None:
    for name, value, least in (("k", k, 2), ("n", n, 1), ("chunk_users", chunk_users, 1)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")


def _chunk_bounds(c: int, n: int, chunk_users: int) -> tuple[int, int]:
    if not 0 <= c < -(-n // chunk_users):
        raise ValueError(f"chunk index must be in [0, {-(-n // chunk_users)}); got {c}")
    return c * chunk_users, min(n, (c + 1) * chunk_users)


def zipf_items(k: int, n: int, *, s: float, seed: int,
               chunk_users: int = DEFAULT_CHUNK_USERS) -> ItemStream:
    """Truncated Zipf(s) over [0, k): Pr[i] ∝ (i + 1)^(-s) (module docstring)."""
    _check(k, n, chunk_users)
    if not isinstance(s, int | float) or isinstance(s, bool) or not 0 <= s < 100:
        raise ValueError(f"zipf exponent s must be a number in [0, 100); got {s!r}")
    weights = np.arange(1, k + 1, dtype=np.float64) ** -float(s)
    cdf = np.cumsum(weights / weights.sum())  # [k]
    cdf[-1] = 1.0

    def chunk(c: int) -> np.ndarray:
        start, end = _chunk_bounds(c, n, chunk_users)
        u = numpy_rng(seed, round=c, purpose="zipf-items").random(end - start)
        return np.minimum(np.searchsorted(cdf, u, side="right"), k - 1).astype(np.int64)

    return ItemStream(f"zipf(s={s:g})", int(k), int(n), int(chunk_users), chunk,
                      params={"s": float(s), "seed": int(seed)})


def spike_items(k: int, n: int, *, item: int = 0,
                chunk_users: int = DEFAULT_CHUNK_USERS) -> ItemStream:
    """Every user holds `item` (module docstring)."""
    _check(k, n, chunk_users)
    if not isinstance(item, int | np.integer) or isinstance(item, bool) or not 0 <= item < k:
        raise ValueError(f"spike item must be an integer in [0, {k}); got {item!r}")

    def chunk(c: int) -> np.ndarray:
        start, end = _chunk_bounds(c, n, chunk_users)
        return np.full(end - start, item, dtype=np.int64)

    return ItemStream(f"spike(item={item})", int(k), int(n), int(chunk_users), chunk,
                      params={"item": int(item)})


def read_baskets(path: str | Path, *, drop_last_line: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [baskets + 1], items [total]) of a FIMI-style file (one basket per line of
    space-separated non-negative item ids; gzip if the name ends in .gz), distinct items per
    basket, empty baskets dropped. Basket b holds items[offsets[b]:offsets[b + 1]], sorted."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read basket file {str(path)!r}: {err}") from None
    if drop_last_line:
        lines = lines[:-1]
    tokens = [line.split() for line in lines]
    sizes = np.array([len(t) for t in tokens], dtype=np.int64)
    try:
        flat = np.array([x for t in tokens for x in t], dtype=np.int64)
    except ValueError:
        raise ValueError(f"basket file {str(path)!r} holds a token that is not an item id") \
            from None
    if flat.size and flat.min() < 0:
        raise ValueError(f"basket file {str(path)!r} holds a negative item id {flat.min()}")
    basket = np.repeat(np.arange(sizes.size), sizes)
    order = np.lexsort((flat, basket))  # by basket, then item
    basket, flat = basket[order], flat[order]
    keep = np.r_[True, (basket[1:] != basket[:-1]) | (flat[1:] != flat[:-1])]
    basket, flat = basket[keep], flat[keep]
    per_basket = np.bincount(basket, minlength=sizes.size)
    per_basket = per_basket[per_basket > 0]
    return np.r_[0, np.cumsum(per_basket)], flat


def basket_items(name: str, data_dir: str | Path | None, *, k: int, seed: int,
                 chunk_users: int = DEFAULT_CHUNK_USERS) -> ItemStream:
    """One item per basket of a real item-set file, mapped to [0, k) (module docstring)."""
    if name not in BASKET_FILES:
        raise ValueError(f"basket data must be one of {', '.join(BASKET_FILES)}; got {name!r}")
    relative, cut = BASKET_FILES[name]
    try:
        path = resolve_data_dir(data_dir) / relative
    except DataDirError as err:  # name the file this loader needs, not the image layout
        reason = str(err).split(";")[0].split(": pass")[0]
        raise DataDirError(f"{reason}; pass --data-dir or set LOWCOMM_DATA to a folder holding "
                           f"{relative} (as ../shared/data does)") from None
    if not path.is_file():
        raise DataDirError(f"missing data file {str(path)!r}; expected <dir>/{relative} as in "
                           "../shared/data")
    offsets, items = read_baskets(path, drop_last_line=cut)
    n = offsets.size - 1
    _check(k, n, chunk_users)
    sizes = np.diff(offsets)
    u = numpy_rng(seed, purpose="basket-item").random(n)
    picked = items[offsets[:-1] + np.minimum((u * sizes).astype(np.int64), sizes - 1)]  # [n]
    support = np.bincount(items)  # baskets holding each item id
    ranked = np.lexsort((np.arange(support.size), -support))  # most baskets first, then id
    top = ranked[: k - 1][support[ranked[: k - 1]] > 0]
    domain = np.full(support.size, k - 1, dtype=np.int64)
    domain[top] = np.arange(top.size)
    values = domain[picked]  # [n] in [0, k)
    labels = np.full(k, OTHER, dtype=np.int64)
    labels[: top.size] = top

    def chunk(c: int) -> np.ndarray:
        start, end = _chunk_bounds(c, n, chunk_users)
        return values[start:end]

    distinct = int((support > 0).sum())
    return ItemStream(name, int(k), int(n), int(chunk_users), chunk, labels=labels,
                      params={"seed": int(seed), "file": relative, "distinct_items": distinct,
                              "other_items": max(0, distinct - (k - 1))})


# --- for heavy hitters: original item ids, ids spread over a bit domain, parties --------------

PARTY_SPLITS = ("contiguous", "iid", "dirichlet")


def item_ids(stream: ItemStream) -> np.ndarray:
    """[n] int64: every user's item as its original id (through `labels` for basket data), in
    user order. A heavy-hitter protocol needs the ids themselves, so a stream that folded items
    into "other" is refused: build it with k - 1 >= the number of distinct items."""
    values = np.concatenate(list(stream.chunks()))
    if stream.labels is None:
        return values
    if stream.params.get("other_items", 0) > 0:
        raise ValueError(f"{stream.name}: {stream.params['other_items']} items are folded into "
                         f"'other' at k = {stream.k}; use k > {stream.params['distinct_items']}")
    return stream.labels[values]


def spread_ids(values: np.ndarray, k: int, *, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Values in [0, k) mapped to k distinct ids drawn uniformly from [0, 2^bits), so that items
    close in rank do not share prefixes by construction (Zipf ranks are 0, 1, 2, ...)."""
    if not isinstance(bits, int | np.integer) or isinstance(bits, bool) or not 1 <= bits <= 62:
        raise ValueError(f"bits must be an integer in [1, 62]; got {bits!r}")
    if not isinstance(k, int | np.integer) or not 1 <= k <= 1 << bits:
        raise ValueError(f"k must be an integer in [1, 2^bits = {1 << bits}]; got {k!r}")
    return rng.choice(1 << bits, size=int(k), replace=False)[np.asarray(values)]


def party_split(items: np.ndarray, num_parties: int, *, how: str, rng: np.random.Generator,
                alpha: float = 0.5) -> list[np.ndarray]:
    """The users' items divided into parties, a list of item arrays: "contiguous" (user order;
    time order for the basket files), "iid" (a seeded shuffle, `partition.iid`) or "dirichlet"
    (non-IID: each item's holders divided in Dir(alpha) proportions, `partition.dirichlet` with
    the items as labels)."""
    items = np.asarray(items)
    if how not in PARTY_SPLITS:
        raise ValueError(f"party_split: how must be one of {PARTY_SPLITS}; got {how!r}")
    if not isinstance(num_parties, int | np.integer) or isinstance(num_parties, bool) \
            or not 1 <= num_parties <= items.shape[0]:
        raise ValueError(f"num_parties must be an integer in [1, {items.shape[0]}] (the number "
                         f"of users); got {num_parties!r}")
    if how == "contiguous":
        parts = np.array_split(np.arange(items.shape[0]), num_parties)
    elif how == "iid":
        parts = iid(items.shape[0], num_parties, rng=rng)
    else:
        parts = dirichlet(items, num_parties, alpha=alpha, rng=rng)
    return [items[np.sort(part)] for part in parts]
