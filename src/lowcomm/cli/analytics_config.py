"""The typed configuration of `lowcomm analytics frequency|roc|heavy-hitters`, parsed at the edge.

As for `lowcomm run` (`lowcomm.cli.config`): one frozen dataclass per subcommand, whose fields
are the flags (dashed) and the YAML keys (underscored), with their help text and allowed values
in the metadata; `build_config(values, schema=..., check=...)` coerces and checks them, and every
mistake is one line naming the value (exit status 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from lowcomm.cli.config import ConfigError, _opt

ORACLES = ("grr", "oue", "sue", "olh", "blh", "hm", "hr", "ss", "pgr", "mss", "rappor")
SYNTHETIC = ("zipf", "spike")
BASKETS = ("retail", "kosarak")
ROC_MODES = ("exact", "ddp", "ldp")
HEAVY_METHODS = ("taps", "per-party-pem", "pem")
LEVEL_ORACLES = tuple(o for o in ORACLES if o not in ("mss", "rappor"))  # small domains per level
PARTY_SPLITS = ("contiguous", "iid", "dirichlet")


@dataclass(frozen=True)
class Recorded:
    """The run-record options every analytics command shares (listed first in the config)."""

    name: str | None = _opt(None, "a name for the run record", section="output")
    db: str | None = _opt(None, "SQLite file for run records (default: the user's data home)",
                          section="output")
    no_store: bool = _opt(False, "do not store a run record", section="output")


@dataclass(frozen=True)
class FrequencyConfig(Recorded):
    # data
    data: str = _opt("zipf", "users' items: zipf, spike (synthetic, --users of them) or the "
                     "real market baskets retail, kosarak (one seeded item per basket, from the "
                     "data directory)", choices=(*SYNTHETIC, *BASKETS), section="data")
    users: int = _opt(20_000, "number of users n for zipf and spike (the basket data has one "
                      "user per basket)", section="data")
    k: int = _opt(1024, "domain size k >= 2 (basket data: the k-1 most frequent items, then "
                  "'other')", section="data")
    zipf_s: float = _opt(1.1, "Zipf exponent s: Pr[item i] ~ (i+1)^-s", section="data")
    spike_item: int = _opt(0, "the item every user holds for data=spike", section="data")
    data_dir: str | None = _opt(None, "folder with itemsets/ (default: $LOWCOMM_DATA)",
                                section="data")
    chunk_users: int = _opt(1 << 16, "users generated and encoded at once (memory bound)",
                            section="data")
    # mechanism and privacy
    oracle: str = _opt("oue", "frequency oracle (see docs/analytics.md)", choices=ORACLES,
                       section="privacy")
    epsilon: float = _opt(1.0, "local privacy level epsilon > 0 of each user's report",
                          section="privacy")
    seed: int = _opt(0, "seed of every random stream (data, item picks, perturbation)",
                     section="privacy")
    # output
    top: int = _opt(10, "rows of the top-items table (the most frequent items)",
                    section="output")
    plot: str | None = _opt(None, "write a plot of true and estimated frequencies to this "
                            "file (needs matplotlib)", section="output")


@dataclass(frozen=True)
class RocConfig(Recorded):
    # data
    data: str = _opt("breast_cancer", "labelled examples scored by a logistic regression "
                     "trained on them: scikit-learn's bundled breast-cancer data (569)",
                     choices=("breast_cancer",), section="data")
    clients: int = _opt(20, "clients holding the (score, label) pairs, each pair assigned to "
                        "a uniformly random client", section="data")
    # mechanism and privacy
    mode: str = _opt("ddp", "exact (secure aggregation, no noise), ddp (distributed discrete "
                     "Laplace), ldp (each report epsilon-DP)", choices=ROC_MODES,
                     section="privacy")
    epsilon: float = _opt(1.0, "privacy level epsilon > 0 of the histogram tree",
                          section="privacy")
    height: int = _opt(4, "tree height h: Q = 2^h score bins (1..20)", section="privacy")
    no_consistency: bool = _opt(False, "skip the least-squares tree consistency step",
                                section="privacy")
    seed: int = _opt(0, "seed of the client assignment and the noise", section="privacy")
    # output
    plot: str | None = _opt(None, "write the exact and private ROC and PR curves to this file "
                            "(needs matplotlib)", section="output")


@dataclass(frozen=True)
class HeavyHittersConfig(Recorded):
    # data
    data: str = _opt("zipf", "users' items: zipf (--users of them, --zipf-items distinct Zipf "
                     "ranks spread over random --bits-bit ids) or the real market baskets "
                     "retail, kosarak (one seeded item per basket, original ids)",
                     choices=("zipf", *BASKETS), section="data")
    users: int = _opt(50_000, "number of users for data=zipf", section="data")
    zipf_items: int = _opt(1000, "distinct items of data=zipf", section="data")
    zipf_s: float = _opt(1.1, "Zipf exponent s: Pr[rank i] ~ (i+1)^-s", section="data")
    bits: int = _opt(15, "bits of an item id (the baskets' ids are below 2^15)", section="data")
    data_dir: str | None = _opt(None, "folder with itemsets/ (default: $LOWCOMM_DATA)",
                                section="data")
    parties: int = _opt(4, "parties holding the users (taps, per-party-pem)", section="data")
    split: str = _opt("iid", "how users are divided into parties", choices=PARTY_SPLITS,
                      section="data")
    alpha: float = _opt(0.5, "Dirichlet concentration for split=dirichlet", section="data")
    # mechanism and privacy
    method: str = _opt("taps", "taps (TAPS across parties), per-party-pem (the baseline: PEM in "
                       "each party, merged), pem (PEM over all users pooled)",
                       choices=HEAVY_METHODS, section="privacy")
    top: int = _opt(10, "how many heavy hitters to find (the k of top-k)", section="privacy")
    epsilon: float = _opt(4.0, "local privacy level epsilon > 0 of each user's one report",
                          section="privacy")
    oracle: str = _opt("olh", "frequency oracle of every level", choices=LEVEL_ORACLES,
                       section="privacy")
    step_bits: int = _opt(3, "bits a prefix grows per level", section="privacy")
    seed: int = _opt(0, "seed of every random stream (data, split, groups, perturbation)",
                     section="privacy")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_frequency(c: FrequencyConfig) -> None:
    _need(c.epsilon > 0, f"epsilon must be > 0; got {c.epsilon}")
    _need(c.k >= 2, f"k must be >= 2; got {c.k}")
    _need(c.users >= 1, f"users must be >= 1; got {c.users}")
    _need(c.zipf_s >= 0, f"zipf_s must be >= 0; got {c.zipf_s}")
    _need(0 <= c.spike_item < c.k, f"spike_item must be in [0, {c.k}); got {c.spike_item}")
    _need(c.chunk_users >= 1, f"chunk_users must be >= 1; got {c.chunk_users}")
    _need(c.top >= 1, f"top must be >= 1; got {c.top}")


def check_roc(c: RocConfig) -> None:
    _need(c.epsilon > 0, f"epsilon must be > 0; got {c.epsilon}")
    _need(1 <= c.height <= 20, f"height must be in 1..20; got {c.height}")
    _need(c.clients >= 1, f"clients must be >= 1; got {c.clients}")


def check_heavy_hitters(c: HeavyHittersConfig) -> None:
    _need(c.epsilon > 0, f"epsilon must be > 0; got {c.epsilon}")
    _need(1 <= c.bits <= 62, f"bits must be in 1..62; got {c.bits}")
    _need(c.top >= 1, f"top must be >= 1; got {c.top}")
    _need(c.users >= 1, f"users must be >= 1; got {c.users}")
    _need(c.data != "zipf" or 2 <= c.zipf_items <= 1 << c.bits,
          f"zipf_items must be in [2, 2^bits = {1 << c.bits}]; got {c.zipf_items}")
    _need(c.zipf_s >= 0, f"zipf_s must be >= 0; got {c.zipf_s}")
    _need(c.parties >= 1, f"parties must be >= 1; got {c.parties}")
    _need(c.alpha > 0, f"alpha must be > 0; got {c.alpha}")
    _need(c.step_bits >= 1, f"step_bits must be >= 1; got {c.step_bits}")
