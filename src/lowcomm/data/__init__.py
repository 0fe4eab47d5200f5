"""Datasets for federated experiments: pooled data, partitioners, and lazily produced clients.

- containers: `CentralDataset` (pooled), `FederatedDataset` (clients produced on demand by id),
  `ClientData`; `federate` turns a pooled dataset plus a partition into a federated one;
- partitioners (`iid`, `dirichlet`, `shards`, `quantity_skew`, `natural`) and the `label_skew`
  metric;
- procedural data: `synthetic` (FedProx's Synthetic(α, β), a million clients are fine);
- item streams for frequency estimation (`ItemStream`, in chunks): `zipf_items`, `spike_items`,
  and `basket_items` (one seeded item per real market basket), with `read_baskets`; for heavy
  hitters `item_ids` (original ids), `spread_ids` (ranks onto random bit ids), `party_split`;
- bundled real data (offline, inside installed packages): `digits`, `mnist_subset`, `mnist1d`;
- real data from a data directory: `mnist`, `fashion_mnist`, `femnist`, `shakespeare`, with
  `resolve_data_dir` and `DataDirError`;
- character corpora for language models (`TextCorpus`): `python_docs` (embedded, no data
  directory) and `tiny_shakespeare` (data directory), with `shard_text` (one contiguous shard per
  worker), `sample_windows` (random training windows) and `eval_windows` (fixed validation ones).
"""

from lowcomm.data.bundled import digits, mnist1d, mnist_subset
from lowcomm.data.federated import CentralDataset, ClientData, FederatedDataset, federate
from lowcomm.data.files import (
    DataDirError,
    fashion_mnist,
    femnist,
    mnist,
    resolve_data_dir,
    shakespeare,
)
from lowcomm.data.items import (
    ItemStream,
    basket_items,
    item_ids,
    party_split,
    read_baskets,
    spike_items,
    spread_ids,
    zipf_items,
)
from lowcomm.data.partition import dirichlet, iid, label_skew, natural, quantity_skew, shards
from lowcomm.data.synthetic import synthetic
from lowcomm.data.text import (
    TextCorpus,
    eval_windows,
    python_docs,
    sample_windows,
    shard_text,
    tiny_shakespeare,
)

__all__ = [
    "CentralDataset",
    "ClientData",
    "DataDirError",
    "FederatedDataset",
    "ItemStream",
    "TextCorpus",
    "basket_items",
    "digits",
    "dirichlet",
    "eval_windows",
    "fashion_mnist",
    "federate",
    "femnist",
    "iid",
    "item_ids",
    "label_skew",
    "mnist",
    "mnist1d",
    "mnist_subset",
    "natural",
    "party_split",
    "python_docs",
    "quantity_skew",
    "read_baskets",
    "resolve_data_dir",
    "sample_windows",
    "shakespeare",
    "shard_text",
    "shards",
    "spike_items",
    "spread_ids",
    "synthetic",
    "tiny_shakespeare",
    "zipf_items",
]
