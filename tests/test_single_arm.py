"""A single-arm course (every participant treated): design, tables, models, power.

Its models have the arm's dMD slope only (``slope_<arm>``; ``slope_pooled`` is
the same model, the slope common to all arms being the one arm's), under every
inference option; max-T and power run on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _designs import drug_placebo_dict

from dtitool.design import design_from_dict
from dtitool.simulate import simulate_cohort
from dtitool.stats.analysis import fit_models
from dtitool.stats.power import power


@pytest.fixture(scope="module")
def design():
    d = drug_placebo_dict()
    d["name"] = "ect-course"
    d["trial"].update(allocation={"ect": 1}, control="ect", block_size=1)
    for spec in (*d["rois"].values(), *d["outcomes"].values()):
        spec["change_mean"] = {"ect": spec["change_mean"]["drug"]}
        spec["change_sd"] = {"ect": spec["change_sd"]["drug"]}
    d["correlations"]["roi_outcome"] = {"ect": d["correlations"]["roi_outcome"]["drug"]}
    return design_from_dict(d)


def test_a_single_arm_is_a_design(design):
    assert design.arms == ("ect",) and design.arm_sizes() == (60,)
    assert design.names.terms == ("slope_ect", "slope_pooled")
    assert design.names.key_terms == ("slope_ect",)
    assert design.names.interactions == ()
    c = simulate_cohort(design, rng=2)
    assert set(c.participants["group"]) == {"ect"}


@pytest.mark.parametrize("inference", ["ols", "hc3", "welch"])
def test_the_slope_equals_statsmodels(design, inference):
    c = simulate_cohort(design, rng=3)
    res = fit_models(c.participants, c.roi_md, design=design, inference=inference)
    wide = c.roi_md.pivot(index=["participant_id", "roi"], columns="session",
                          values="md").reset_index().merge(c.participants)
    for (roi, outcome), got in res.table.groupby(["roi", "outcome"], sort=False):
        f = wide[wide["roi"] == roi].copy()
        f["d_md"] = (f["week1"] - f["pre"]) / 1e-5
        f["y"] = f[f"{outcome}_week1"] - f[f"{outcome}_pre"]
        f["b"] = f[f"{outcome}_pre"]
        kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
        fit = smf.ols("y ~ d_md + b", data=f).fit(**kw)
        row = got.set_index("term")
        for term in ("slope_ect", "slope_pooled"):
            assert row.loc[term, "estimate"] == pytest.approx(fit.params["d_md"],
                                                              rel=1e-8)
            assert row.loc[term, "p"] == pytest.approx(fit.pvalues["d_md"], rel=1e-8)
            assert row.loc[term, "df"] == pytest.approx(len(f) - 3, rel=1e-12)


def test_maxt_and_power_run(design):
    c = simulate_cohort(design, rng=4)
    res = fit_models(c.participants, c.roi_md, design=design, inference="ols",
                     familywise="maxt", permutations=300, rng=1)
    t = res.table
    assert t["p_maxt"].notna().all() and (t["p_maxt"] >= 1 / 301).all()
    pw = power(design, replicates=512, rng=5, inference="welch")
    tab = pw.table.set_index(["roi", "outcome", "term"])
    np.testing.assert_array_equal(tab.xs("slope_ect", level="term")["power"],
                                  tab.xs("slope_pooled", level="term")["power"])
    assert pw.table["size_ok"].all()
    assert isinstance(pw.summary(), str) and "slope_ect" in pw.summary()
    assert pd.api.types.is_float_dtype(pw.table["power"])
