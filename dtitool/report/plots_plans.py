"""Figures of analysis plans compared on the same simulated trials."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_power_size", "save_power_size"]


def plot_power_size(table: pd.DataFrame, *, alpha: float = 0.05, title: str = ""):
    """Power against size, one point per plan, a panel per outcome.

    The points are the plans' family rows of
    :func:`dtitool.stats.plans_run.plans_power` (any of a plan's tests of the
    outcome rejects), with their 95 % Wilson intervals both ways; the shaded
    band is the exact 99 % binomial band of a test at ``alpha``. A plan right
    of the band gains its power by exceeding alpha.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from dtitool.stats.binomial import size_band

    fam = table[table["roi"] == "any"]
    if fam.empty:
        raise ValueError("the table has no family ('any') rows to plot")
    outcomes = list(dict.fromkeys(fam["outcome"]))
    R = int(fam["replicates"].iloc[0])
    lo, hi = (np.asarray(size_band(R, alpha, 1), dtype=float) / R)
    fig, axes = plt.subplots(1, len(outcomes), figsize=(5.4 * len(outcomes), 4.2),
                             squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plans = list(dict.fromkeys(fam["plan"]))
    for ax, outcome in zip(axes.flat, outcomes, strict=True):
        g = fam[fam["outcome"] == outcome]
        ax.axvspan(lo, hi, color="0.9", zorder=0, label=f"size band at {alpha:g}")
        ax.axvline(alpha, color="0.6", lw=0.8, zorder=1)
        for r in g.itertuples():
            c = colours[plans.index(r.plan) % len(colours)]
            ax.errorbar(r.size, r.power,
                        xerr=[[r.size - r.size_ci_low], [r.size_ci_high - r.size]],
                        yerr=[[r.power - r.power_ci_low], [r.power_ci_high - r.power]],
                        fmt="o", color=c, ms=6, capsize=2, label=r.plan)
        ax.set_xlim(0, max(0.12, 1.1 * float(g["size_ci_high"].max())))
        ax.set_xlabel("size (rejection rate in the null counterpart)")
        ax.set_title(outcome)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("power (any of the plan's tests)")
    axes.flat[-1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_power_size(table: pd.DataFrame, path, **kwargs) -> None:
    """Write :func:`plot_power_size` to ``path`` (PNG)."""
    fig = plot_power_size(table, **kwargs)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
