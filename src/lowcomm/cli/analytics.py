"""`lowcomm analytics frequency|roc|heavy-hitters`: private federated analytics from the command
line, each run stored like a training run (config, summary, per-round rows and a ledger).

Every user (or ROC client) really sends bytes: its report is serialized, the ledger records one
`CommEvent(round, client:<i>, server, channel, nbytes, codec)` with the length of those bytes,
and the server parses them back (`aggregate_reports` for the frequency oracles: each report is
checked and counted, a malformed one would be rejected and counted by reason). The modeled
upload time, energy, money and carbon come from the ledger and the default declared models of
`lowcomm.cost` (`default_network()`, `DeviceModel()`, ...), as for `lowcomm run`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from rich.console import Console

from lowcomm import analytics, cost, data
from lowcomm.analytics import (
    aggregate_reports,
    checked_batches,
    encode_chunks,
    report_bits,
    user_reports,
)
from lowcomm.cli.analytics_config import FrequencyConfig, RocConfig
from lowcomm.cli.analytics_plots import plot_frequencies, plot_roc, require_matplotlib
from lowcomm.cli.config import ConfigError
from lowcomm.cli.records import recording
from lowcomm.cli.run import environment
from lowcomm.core import Payload, derive_seed, deserialize, numpy_rng, serialize
from lowcomm.report.analytics_tables import analytics_tables

ORACLES: dict[str, Callable[[float, int], Any]] = {
    "grr": analytics.grr, "oue": analytics.oue, "sue": analytics.sue, "olh": analytics.olh,
    "blh": analytics.blh, "hm": analytics.hm, "hr": analytics.hr, "ss": analytics.ss,
    "pgr": analytics.pgr, "mss": analytics.mss, "rappor": analytics.rappor,
}
RunBody = Callable[[cost.Ledger], tuple[dict[str, Any], list[dict[str, Any]]]]


def record_run(command: str, c: Any, console: Console, body: RunBody) -> dict[str, Any]:
    """Run `body(ledger) -> (summary, rounds)` inside the shared recording (`cli.records`: a
    failed or interrupted run keeps its ledger), print its tables and finish the record."""
    with recording(db=c.db, no_store=c.no_store, name=c.name,
                   config={"command": command, **dataclasses.asdict(c)},
                   environment=environment(), console=console, what="reports") as rec:
        summary, rounds = body(rec.ledger)
        for table in analytics_tables(summary):
            console.print(table)
        for row in rounds:
            rec.add_round(row)
        rec.finish(summary, console)
    return summary


def modeled_costs(ledger: cost.Ledger) -> dict[str, Any]:
    """The ledger priced by the default declared models (labelled modeled)."""
    return cost.price(ledger, network=cost.default_network(), device=cost.DeviceModel(),
                      money=cost.MoneyModel(), carbon=cost.CarbonModel()).as_dict()


# ------------------------------------------------------------------------------ frequency


def item_stream(c: FrequencyConfig) -> data.ItemStream:
    try:
        if c.data == "zipf":
            return data.zipf_items(c.k, c.users, s=c.zipf_s, seed=c.seed,
                                   chunk_users=c.chunk_users)
        if c.data == "spike":
            return data.spike_items(c.k, c.users, item=c.spike_item, chunk_users=c.chunk_users)
        return data.basket_items(c.data, c.data_dir, k=c.k, seed=c.seed,
                                 chunk_users=c.chunk_users)
    except data.DataDirError as err:
        raise ConfigError(str(err).splitlines()[0]) from None
    except ValueError as err:
        raise ConfigError(f"data={c.data}: {err}") from None


def build_oracle(c: FrequencyConfig):
    try:
        return ORACLES[c.oracle](c.epsilon, c.k)
    except ValueError as err:
        raise ConfigError(f"oracle={c.oracle}: {err}") from None


def client_reports(c: FrequencyConfig, oracle, values: Iterator[np.ndarray]
                   ) -> Iterator[Payload]:
    """Each chunk of users' reports, chunk i from `numpy_rng(seed, client=i, ...)`. RAPPOR's
    users also need ids (their index in the stream: cohort and memoized B' derive from them)
    and the permanent secret, here `derive_seed(seed, purpose="analytics-rappor-prr")`."""
    if not isinstance(oracle, analytics.RapporOracle):
        yield from encode_chunks(oracle, values, seed=c.seed, purpose="analytics-frequency")
        return
    prr_seed = derive_seed(c.seed, purpose="analytics-rappor-prr")
    first_user = 0
    for index, chunk in enumerate(values):
        users = np.arange(first_user, first_user + chunk.size)
        first_user += chunk.size
        yield oracle.encode(chunk, numpy_rng(c.seed, client=index,
                                             purpose="analytics-frequency/rappor"),
                            users=users, prr_seed=prr_seed)


def server_estimate(oracle, stream: Iterator[bytes]) -> tuple[np.ndarray, int, dict[str, int]]:
    """(estimated frequencies [k], accepted reports, rejected ones by reason) from the bytes
    users sent: the unbiased estimate of a `FrequencyOracle`, RAPPOR's own decoding (Lasso,
    then least squares: not unbiased, no closed-form variance)."""
    if isinstance(oracle, analytics.RapporOracle):
        rejected: dict[str, int] = {}
        tally = oracle.aggregate(checked_batches(oracle, stream, rejected))
        return oracle.decode(tally).frequencies, int(tally.cohort_n.sum()), rejected
    tally = aggregate_reports(oracle, stream)
    return oracle.estimate(tally.counts, tally.n), tally.n, dict(tally.rejected)


def frequency_command(c: FrequencyConfig, console: Console) -> int:
    if c.plot:
        require_matplotlib(c.plot)
    oracle = build_oracle(c)
    stream = item_stream(c)
    console.print(f"[bold]{oracle.name}[/] (epsilon {oracle.epsilon:g}, k {oracle.k}) over "
                  f"{stream.n:,} users of {stream.name}")

    def body(ledger: cost.Ledger):
        started = time.perf_counter()
        truth = np.zeros(oracle.k, dtype=np.int64)
        first: list = []

        def values() -> Iterator[np.ndarray]:
            for chunk in stream.chunks():
                truth[:] += np.bincount(chunk, minlength=oracle.k)
                yield chunk

        def sent() -> Iterator[bytes]:  # every user's serialized report, as it leaves the device
            user = 0
            for reports in client_reports(c, oracle, values()):
                if not first:
                    first.append(reports)  # one user's report is measured by report_bits
                for message in user_reports(reports):
                    ledger.record(cost.CommEvent(1, cost.client_name(user), cost.SERVER,
                                                 "report", len(message), oracle.name))
                    user += 1
                    yield message

        f_hat, accepted, rejected = server_estimate(oracle, sent())
        seconds = time.perf_counter() - started
        summary = _frequency_summary(c, oracle, stream, (f_hat, accepted, rejected), truth,
                                     first[0], ledger, seconds)
        rounds = [{"round": 1, "users": summary["users"], "accepted": accepted,
                   "rejected": sum(rejected.values()),
                   "bytes_up": summary["measured"]["bytes_up"]}]
        return summary, rounds

    summary = record_run("analytics frequency", c, console, body)
    if c.plot:
        plot_frequencies(summary, c.plot)
        console.print(f"wrote {c.plot}")
    return 0


def _frequency_summary(c: FrequencyConfig, oracle, stream: data.ItemStream, result,
                       truth: np.ndarray, sample: Payload, ledger: cost.Ledger,
                       seconds: float) -> dict[str, Any]:
    f_hat, accepted, rejected = result
    users = int(truth.sum())
    f_true = truth / users
    pure = isinstance(oracle, analytics.FrequencyOracle)
    variance = oracle.variance(accepted, f_true) if pure else None  # [k]; RAPPOR: none
    mse = float(np.mean((f_hat - f_true) ** 2))
    theory = None if variance is None else float(np.mean(variance))
    top = min(c.top, oracle.k)
    true_top = np.lexsort((np.arange(oracle.k), -truth))[:top]
    estimated_top = np.argsort(-f_hat, kind="stable")[:top]
    labels = stream.labels if stream.labels is not None else np.arange(oracle.k)
    totals = ledger.totals()
    bits = report_bits(oracle, sample)
    params = {"name": oracle.name, "epsilon": oracle.epsilon, "k": oracle.k}
    params.update({"p_star": oracle.p_star, "q_star": oracle.q_star, "g": oracle.g} if pure
                  else {"epsilon_one": oracle.epsilon_one, "num_bits": oracle.num_bits,
                        "num_hashes": oracle.num_hashes, "cohorts": oracle.cohorts,
                        "estimator": "decode (Lasso, then least squares)"})
    return {
        "kind": "analytics/frequency", "oracle": params, "data": stream.describe(),
        "rounds": 1, "users": users, "accepted": accepted, "rejected": rejected,
        "top_items": [{"item": int(v), "label": "other" if labels[v] < 0 else int(labels[v]),
                       "true": float(f_true[v]), "estimate": float(f_hat[v]),
                       "sd": None if variance is None else float(math.sqrt(variance[v]))}
                      for v in true_top],
        "top_overlap": len(set(true_top.tolist()) & set(estimated_top.tolist())) / top,
        "estimates": f_hat.tolist(), "true_frequencies": f_true.tolist(),
        "mse": mse, "theory_mse": theory,
        "mse_over_theory": None if theory is None else mse / theory,
        "ratio_standard_error": math.sqrt(2 / oracle.k),
        "bits": {"analytic": bits.analytic_bits, "data": bits.data_bits,
                 "wire": bits.wire_bits, "wire_measured": 8 * totals.bytes_up / users},
        "measured": {**totals.as_dict(), "simulator_seconds": seconds},
        "modeled": modeled_costs(ledger),
    }


# ------------------------------------------------------------------------------------ ROC


def breast_cancer_scores() -> tuple[np.ndarray, np.ndarray, str]:
    """Scores of a logistic regression trained and scored on all 569 examples of
    scikit-learn's bundled breast-cancer data, as in docs/roc.md."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500)).fit(x, y)
    return model.predict_proba(x)[:, 1], y, "logistic regression (C = 0.01, standardized)"


