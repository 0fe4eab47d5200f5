"""Rich tables of run records: the final summary of a run, the list of runs, one run's rounds.

These functions read finished (or partial) records; they never run anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Table


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{int(n)} B"


def human_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:g}"


def human_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:,.2f} h"
    if s >= 60:
        return f"{s / 60:,.2f} min"
    return f"{s:,.2f} s"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run table: accuracy, communication, compute and modeled costs."""
    table = Table(title="lowcomm run", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("how it was obtained", style="dim")
    measured, counted, modeled = summary["measured"], summary["counted"], summary["modeled"]
    rows = [
        ("test accuracy (final)", _accuracy(summary["final_test_accuracy"]),
         f"global test set, {summary['evaluated_samples']} of "
         f"{summary['dataset']['num_test_global']} samples"),
        ("test accuracy (best)", _accuracy(summary["best_test_accuracy"]), "over evaluated rounds"),
        ("rounds", str(summary["rounds"]),
         f"{summary['clients_per_round']} of {summary['dataset']['num_clients']} clients each"),
        ("model parameters", f"{summary['model']['num_params']:,}", summary["model"]["key"]),
        ("bytes up", human_bytes(measured["bytes_up"]),
         f"measured: {measured['bytes_up']:,} serialized bytes"),
        ("bytes down", human_bytes(measured["bytes_down"]),
         f"measured: {measured['bytes_down']:,} serialized bytes"),
        ("client FLOPs", human_count(counted["flops"]), f"counted: {counted['convention']}"),
        ("time", human_seconds(modeled["modeled_seconds"]),
         f"modeled: {_network_note(modeled['models']['network'])}"),
        ("client energy", f"{modeled['modeled_joules']:,.1f} J",
         f"modeled: {_device_note(modeled['models']['device'])}"),
        ("money", f"$ {modeled['modeled_usd']:,.4f}",
         f"modeled: $ {modeled['models']['money']['usd_per_gb_egress']}/GB egress, "
         f"$ {modeled['models']['money']['usd_per_device_hour']}/device-hour"),
        ("carbon", f"{modeled['modeled_grams_co2']:,.3f} g CO2",
         f"modeled: {modeled['models']['carbon']['grams_co2_per_kwh']} g/kWh, "
         f"PUE {modeled['models']['carbon']['pue']}"),
    ]
    runtime = summary.get("runtime")
    if runtime is None:
        rows.append(("simulator wall-clock", human_seconds(measured["simulator_seconds"]),
                     f"measured: this process, {summary['execution']} client execution "
                     "(simulator speed, not a cost of the protocol)"))
    else:
        rows.append(transport_row(runtime))
        mean = runtime["rank0_round_seconds_mean"]
        per_round = "no round" if mean is None else f"{1e3 * mean:.1f} ms per round"
        rows.append(("distributed wall-clock", human_seconds(measured["wall_seconds"]),
                     f"measured: the server, rank 0 of {runtime['world_size']} processes over "
                     f"gloo, {per_round} (a measurement of this machine, not a cost model)"))
    drops = summary.get("dropouts") or {}
    if drops.get("total"):
        by_reason = ", ".join(f"{n} {reason}" for reason, n in drops["by_reason"].items())
        skipped = drops["rounds_without_update"]
        rows.insert(3, ("dropouts", str(drops["total"]),
                        f"ledger DropEvents: {by_reason}"
                        + (f"; no server update in rounds {skipped} (below min_cohort)"
                           if skipped else "")))
    for row in rows:
        table.add_row(*row)
    return table


def transport_row(runtime: dict[str, Any]) -> tuple[str, str, str]:
    """The row of a distributed run's summary that sets its transports' counters beside the
    ledger."""
    wire = runtime["transport"]
    return ("bytes at the transport", human_bytes(wire["payload_sent_nbytes"]),
            f"measured by gloo transport of {runtime['world_size']} ranks: "
            f"{wire['payload_sent_nbytes']:,} payload bytes, "
            f"{'equal to' if wire['equals_ledger'] else 'DIFFERENT FROM'} the ledger"
            + (f" after its {restored:,} events restored from the checkpoint"
               if (restored := runtime.get("resumed_ledger_events")) else "") + "; "
            f"+ {wire['control_nbytes']:,} control, {wire['framing_nbytes']:,} "
            "framing (not in the ledger)")


def _network_note(network: dict[str, Any]) -> str:
    if network["name"] == "constant":
        return (f"constant network, {network['up_bps'] / 1e6:g} Mb/s up, "
                f"{network['down_bps'] / 1e6:g} Mb/s down, "
                f"{1e3 * network['latency_seconds']:g} ms latency; slowest client per round")
    return f"{network['name']} network; slowest client per round"


def _device_note(device: dict[str, Any]) -> str:
    return (f"{device['flops_per_second'] / 1e9:g} GFLOP/s, "
            f"{device['joules_per_flop'] * 1e12:g} pJ/FLOP, radio "
            f"{device['radio_joules_per_bit_up'] * 1e9:g}/"
            f"{device['radio_joules_per_bit_down'] * 1e9:g} nJ/bit up/down, "
            f"idle {device['idle_watts']:g} W")


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title="lowcomm runs", header_style="bold")
    for column in ("id", "name", "status", "started", "dataset", "algorithm", "rounds",
                   "accuracy", "bytes up+down"):
        table.add_column(column)
    for run in runs:
        config, summary = run["config"], run["summary"] or {}
        started = dt.datetime.fromtimestamp(run["created_at"]).strftime("%Y-%m-%d %H:%M")
        total = summary.get("measured", {}).get("bytes_total")
        # analytics records (`lowcomm analytics ...`) name their data and mechanism otherwise
        dataset = config.get("dataset", config.get("data", ""))
        method = config.get("algorithm", config.get("oracle", config.get("mode", "")))
        if "command" in config:
            method = f"{config['command'].split()[-1]}: {method}"
        table.add_row(str(run["id"]), run["name"] or "", run["status"], started,
                      dataset, method,
                      str(summary.get("rounds", "")),
                      _accuracy(summary.get("final_test_accuracy")),
                      "" if total is None else human_bytes(total))
    return table


def rounds_table(rounds: list[dict[str, Any]], *, limit: int = 30) -> Table:
    """Per-round metrics; long runs show their first and last rounds."""
    table = Table(title="rounds", header_style="bold")
    for column in ("round", "clients", "train loss", "test acc", "bytes up", "bytes down",
                   "FLOPs (counted)"):
        table.add_column(column, justify="right")
    shown = rounds if len(rounds) <= limit else rounds[: limit // 2] + rounds[-limit // 2 :]
    for i, r in enumerate(shown):
        if len(rounds) > limit and i == limit // 2:
            table.add_row("...", "", "", "", "", "", "")
        table.add_row(str(r["round"]), str(r["clients"]), f"{r['train_loss']:.4f}",
                      _accuracy(r.get("test_accuracy")), human_bytes(r["bytes_up"]),
                      human_bytes(r["bytes_down"]), human_count(r["flops"]))
    return table
