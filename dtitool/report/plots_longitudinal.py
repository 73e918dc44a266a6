"""Figures of longitudinal designs: telling two scenarios apart over the visits."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["discrimination_report", "plot_discrimination", "plot_mixed_curve",
           "save_discrimination",
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


def discrimination_report(table: pd.DataFrame, best: pd.DataFrame, a, b, *,
                          target_power: float = 0.8, seed: int | None = None
                          ) -> str:
    """Return a self-contained HTML page of a ``dtitool discriminate`` run.

    ``table`` and ``best``: :func:`dtitool.stats.discriminate.discriminate` and
    :func:`~dtitool.stats.discriminate.best_designs`; ``a``, ``b``: the two
    scenario designs.
    """
    from dtitool.report.html import HTMLReport, figure_png

    rep = HTMLReport(title=f"Telling {a.name} from {b.name}",
                     subtitle=f"{table['replicates'].iloc[0]} simulated trials of "
                     f"each scenario per n; visits {', '.join(a.visit_names)}")
    rep.add_section("What is compared", text=(
        f"{a.name}: {a.description}\n\n{b.name}: {b.description}\n\n"
        "For every pair of visits, the contrast is the treated arm's mean change "
        "between them minus the control arm's. A schedule that scans at both "
        "visits tells the scenarios apart when trials simulated under one reject "
        "the other's predicted contrast (Welch t-tests, two-sided, both ways); "
        "the power to tell them apart is the smaller of the two rejection rates. "
        "Each scenario's rejection of its own value is the test's real level "
        "(size columns)."))
    shown = best.assign(
        measure=best["measure"].replace({"md": "MD"}),
        reached=best["reached"].map({True: "yes", False: "no"}))
    rep.add_section(f"The smallest design reaching power {target_power:g}",
                    table=shown, note=None)
    fig = plot_discrimination(table, target_power=target_power)
    rep.add_figure(figure_png(fig), caption="Power to tell the scenarios apart "
                   "against the total n, for the three best contrasts of each ROI "
                   "and measure (95 % Wilson intervals).")
    plt.close(fig)
    top = table[table["n"] == table["n"].max()].sort_values("power",
                                                            ascending=False)
    rep.add_section(f"Every contrast at n = {int(table['n'].max())}", table=top[[
        "roi", "measure", "contrast", "true_a", "true_b", "power_a_rejects_b",
        "power_b_rejects_a", "power", "size_a", "size_b"]])
    rep.add_note("true_a and true_b are on each measure's model scale (MD per "
                 "1e-5 mm^2/s, volume per 10 mm^3). A contrast whose two true "
                 "values have opposite signs separates the scenarios whatever "
                 "their sizes; one that differs only in size depends on numbers "
                 "that are estimates (docs/model.md, Longitudinal designs).")
    return rep.render(footer="Written by dtitool discriminate"
                      + ("" if seed is None else f", seed {seed}") + ".")