def roc_command(c: RocConfig, console: Console) -> int:
    from lowcomm.analytics import roc

    if c.plot:
        require_matplotlib(c.plot)
    scores, labels, model = breast_cancer_scores()
    owners = numpy_rng(c.seed, purpose="analytics-roc-clients").integers(0, c.clients,
                                                                         size=labels.size)
    epsilon = None if c.mode == "exact" else c.epsilon
    console.print(f"[bold]federated ROC/PR[/] ({c.mode}, Q = {2 ** c.height}) over "
                  f"{c.clients} clients holding {labels.size} breast-cancer examples")

    def body(ledger: cost.Ledger):
        started = time.perf_counter()
        reports = roc.client_reports(scores, labels, owners, height=c.height,
                                     n_clients=c.clients, mode=c.mode, epsilon=epsilon,
                                     rng=numpy_rng(c.seed, purpose="analytics-roc-noise"))
        total = np.zeros(reports.shape[1:], dtype=np.int64)  # [2, nodes]: the server's sum
        for client, report in enumerate(reports):
            message = serialize(roc.report_payload(report))
            ledger.record(cost.CommEvent(1, cost.client_name(client), cost.SERVER,
                                         "roc-report", len(message), f"roc-{c.mode}"))
            parsed = deserialize(message)
            total += np.stack([parsed["neg"], parsed["pos"]]).astype(np.int64)
        private = roc.curves_from_tree(total, c.height, consistency=not c.no_consistency)
        exact = roc.exact_curves(scores, labels)
        totals = ledger.totals()
        summary = {
            "kind": "analytics/roc", "data": "scikit-learn breast-cancer (bundled)",
            "model": model, "examples": int(labels.size), "clients": c.clients,
            "mode": c.mode, "epsilon": c.epsilon, "height": c.height, "bins": 2 ** c.height,
            "consistency": not c.no_consistency, "rounds": 1,
            "exact_roc_auc": exact.roc_auc, "roc_auc": private.roc_auc,
            "roc_auc_error": private.roc_auc - exact.roc_auc,
            "exact_pr_auc": exact.pr_auc, "pr_auc": private.pr_auc,
            "pr_auc_error": private.pr_auc - exact.pr_auc,
            "roc_area_error": roc.roc_area_error(exact, private),
            "binning_auc_bound": roc.binning_auc_bound(scores, labels, c.height),
            "curves": {name: {"fpr": cv.fpr.tolist(), "tpr": cv.tpr.tolist(),
                              "recall": cv.recall.tolist(), "precision": cv.precision.tolist()}
                       for name, cv in (("exact", exact), ("private", private))},
            "bits": {"analytic": roc.analytic_report_bits(c.height),
                     "wire_measured": 8 * totals.bytes_up / c.clients},
            "measured": {**totals.as_dict(), "simulator_seconds": time.perf_counter() - started},
            "modeled": modeled_costs(ledger),
        }
        rounds = [{"round": 1, "clients": c.clients, "bytes_up": totals.bytes_up}]
        return summary, rounds

    summary = record_run("analytics roc", c, console, body)
    if c.plot:
        plot_roc(summary, c.plot)
        console.print(f"wrote {c.plot}")
    return 0
