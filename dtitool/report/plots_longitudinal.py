"""Figures of longitudinal designs: telling two scenarios apart over the visits."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_discrimination", "plot_mixed_curve", "save_discrimination",
           "save_mixed_curve"]


def plot_discrimination(table: pd.DataFrame, *, target_power: float = 0.8,
                        title: str = "", top: int = 3):
    """Power to tell two scenarios apart against n, one panel per ROI and measure.

    Each panel shows the ``top`` contrasts with the highest power at the largest
    n (:func:`dtitool.stats.discriminate.discriminate`), with their 95 % Wilson
    intervals and the target power as a line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    groups = list(table.groupby(["roi", "measure", "arm"], sort=False))
    if not groups:
        raise ValueError("the table has no rows to plot")
    cols = min(2, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows),
                             squeeze=False, sharey=True)
    arms = table["arm"].unique()
    for ax, ((roi, measure, arm), g) in zip(axes.flat, groups, strict=False):
        last = g[g["n"] == g["n"].max()].sort_values("power", ascending=False)
        for contrast in last["contrast"].head(top):
            c = g[g["contrast"] == contrast].sort_values("n")
            err = np.vstack([c["power"] - c["power_ci_low"],
                             c["power_ci_high"] - c["power"]])
            ax.errorbar(c["n"], c["power"], yerr=np.clip(err, 0, None), marker="o",
                        capsize=2, label=contrast.replace("-", " vs "))
        ax.axhline(target_power, color="0.5", lw=0.8, ls="--")
        name = "MD" if measure == "md" else measure
        ax.set_title(f"{roi} {name}" + (f" ({arm})" if len(arms) > 1 else ""),
                     fontsize=10)
        ax.set_xlabel("total n")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel("power to tell apart")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def save_discrimination(table: pd.DataFrame, path, **kwargs) -> None:
    """Write :func:`plot_discrimination` to ``path`` (PNG, fixed metadata)."""
    fig = plot_discrimination(table, **kwargs)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_mixed_curve(curve: pd.DataFrame, *, terms=None, target_power=None):
    """Power of the mixed models' tests along a curve (n, visits or slope_sd).

    ``curve``: the ``power_curve.tsv`` of ``dtitool power --model mixed``
    (``parameter``, ``value`` and the power columns). One line per model row
    and term; ``terms`` (default every term with an arm and time, the
    treatment effect on the course) selects which.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not len(curve):
        raise ValueError("the curve has no rows to plot")
    param = str(curve["parameter"].iloc[0])
    if terms is None:
        terms = [t for t in pd.unique(curve["term"]) if ":" in str(t)]
    sel = curve[curve["term"].isin(terms)]
    values = list(pd.unique(curve["value"]))
    numeric = param != "visits"
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for (roi, measure, outcome, term), g in sel.groupby(
            ["roi", "measure", "outcome", "term"], sort=False, dropna=False):
        label = (str(outcome) if isinstance(outcome, str) and outcome else
                 f"{roi} {'MD' if measure == 'md' else measure}") + f": {term}"
        x = (g["value"].astype(float) if numeric
             else [values.index(v) for v in g["value"]])
        err = np.vstack([g["power"] - g["power_ci_low"],
                         g["power_ci_high"] - g["power"]])
        ax.errorbar(x, g["power"], yerr=np.clip(err, 0, None), marker="o",
                    capsize=2, label=label)
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v).replace("+", "\n") for v in values],
                      fontsize=7)
    if target_power:
        ax.axhline(target_power, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel({"n": "total n", "visits": "visits scanned",
                   "slope_sd": "random-slope SD (x the design's)"}.get(param, param))
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save_mixed_curve(curve: pd.DataFrame, path, **kwargs) -> None:
    """Write :func:`plot_mixed_curve` to ``path`` (PNG)."""
    fig = plot_mixed_curve(curve, **kwargs)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
