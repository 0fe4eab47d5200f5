"""Tables of data-centre training records (`lowcomm train`): the summary and the steps.

They read finished (or partial) records; they never run anything.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from lowcomm.report.tables import human_bytes, human_count, human_seconds, transport_row


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def training_summary_table(summary: dict[str, Any]) -> Table:
    """Loss, measured peer bytes, counted FLOPs and modeled time under every scenario."""
    table = Table(title="lowcomm train", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("how it was obtained", style="dim")
    peer, counted = summary["measured"]["peer"], summary["counted"]
    workers = summary["workers"]
    rows = [
        ("validation loss (final)", _loss(summary["final_val_loss"]),
         f"{'worker 0' if 'membership' not in summary else 'the first live worker'}'s model, "
         f"{summary['dataset']['eval_windows']} held-out windows, nats per "
         "character"),
        ("validation loss (initial)", _loss(summary["initial_val_loss"]), "before training"),
        ("replicas identical", "yes" if summary["replicas_identical"] else
         f"no (spread {summary.get('replica_spread', float('nan')):.3g})",
         "SHA-256 of every live worker's served parameters at the end; spread: max L2 "
         "distance to the first live worker's"),
        ("steps", f"{summary['steps']:,}", f"inner steps on each of {workers} workers"
         if "membership" not in summary else
         f"global inner steps; {workers} workers at first, membership "
         f"{summary['membership']!r}, live at the end: {summary['live_workers_at_end']}"),
        ("model parameters", f"{summary['model']['num_params']:,}", summary["model"]["key"]),
        ("bytes sent", human_bytes(peer["total_nbytes"]),
         f"measured: {peer['total_nbytes']:,} serialized bytes, all workers"),
        ("bytes sent per worker", human_bytes(max(peer["sent_nbytes"].values(), default=0)),
         "measured: the busiest worker (sent = received for a ring)"),
        ("peak bytes per sync", human_bytes(peer["peak_sync_nbytes"]),
         "measured: most one worker sent in one collective"),
        ("collectives", ", ".join(f"{n:,} {k}" for k, n in peer["collectives"].items()) or "0",
         f"latency hops per worker: {max(peer['hops'].values(), default=0):,}"),
        ("FLOPs", human_count(counted["flops"]), f"counted: {counted['convention']}"),
    ]
    headline = summary["modeled"]["headline"]
    for name, tl in summary["modeled"]["scenarios"].items():
        net = tl["models"]["network"]
        mark = " (headline)" if name == headline else ""
        rows.append((f"time, {name}{mark}", human_seconds(tl["modeled_seconds"]),
                     f"modeled: {net['bandwidth_bps'] / 1e9:g} Gb/s, "
                     f"{1e3 * net['latency_seconds']:g} ms/hop, "
                     f"{tl['models']['device']['flops_per_second'] / 1e12:g} TFLOP/s; "
                     f"compute utilization {100 * tl['utilization']:.1f} %"))
    runtime = summary.get("runtime")
    if runtime is None:
        rows.append(("simulator wall-clock",
                     human_seconds(summary["measured"]["simulator_seconds"]),
                     "measured: this process (simulator speed, not a cost of the protocol)"))
    else:
        rows.append(transport_row(runtime))
        rows.append(("distributed wall-clock", human_seconds(summary["measured"]["wall_seconds"]),
                     f"measured: rank 0 of {runtime['world_size']} processes over gloo, "
                     f"{_per_step(runtime)} (a measurement of this machine, not a cost "
                     "model)"))
    for row in rows:
        table.add_row(*row)
    return table


def _per_step(runtime: dict[str, Any]) -> str:
    """Rank 0's measured time per step (none when a resumed run had no step left to run)."""
    if runtime.get("rank0_step_seconds_mean") is None:
        return "no step run in this launch"
    return (f"{1e3 * runtime['rank0_step_seconds_mean']:.1f} ms per step, of which "
            f"{1e3 * runtime['rank0_comm_seconds_mean']:.1f} ms in collectives")


def steps_table(rounds: list[dict[str, Any]], *, limit: int = 30) -> Table:
    """Per-evaluation metrics of a training record; long runs show their first and last."""
    table = Table(title="steps", header_style="bold")
    for column in ("step", "train loss", "val loss", "replicas", "bytes sent", "FLOPs (counted)"):
        table.add_column(column, justify="right")
    shown = rounds if len(rounds) <= limit else rounds[: limit // 2] + rounds[-limit // 2 :]
    for i, r in enumerate(shown):
        if len(rounds) > limit and i == limit // 2:
            table.add_row("...", "", "", "", "", "")
        table.add_row(str(r["step"]), f"{r['train_loss']:.4f}", _loss(r.get("val_loss")),
                      "identical" if r["replicas_identical"] else
                      f"spread {r['replica_spread']:.3g}",
                      human_bytes(r["bytes_sent"]), human_count(r["flops"]))
    return table
