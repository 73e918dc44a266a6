"""The figure and the page of ``dtitool power --model imaging``.

:func:`plot_imaging_power` draws each imaging row's power against the visits,
one panel per modality (MD, MRS, ...); :func:`imaging_report` puts it with the
modalities' table and every test's row into one self-contained HTML page
(``imaging.html``): power per modality and for all modalities together, in one
place.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["imaging_report", "plot_imaging_power"]


def _modality(design, roi: str, measure: str) -> str:
    if measure == "md":
        return "MD"
    spec = next(m for m in design.measures if m.roi == roi and m.name == measure)
    return "MRS" if spec.voxel else measure


def plot_imaging_power(table: pd.DataFrame, design):
    """Return a figure: power of each row's tests against the visit, per modality.

    Two arms or more: the arm comparisons (``<arm>:<visit>``); one arm: the
    changes (``<visit>``). The noncentral t's power is drawn dashed.
    """
    arms = len(design.arms) > 1
    t = table[table["term"].str.contains(":") == arms].copy()
    t["modality"] = [_modality(design, r, m) for r, m in zip(t["roi"], t["measure"],
                                                             strict=True)]
    t["visit"] = t["term"].str.split(":").str[-1]
    t["arm"] = t["term"].str.rsplit(":", n=1).str[0] if arms else ""
    mods = list(dict.fromkeys(t["modality"]))
    fig, axes = plt.subplots(1, len(mods), figsize=(4.2 * len(mods), 3.6),
                             squeeze=False, sharey=True)
    visits = list(design.visit_names[1:])
    for ax, mod in zip(axes[0], mods, strict=True):
        part = t[t["modality"] == mod]
        for (roi, measure, arm), rows in part.groupby(["roi", "measure", "arm"],
                                                      sort=False):
            rows = rows.set_index("visit").reindex(visits)
            label = f"{roi} {measure}" if mod != "MD" else roi
            if arm:
                label += f" ({arm})"
            line, = ax.plot(visits, rows["power"], marker="o", label=label)
            ax.plot(visits, rows["analytic_power"], ls="--", lw=0.8,
                    color=line.get_color())
        ax.axhline(0.05, color="k", lw=0.6, ls=":")
        ax.set_title(mod)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("visit")
        ax.legend(fontsize=7, frameon=False, loc="best")
    axes[0][0].set_ylabel("power" + (" (arm minus control)" if arms else
                                     " (change from baseline)"))
    fig.tight_layout()
    return fig


def imaging_report(table: pd.DataFrame, modalities: pd.DataFrame, design, *,
                   seed: int | None = None) -> str:
    """Return a self-contained HTML page of an imaging change power run."""
    from dtitool.report.html import HTMLReport, figure_png

    R = int(table["replicates"].iloc[0])
    rep = HTMLReport(title=f"Imaging change power of {design.name}",
                     subtitle=f"n = {design.n}, {R} simulated trials and {R} of "
                     f"the null counterpart; visits {', '.join(design.visit_names)}")
    rep.add_section("What is tested", text=(
        f"{design.description}\n\nFor every ROI, MRS voxel and measure and every "
        "follow-up visit: the control arm's change from baseline (one-sample t) "
        "and each other arm's change minus it (Welch t). The size is the "
        "rejection rate in the null counterpart (every change mean 0, every SD "
        "kept); the analytic power is the noncentral t's from the design alone. "
        "MRS spectra above the fit-quality limits are missing data, as in "
        "dtitool analyze."))
    rep.add_section("Per modality, and together", table=modalities[[
        "modality", "tests", "method", "power", "power_ci_low", "power_ci_high",
        "size"]])
    rep.add_note("Each modality's tests are one family (Holm): the arm "
                 "comparisons at every follow-up visit (one arm: the changes). "
                 "all: every modality detects in the same trial; any: Holm over "
                 "every test.")
    fig = plot_imaging_power(table, design)
    rep.add_figure(figure_png(fig), caption="Power per row and visit (dashed: "
                   "the noncentral t); the dotted line is alpha.")
    plt.close(fig)
    rep.add_section("Every test", table=table[[
        "roi", "measure", "term", "power", "analytic_power", "size", "size_ok",
        "true_value", "bias", "mean_n"]])
    return rep.render(footer="Written by dtitool power --model imaging"
                      + ("" if seed is None else f", seed {seed}") + ".")
