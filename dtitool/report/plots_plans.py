"""Figure and report of analysis plans compared on the same simulated trials."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plans_report", "plot_power_size", "power_size_png", "save_power_size"]


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


def power_size_png(table: pd.DataFrame, **kwargs) -> bytes:
    """Return :func:`plot_power_size` as PNG bytes (for plans.png and the report)."""
    from dtitool.report.html import figure_png

    fig = plot_power_size(table, **kwargs)
    try:
        return figure_png(fig)
    finally:
        plt.close(fig)


def save_power_size(table: pd.DataFrame, path, **kwargs) -> None:
    """Write :func:`plot_power_size` to ``path`` (PNG)."""
    fig = plot_power_size(table, **kwargs)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


_THREE = "{:.3f}"


def plans_report(table: pd.DataFrame, paired: pd.DataFrame, plans, design, *,
                 alpha: float = 0.05, seed: int | None = None,
                 png: bytes | None = None) -> str:
    """Return a self-contained HTML page of a ``dtitool plans`` run.

    Parameters
    ----------
    table, paired : DataFrame
        :func:`dtitool.stats.plans_run.plans_power`'s tables.
    plans : sequence of Plan
        The plans of the run, in its order.
    design : StudyDesign
        The design simulated.
    alpha : float
        The level of every test.
    seed : int, optional
        The run's seed, for the footer.
    png : bytes, optional
        :func:`plot_power_size` as PNG (drawn here when not given).

    Returns
    -------
    str
        One HTML page: no external resource (the figure is embedded).
    """
    from dtitool.report.html import HTMLReport

    names = [p.name for p in plans]
    missing = sorted(set(names) - set(table["plan"]))
    if missing:
        raise ValueError(f"plans_report: plan {missing[0]!r} has no rows in the "
                         "table; pass the plans of the run that made it")
    fam = table[table["roi"] == "any"]
    R = int(table["replicates"].iloc[0])
    rep = HTMLReport(title=f"Analysis plans compared: {design.name}",
                     subtitle=f"{len(plans)} plans on the same {R} simulated "
                     f"trials and {R} trials of the null counterpart; n = "
                     f"{design.n}, alpha = {alpha:g}")
    rep.add_section("What is compared", text=(
        f"{design.description}\n\n" if design.description else "") + (
        "Every plan analyses the same simulated trials. Each test asks whether "
        "the imaging change goes with the clinical change differently by arm "
        "(an arm's slope minus the control arm's); what the slope is a slope of "
        "differs between plans and is stated in the estimand column, so that a "
        "log odds ratio is never read as a slope of points. A plan's family row "
        "(roi 'any') asks whether any of its tests of an outcome rejects after "
        "its multiplicity rule; its size is the family-wise error in the null "
        "counterpart (the design with every imaging-outcome link removed). "
        "Plans are ranked by that power among those whose size is not above "
        "the exact 99 % binomial band around alpha; a plan that gains power by "
        "exceeding alpha is flagged and not ranked (docs/model.md, Analysis "
        "plans side by side)."))
    by_name = {p.name: p for p in plans}
    rep.add_section("The plans and their estimands", table=pd.DataFrame({
        "plan": names,
        "model": [by_name[n].description or by_name[n].model for n in names],
        "inference": ["Wald z" if by_name[n].model == "responder"
                      else by_name[n].inference for n in names],
        "multiplicity": [by_name[n].multiplicity for n in names],
        "estimand": [by_name[n].estimand for n in names]}))
    ranked = fam.assign(_r=fam["rank"].astype("Float64").fillna(np.inf)).sort_values(
        ["outcome", "_r", "power"], ascending=[True, True, False], kind="stable")
    cols = ["outcome", "rank", "plan", "power", "power_ci_low", "power_ci_high",
            "size", "size_ok", "multiplicity", "critical_p", "failed", "flag"]
    shown = ranked[cols].assign(rank=ranked["rank"].map(
        lambda r: "" if pd.isna(r) else str(int(r))))
    rep.add_section("Plans ranked by power, per outcome")
    rep.add_table(shown, formats=dict.fromkeys(
        ("power", "power_ci_low", "power_ci_high", "size", "failed"), _THREE))
    above = fam[fam["flag"].str.startswith("size above")]
    below = fam[fam["flag"].str.startswith("size below")]
    if len(above):
        rep.add_note("Size above its band, power not comparable (not ranked): "
                     + "; ".join(f"{r.plan} ({r.outcome}: {r.size:.3f})"
                                 for r in above.itertuples()) + ".")
    if len(below):
        rep.add_note("Size below its band (conservative): "
                     + "; ".join(f"{r.plan} ({r.outcome}: {r.size:.3f})"
                                 for r in below.itertuples()) + ".")
    if png is None:
        png = power_size_png(table, alpha=alpha, title=f"{design.name}: {R} trials")
    rep.add_figure(png, caption="Power against size, one point per plan and "
                   "outcome (family rows, 95 % Wilson intervals both ways); the "
                   f"shaded band is the exact 99 % binomial band at {alpha:g}.")
    rep.add_section("Paired differences in power", text=(
        "Every two plans on the same trials: the difference in family power "
        "(and in size on the same null trials) with a 95 % interval from the "
        "paired differences of the rejection indicators (Morris, White and "
        "Crowther 2019)."))
    rep.add_table(paired[["outcome", "plan_a", "plan_b", "power_a", "power_b",
                          "power_difference", "power_difference_ci_low",
                          "power_difference_ci_high", "size_difference"]],
                  formats=dict.fromkeys(("power_a", "power_b"), _THREE),
                  float_format="{:+.3f}")
    tests = table[table["roi"] != "any"]
    rep.add_section("Every test", text=(
        "Per plan and test: power and size, the plan's true value (its "
        "estimate in one very large pooled trial), bias, RMSE and the coverage "
        "of the 95 % intervals against it, type S and exaggeration among "
        "significant trials, and the share of trials whose fit failed."))
    rep.add_table(tests[["plan", "roi", "outcome", "power", "size", "size_ok",
                         "true_value", "bias", "rmse", "coverage", "type_s",
                         "exaggeration", "failed", "flag"]],
                  formats=dict.fromkeys(("power", "size", "coverage", "failed"),
                                        _THREE))
    return rep.render(footer="Written by dtitool plans"
                      + ("" if seed is None else f", seed {seed}") + ".")
