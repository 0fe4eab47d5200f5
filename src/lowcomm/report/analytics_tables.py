"""Rich tables of analytics records (`lowcomm analytics ...`): what the run printed, rebuilt from
the stored summary, so `lowcomm show` prints the same. Reads records; never runs anything."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from lowcomm.report.tables import _device_note, _network_note, human_bytes, human_seconds


def _quantities(title: str) -> Table:
    table = Table(title=title, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("how it was obtained", style="dim")
    return table


def _cost_rows(summary: dict[str, Any], unit: str) -> list[tuple[str, str, str]]:
    """Measured bytes, then the modeled time, energy, money and carbon of the ledger."""
    measured, modeled = summary["measured"], summary["modeled"]
    models = modeled["models"]
    senders = summary.get("users", summary.get("clients"))
    return [
        ("rounds", str(summary["rounds"]), f"{senders:,} {unit}, each reports once"
         + ("" if summary["rounds"] == 1 else " (sequential rounds of the protocol)")),
        ("bytes up", human_bytes(measured["bytes_up"]),
         f"measured: {measured['bytes_up']:,} serialized bytes, {measured['messages']:,} "
         "messages"),
        ("time", human_seconds(modeled["modeled_seconds"]),
         f"modeled: {_network_note(models['network'])}"),
        (f"{unit[:-1]} energy (all)", f"{modeled['modeled_joules']:,.3f} J",
         f"modeled: {_device_note(models['device'])}"),
        ("carbon", f"{modeled['modeled_grams_co2']:,.6f} g CO2",
         f"modeled: {models['carbon']['grams_co2_per_kwh']} g/kWh, PUE "
         f"{models['carbon']['pue']}"),
        ("simulator wall-clock", human_seconds(measured["simulator_seconds"]),
         "measured: this process (simulator speed, not a cost of the protocol)"),
    ]


def top_items_table(summary: dict[str, Any]) -> Table:
    """True against estimated frequencies of the most frequent items (by true frequency)."""
    oracle = summary["oracle"]
    how = oracle.get("estimator", "unbiased, not clipped")
    table = Table(title=f"top {len(summary['top_items'])} items: true vs {oracle['name']} "
                        f"estimate ({how})", header_style="bold")
    for column in ("rank", "item", "true f", "estimate", "error", "sd (theory)"):
        table.add_column(column, justify="right")
    for rank, row in enumerate(summary["top_items"], start=1):
        table.add_row(str(rank), str(row["label"]), f"{row['true']:.5f}",
                      f"{row['estimate']:.5f}", f"{row['estimate'] - row['true']:+.5f}",
                      "-" if row["sd"] is None else f"{row['sd']:.5f}")
    return table


def frequency_table(summary: dict[str, Any]) -> Table:
    o, bits, data = summary["oracle"], summary["bits"], summary["data"]
    table = _quantities(f"lowcomm analytics frequency: {o['name']}, epsilon = {o['epsilon']:g}, "
                        f"k = {o['k']}")
    rejected = summary["rejected"]
    rows = [
        ("users", f"{summary['users']:,}", f"data: {_data_note(data)}"),
        ("reports accepted", f"{summary['accepted']:,}",
         "rejected: " + (", ".join(f"{r} {n:,}" for r, n in rejected.items()) or "none")
         + " (each report parsed from its bytes and checked)"),
        ("MSE", f"{summary['mse']:.4g}", "measured: mean over the k items of (f_hat - f)^2"),
        *(() if summary["theory_mse"] is None else (
            ("MSE (theory)", f"{summary['theory_mse']:.4g}",
             "the closed-form variance of f_hat, mean over the k items"),
            ("MSE / theory", f"{summary['mse_over_theory']:.3f}",
             f"one run: standard error about sqrt(2/k) = "
             f"{summary['ratio_standard_error']:.3f} if the items' errors are independent"))),
        (f"top-{len(summary['top_items'])} overlap", f"{summary['top_overlap']:.0%}",
         "true top items among the estimated top items"),
        ("bits per user", f"{summary['bits']['wire_measured']:,.0f}",
         f"measured: 8 x the serialized report (payload data {bits['data']} bits + framing)"),
        ("bits per user (paper)", f"{bits['analytic']:,}", "analytic: the paper's count"),
        *_cost_rows(summary, "users"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def _data_note(data: dict[str, Any]) -> str:
    if "file" not in data:
        return f"synthetic {data['name']}" + (f", seed {data['seed']}" if "seed" in data else "")
    return (f"{data['name']} baskets ({data['file']}), one seeded item each; top "
            f"{data['k'] - 1} of {data['distinct_items']:,} items, the rest 'other'")


def roc_table(summary: dict[str, Any]) -> Table:
    table = _quantities(f"lowcomm analytics roc: mode {summary['mode']}, epsilon = "
                        f"{summary['epsilon']:g}, Q = {summary['bins']} bins")
    rows = [
        ("examples", f"{summary['examples']:,}",
         f"{summary['data']}; scores of {summary['model']}"),
        ("ROC AUC", f"{summary['roc_auc']:.4f}", f"exact {summary['exact_roc_auc']:.4f}; "
         f"error {summary['roc_auc_error']:+.4f}"),
        ("ROC area error", f"{summary['roc_area_error']:.4f}",
         "integral over FPR of |TPR - private TPR| (Xu and Cormode's AE)"),
        ("PR AUC", f"{summary['pr_auc']:.4f}", f"exact {summary['exact_pr_auc']:.4f}; "
         f"error {summary['pr_auc_error']:+.4f}"),
        ("binning bound", f"{summary['binning_auc_bound']:.4f}",
         "largest |AUC error| from Q bins alone (no noise)"),
        ("bits per client", f"{summary['bits']['wire_measured']:,.0f}",
         f"measured: 8 x the serialized report; counts alone {summary['bits']['analytic']:,}"),
        *_cost_rows(summary, "clients"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def heavy_hitters_tables(summary: dict[str, Any]) -> list[Table]:
    found = Table(title=f"{summary['method']}: the top {summary['k']} found vs the true top "
                        f"{summary['k']}", header_style="bold")
    for column in ("rank", "found item", "estimate", "its true f", "true item", "true f"):
        found.add_column(column, justify="right")
    truth = summary["truth"]
    for rank in range(max(len(summary["found"]), len(truth))):
        f = summary["found"][rank] if rank < len(summary["found"]) else None
        t = truth[rank] if rank < len(truth) else None
        hit = f is not None and any(f["item"] == x["item"] for x in truth)
        found.add_row(str(rank + 1), "" if f is None else f"{f['item']}{'' if hit else ' *'}",
                      "" if f is None else f"{f['estimate']:.4f}",
                      "" if f is None else f"{f['true']:.4f}",
                      "" if t is None else str(t["item"]), "" if t is None else f"{t['true']:.4f}")
    table = _quantities(f"lowcomm analytics heavy-hitters: {summary['method']}, epsilon = "
                        f"{summary['epsilon']:g}, {summary['oracle']} per level")
    bits = summary["bits_per_user"]
    rows = [
        ("users", f"{summary['users']:,}", f"data: {_data_note(summary['data'])}"
         + (f"; {summary['parties']} parties ({summary['split']})"
            if summary["parties"] > 1 else "")),
        ("F1", f"{summary['f1']:.3f}", "found top-k against the true top-k (* = a miss)"),
        ("NCR", f"{summary['ncr']:.3f}", "rank-weighted recall of the true top-k"),
        ("levels", str(len(summary["levels"])), "prefix lengths " +
         ", ".join(map(str, summary["levels"])) + f" of {summary['bits']}-bit ids"),
        ("bits up per user", f"{bits['wire_measured']:,.1f}",
         f"measured: 8 x each user's serialized report (data {bits['data']:,.1f}, paper "
         f"{bits['analytic']:,.1f})"),
        ("bits down per user", f"{bits['down']:,.1f}",
         "measured: the serialized candidate list a user receives (not in the ledger)"),
        ("bits between parties", f"{summary['party_bits']:,}",
         "measured: serialized messages of the parties' aggregators (not in the ledger)"),
        *_cost_rows(summary, "users"),
    ]
    for row in rows:
        table.add_row(*row)
    return [found, table]


def analytics_tables(summary: dict[str, Any]) -> list[Table]:
    """The tables of an analytics record, by its kind."""
    kind = summary.get("kind")
    if kind == "analytics/frequency":
        return [top_items_table(summary), frequency_table(summary)]
    if kind == "analytics/roc":
        return [roc_table(summary)]
    if kind == "analytics/heavy-hitters":
        return heavy_hitters_tables(summary)
    raise ValueError(f"not an analytics summary: kind {kind!r}")
