"""Plots of analytics runs, drawn from the stored summary; matplotlib only if it is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lowcomm.cli.config import ConfigError

PLOTTED_ITEMS = 100  # the most frequent items shown by `plot_frequencies`


def require_matplotlib(path: str | None = None):
    """pyplot on the file-only Agg backend, or a one-line ConfigError before anything runs (also
    when the folder of `path` does not exist)."""
    if path is not None and not Path(path).expanduser().parent.is_dir():
        raise ConfigError(f"plot: the folder of {path} does not exist")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib, which is not installed (pip install "
                          "matplotlib); run without --plot for the tables") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frequencies(summary: dict[str, Any], path: str) -> None:
    """True and estimated frequencies of the most frequent items, with +-2 theoretical sd."""
    plt = require_matplotlib()
    truth = np.asarray(summary["true_frequencies"])
    estimate = np.asarray(summary["estimates"])
    order = np.lexsort((np.arange(truth.size), -truth))[:PLOTTED_ITEMS]
    sd = (summary["theory_mse"] or summary["mse"]) ** 0.5  # one band for all items
    o = summary["oracle"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ranks = np.arange(1, order.size + 1)
    band = "theory" if summary["theory_mse"] else "measured MSE"
    ax.fill_between(ranks, truth[order] - 2 * sd, truth[order] + 2 * sd, alpha=0.2,
                    label=f"true ± 2 sd ({band}, mean over items)")
    ax.plot(ranks, truth[order], color="black", label="true frequency")
    ax.plot(ranks, estimate[order], "o", markersize=3,
            label=f"{o['name']} estimate ({o.get('estimator', 'unbiased')})")
    ax.set_xlabel("item rank by true frequency")
    ax.set_ylabel("normalised frequency")
    ax.set_title(f"{o['name']}, ε = {o['epsilon']:g}, k = {o['k']}, n = {summary['users']:,} "
                 f"({summary['data']['name']}); MSE {summary['mse']:.3g}")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_roc(summary: dict[str, Any], path: str) -> None:
    """Exact and private ROC and PR curves side by side."""
    plt = require_matplotlib()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9, 4))
    for name, style in (("exact", "-"), ("private", "--")):
        cv = summary["curves"][name]
        roc_ax.plot(cv["fpr"], cv["tpr"], style, label=name)
        pr_ax.plot(cv["recall"], cv["precision"], style, label=name)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title=f"ROC: AUC {summary['exact_roc_auc']:.4f} vs {summary['roc_auc']:.4f}")
    pr_ax.set(xlabel="recall", ylabel="precision",
              title=f"PR: AUC {summary['exact_pr_auc']:.4f} vs {summary['pr_auc']:.4f}")
    for ax in (roc_ax, pr_ax):
        ax.legend()
    fig.suptitle(f"{summary['mode']}, ε = {summary['epsilon']:g}, Q = {summary['bins']}, "
                 f"{summary['clients']} clients")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig, path: str) -> None:
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot write plot {path}: {err}") from None
