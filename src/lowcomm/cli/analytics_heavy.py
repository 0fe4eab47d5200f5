"""`lowcomm analytics heavy-hitters`: PEM, TAPS and the per-party PEM baseline
(`lowcomm.analytics.pem`, `lowcomm.analytics.taps`) on synthetic or real market-basket items,
stored like a training run.

The ledger: the protocols encode each level's group of users through the level's frequency
oracle; the CLI hands them that oracle wrapped so that every encoded chunk is also split into
the users' own serialized reports (`user_reports`), and each report becomes one
`CommEvent(round, client:<j>, server, "<method>/report", len(bytes), <oracle>)`. Every user
reports exactly once, so j numbers the users in the order they report; `round` numbers the
groups in the order they answered (PEM: its levels; TAPS: each party's answer to each level,
in the protocol's order). The protocol's sequential rounds (its critical path) are the
summary's `rounds`. Not in the ledger: the candidate lists users receive and what the parties'
aggregators exchange; both are measured by the library and given in the summary.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from rich.console import Console

from lowcomm import analytics, cost, data
from lowcomm.analytics import user_reports
from lowcomm.cli.analytics import ORACLES, modeled_costs, record_run
from lowcomm.cli.analytics_config import HeavyHittersConfig
from lowcomm.cli.config import ConfigError
from lowcomm.core import numpy_rng


def heavy_items(c: HeavyHittersConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """[n] item ids in [0, 2^bits) and a description of where they come from."""
    try:
        if c.data == "zipf":
            stream = data.zipf_items(c.zipf_items, c.users, s=c.zipf_s, seed=c.seed)
            ranks = np.concatenate(list(stream.chunks()))
            ids = data.spread_ids(ranks, c.zipf_items, bits=c.bits,
                                  rng=numpy_rng(c.seed, purpose="analytics-hh-ids"))
            return ids, {**stream.describe(), "ids": f"ranks spread over 2^{c.bits} ids"}
        stream = data.basket_items(c.data, c.data_dir, k=1 << c.bits, seed=c.seed)
        ids = data.item_ids(stream)
    except data.DataDirError as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    except ValueError as err:
        raise ConfigError(f"data={c.data}: {err}") from None
    if ids.size and int(ids.max()) >= 1 << c.bits:
        raise ConfigError(f"bits={c.bits} is too few: data={c.data} has item id {ids.max()}")
    return ids, stream.describe()


def recording_oracle(factory, ledger: cost.Ledger, channel: str):
    """`factory` whose oracles also record every user's serialized report in `ledger`."""
    groups = [0]  # how many groups have reported so far (the ledger's round)
    users = [0]  # how many users have reported so far (their ledger ids)

    def make(epsilon: float, k: int):
        oracle = factory(epsilon, k)
        own_round: list[int] = []

        def encode(values: np.ndarray, rng: np.random.Generator):
            reports = oracle.encode(values, rng)
            if not own_round:  # this oracle serves one group: its first chunk opens a round
                groups[0] += 1
                own_round.append(groups[0])
            for message in user_reports(reports):
                ledger.record(cost.CommEvent(own_round[0], cost.client_name(users[0]),
                                             cost.SERVER, channel, len(message), oracle.name))
                users[0] += 1
            return reports

        return dataclasses.replace(oracle, encode=encode)

    return make


def heavy_hitters_command(c: HeavyHittersConfig, console: Console) -> int:
    items, described = heavy_items(c)
    parties = data.party_split(items, min(c.parties, items.size), how=c.split,
                               rng=numpy_rng(c.seed, purpose="analytics-hh-split"),
                               alpha=c.alpha)
    console.print(f"[bold]{c.method}[/] (top {c.top}, epsilon {c.epsilon:g}, {c.oracle} per "
                  f"level) over {items.size:,} users of {described['name']}"
                  + ("" if c.method == "pem" else f" in {len(parties)} parties ({c.split})"))

    def body(ledger: cost.Ledger):
        started = time.perf_counter()
        try:
            tree = analytics.prefix_tree(
                bits=c.bits, k=c.top, epsilon=c.epsilon, step_bits=c.step_bits,
                oracle=recording_oracle(ORACLES[c.oracle], ledger, f"{c.method}/report"))
            if c.method == "pem":
                result = analytics.pem(items, tree, seed=c.seed)
            elif c.method == "taps":
                result = analytics.taps(parties, tree, seed=c.seed)
            else:
                result = analytics.per_party_pem(parties, tree, seed=c.seed)
        except ValueError as err:
            raise ConfigError(f"{c.method}: {err}") from None
        totals = ledger.totals()
        values, counts = np.unique(items, return_counts=True)
        frequency = dict(zip(values.tolist(), (counts / items.size).tolist(), strict=True))
        summary = {
            "kind": "analytics/heavy-hitters", "method": c.method, "data": described,
            "users": int(items.size), "parties": 1 if c.method == "pem" else len(parties),
            "split": c.split, "k": c.top, "epsilon": c.epsilon, "oracle": c.oracle,
            "bits": c.bits, "levels": list(tree.lengths), "rounds": result.rounds,
            "f1": result.f1, "ncr": result.ncr,
            "found": [{"item": int(v), "estimate": float(e), "true": frequency.get(int(v), 0.0)}
                      for v, e in zip(result.items, result.estimates, strict=True)],
            "truth": [{"item": int(v), "true": frequency[int(v)]} for v in result.truth],
            "bits_per_user": {"wire_measured": 8 * totals.bytes_up / items.size,
                              "library_wire": result.bits_per_user,
                              "data": result.data_bits_per_user,
                              "analytic": result.analytic_bits_per_user,
                              "down": result.down_bits_per_user},
            "party_bits": result.party_bits,
            "measured": {**totals.as_dict(), "simulator_seconds": time.perf_counter() - started},
            "modeled": modeled_costs(ledger),
        }
        rounds = [{"round": r, "users": t.messages, "bytes_up": t.bytes_up}
                  for r, t in ledger.per_round().items()]
        return summary, rounds

    record_run("analytics heavy-hitters", c, console, body)
    return 0
