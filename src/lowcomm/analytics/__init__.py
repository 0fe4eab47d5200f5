"""Federated analytics under local differential privacy: frequency oracles (see docs/analytics.md).

Every oracle is a `FrequencyOracle` built by a lowercase factory: `grr`, `oue`, `sue`, `olh`,
`blh`, `hm`, `hr`, `ss`, `pgr` (Projective Geometry Response) and `mss` (ModularSubsetSelection,
whose `estimate` is an LSMR decode). Users are encoded all at once from an explicit numpy
Generator; reports are `Payload`s; support counts of chunks add up (`aggregate`); `estimate` is
unbiased; `variance` is the closed form; `report_bits` measures one serialized report beside the
paper's bit count (`mss_bits` gives MSS's three counts). Each oracle declares its report `fields`
(`ReportField`, `ReportRule`); from them `aggregate_reports` reads reports as bytes from users
(`user_reports`), rejecting and counting the malformed ones one by one
(`lowcomm.analytics.wire`; `checked_batches` is the layer under it, for any oracle with declared
fields, RAPPOR's included); `encode_chunks` encodes users chunk by chunk for streaming.

The exception is full RAPPOR (`rappor`: Bloom filter, cohorts, memoized permanent and
instantaneous randomized response, regression decoding), which is not a pure protocol and has
its own `RapporOracle` with `RapporTally` counts and a `RapporDecoding` result.

Heavy hitters (see docs/heavy_hitters.md): `prefix_tree(bits=, k=, epsilon=, oracle=olh)` fixes
the task and the tree; `pem(values, tree, seed=)`, `per_party_pem(parties, tree, seed=)` and
`taps(parties, tree, seed=)` return a `HeavyHitters` record (top-k, F1, NCR, measured bits per
user, rounds).

Federated ROC and PR curves (Xu and Cormode) are in `lowcomm.analytics.roc` (see docs/roc.md).
"""

from lowcomm.analytics.grr import grr
from lowcomm.analytics.hadamard import HadamardResponseOracle, hm, hr
from lowcomm.analytics.heavy_hitters import HeavyHitters, f1_score, ncr, top_k
from lowcomm.analytics.local_hashing import blh, local_hashing, olh
from lowcomm.analytics.mss import MSSOracle, mss, mss_bits
from lowcomm.analytics.oracle import (
    FrequencyOracle,
    ReportBits,
    ReportField,
    ReportRule,
    Tally,
    aggregate,
    num_reports,
    report_bits,
    single_report,
)
from lowcomm.analytics.pem import pem, per_party_pem
from lowcomm.analytics.prefix_tree import PrefixTree, prefix_tree
from lowcomm.analytics.projective import ProjectiveOracle, pgr
from lowcomm.analytics.rappor import RapporOracle, RapporTally, rappor
from lowcomm.analytics.rappor_decode import RapporDecoding
from lowcomm.analytics.subset import ss
from lowcomm.analytics.taps import taps
from lowcomm.analytics.unary import oue, sue
from lowcomm.analytics.wire import aggregate_reports, checked_batches, encode_chunks, user_reports

__all__ = [
    "FrequencyOracle",
    "HadamardResponseOracle",
    "HeavyHitters",
    "MSSOracle",
    "PrefixTree",
    "ProjectiveOracle",
    "RapporDecoding",
    "RapporOracle",
    "RapporTally",
    "ReportBits",
    "ReportField",
    "ReportRule",
    "Tally",
    "aggregate",
    "aggregate_reports",
    "blh",
    "checked_batches",
    "encode_chunks",
    "f1_score",
    "grr",
    "hm",
    "hr",
    "local_hashing",
    "mss",
    "mss_bits",
    "ncr",
    "num_reports",
    "olh",
    "oue",
    "pem",
    "per_party_pem",
    "pgr",
    "prefix_tree",
    "rappor",
    "report_bits",
    "single_report",
    "ss",
    "sue",
    "taps",
    "top_k",
    "user_reports",
]
