import matplotlib.pyplot as plt
import numpy as np
import pytest
from _analysis_tables import make_tables

from dtitool.design.layout import TrialNames
from dtitool.report.plots import (
    ARM_PALETTE,
    arm_colors,
    plot_forest,
    plot_md_sessions,
    plot_scatter_grid,
)
from dtitool.stats.analysis import fit_models
from dtitool.tables import compute_changes

NAMES = TrialNames(arms=("ketamine", "saline"), control="saline",
                   visits=("baseline", "24h"))


@pytest.fixture(scope="module")
def small():
    return make_tables(n_ketamine=12, n_saline=6, seed=4,
                       missing_24h=[(0, "vACC")])  # fmt: skip


@pytest.fixture(scope="module")
def results(small):
    return fit_models(*small, names=NAMES)


def test_scatter_grid_shape_and_lines(results):
    fig = plot_scatter_grid(results)
    axes = fig.axes
    assert len(axes) == 7 * 2
    ax = axes[0]
    assert "L_BA10" in ax.get_title()
    assert "MADRS" in ax.get_title()
    # one line per arm, with the model's simple slope
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2
             and ln.get_color() in ARM_PALETTE]  # fmt: skip
    assert len(lines) == 2
    colors = arm_colors(("ketamine", "saline"))  # the results' arms, in order
    for ln in lines:
        arm = next(g for g, c in colors.items() if c == ln.get_color())
        x, y = ln.get_xdata(), ln.get_ydata()
        slope = (y[1] - y[0]) / (x[1] - x[0])
        want = results.term("L_BA10", "madrs", f"slope_{arm}")["estimate"]
        assert slope == pytest.approx(want, rel=1e-9)
    # points = the model's subjects: vACC lost one
    n_pts = sum(len(c.get_offsets()) for c in axes[12].collections)
    assert n_pts == 17


def test_scatter_grid_subsets_into_given_figure(results):
    fig = plt.figure()
    out = plot_scatter_grid(results, rois=["vACC", "R_BA10"], outcomes="qids", fig=fig)
    assert out is fig
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match=r"roi 'L_insula' is not in the results"):
        plot_scatter_grid(results, rois=["L_insula"])


def test_scatter_grid_from_changes_table(small):
    n_before = len(plt.get_fignums())
    fig = plot_scatter_grid(compute_changes(*small, names=NAMES))
    assert len(fig.axes) == 14
    assert len(plt.get_fignums()) == n_before + 1
    with pytest.raises(TypeError, match=r"expected AnalysisResults"):
        plot_scatter_grid([1, 2])


def test_md_sessions(small):
    p, r = small
    fig, ax = plt.subplots()
    out = plot_md_sessions(r, p, names=NAMES, ax=ax)
    assert out is ax
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == ["L_BA10", "R_BA10"]
    # arm means (thick lines) are drawn in the arm colours, in 1e-3 mm^2/s
    means = [ln for ln in ax.get_lines() if ln.get_linewidth() == 2.5]
    assert len(means) == 7 * 2
    ket = r[(r["roi"] == "L_BA10") & (r["session"] == "baseline")]
    ket = ket[ket["participant_id"].isin(p.loc[p["group"] == "ketamine",
                                                "participant_id"])]  # fmt: skip
    assert means[0].get_ydata()[0] == pytest.approx(ket["md"].mean() / 1e-3)
    assert means[0].get_color() == ARM_PALETTE[0]  # the first arm's colour
    ax2 = plot_md_sessions(r, p, rois=["vACC"], names=NAMES)
    assert ax2.figure is not fig


def test_forest(results):
    ax = plot_forest(results)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 14
    assert labels[0].startswith("L_BA10 MADRS")
    assert "per 1e-5 mm^2/s" in ax.get_xlabel()
    ax2 = plot_forest(results.table, term="slope_pooled")
    assert "slope_pooled" in ax2.get_xlabel()
    with pytest.raises(ValueError, match=r"term 'slope' is not in the results"):
        plot_forest(results, term="slope")
    # error bars span the CIs
    seg = ax.collections[0].get_segments()[0]
    row = results.term("L_BA10", "madrs", "interaction")
    np.testing.assert_allclose(sorted(seg[:, 0]), [row["ci_low"], row["ci_high"]])


def test_plot_roi_slices_outlines_every_roi():
    from dtitool.report.plots import plot_roi_slices

    labels = np.zeros((12, 12, 6), dtype=int)
    labels[2:4, 2:4, 1] = 1
    labels[6:9, 6:9, 4] = 2
    labels[8:10, 2:4, 4] = 3
    md = np.full(labels.shape, 0.8e-3)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    fig = plot_roi_slices(md, labels, roi_names=["a", "b", "c"], affine=affine)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 2  # slices 1 and 4 cover all three labels
    assert [ax.get_title() for ax in axes] == ["axial slice 1 (z = 2 mm)",
                                               "axial slice 4 (z = 8 mm)"]
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"same shape|one shape"):
        plot_roi_slices(md[:, :, :3], labels)
    with pytest.raises(ValueError, match="no ROI voxels"):
        plot_roi_slices(md, np.zeros_like(labels))


def test_plot_power_curve_draws_each_test_with_its_band():
    from dtitool.design import load_preset
    from dtitool.report.plots import plot_power_curve
    from dtitool.stats.power import power_curve

    curve = power_curve(load_preset("ketamine-rct"), parameter="n",
                        values=[40, 200], replicates=128, rng=1)
    ax = plot_power_curve(curve, [("L_BA10", "madrs", "interaction")],
                          target_power=0.8)
    assert ax.get_xlabel().startswith("total sample size")
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("L_BA10")]
    t = curve.table
    sel = t[(t["roi"] == "L_BA10") & (t["outcome"] == "madrs")
            & (t["term"] == "interaction")]
    assert list(line.get_ydata()) == list(sel["power"])
    assert any(list(ln.get_ydata()) == [0.8, 0.8] for ln in ax.get_lines())


def _renamed(small):
    """The small tables as a trial of other names: arms high/placebo, visits
    pre/week1, outcome hamd (for madrs)."""
    p, r = (t.copy() for t in small)
    p["group"] = p["group"].map({"ketamine": "high", "saline": "placebo"})
    p = p.rename(columns=lambda c: c.replace("madrs", "hamd").replace(
        "baseline", "pre").replace("24h", "week1"))
    r["session"] = r["session"].map({"baseline": "pre", "24h": "week1"})
    names = TrialNames(arms=("high", "placebo"), control="placebo",
                       visits=("pre", "week1"))
    return p, r, names


def test_figures_take_names_from_the_results(small):
    p, r, names = _renamed(small)
    res = fit_models(p, r, names=names)
    fig = plot_scatter_grid(res)
    assert "HAM-D17" in fig.axes[0].get_title()  # the scale "hamd" abbreviates
    assert "(week1 - pre)" in fig.texts[0].get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [t.split()[0] for t in legend] == ["high", "placebo"]
    ax = plot_md_sessions(r, p, names=names)
    assert ax.get_title().startswith("MD at pre and week1")
    means = [ln for ln in ax.get_lines() if ln.get_linewidth() == 2.5]
    assert [ln.get_label() for ln in means[:2]] == ["high", "placebo"]
    assert means[0].get_color() == arm_colors(names.arms)["high"]
    ax = plot_forest(res, outcome_labels={"hamd": "HAM-D"})
    assert ax.get_yticklabels()[0].get_text().startswith("L_BA10 HAM-D ")
    for text in ([t.get_text() for t in ax.get_yticklabels()] + legend):
        assert not any(k in text for k in ("ketamine", "saline", "MADRS", "24 h"))
