"""Power of the mixed models of a longitudinal design (dtitool.stats.mixed_power)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.mixed_power import (
    _fit_chunk,
    design_variant,
    mixed_layout,
    mixed_power,
    model_rows,
    null_course_design,
    true_values,
)

ECT = load_preset("ect-course")


def _long(design, arrays, r, row, layout):
    from dtitool.stats.mixed_power import _values

    y = _values(arrays, row)[r]
    time = layout.Z[:, 1]
    rows = []
    for i in range(design.n):
        for v in range(len(design.visits)):
            if np.isfinite(y[i, v]):
                rows.append({"y": y[i, v], "pid": i, "time": time[v],
                             "arm": design.arms[arrays.arm[r, i]],
                             "age": (arrays.age[r, i] - design.covariates.age_mean)
                             / 10, "female": float(arrays.female[r, i])})
    return pd.DataFrame(rows)


@pytest.mark.slow  # over 4 s: the default suite stays under 5 minutes
def test_engine_equals_statsmodels_on_simulated_replicates():
    """The batched fits of power runs equal statsmodels MixedLM (REML)."""
    import statsmodels.formula.api as smf

    a = simulate_arrays(ECT, rng=11, stop=4)
    layout = mixed_layout(ECT)
    rows = model_rows(ECT)[:2]  # hippocampus and amygdala MD
    got = _fit_chunk(ECT, layout, rows, a, "satterthwaite", "common", "slope")
    checked = 0
    for k, row in enumerate(rows):
        for r in range(4):
            df = _long(ECT, a, r, row, layout)
            m = smf.mixedlm("y ~ C(arm, Treatment('controls')) * time + age + "
                            "female", df, groups="pid", re_formula="~time")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = m.fit(reml=True, method=["lbfgs"])
            ll = got["reml_loglik"][k, r]
            if not f.converged or got["singular"][k, r] or abs(f.llf - ll) > 1e-4:
                # statsmodels stopped short (the volume rows' scale): the batched
                # fit must be the better optimum
                assert ll >= f.llf - 1e-6
                continue
            fe = f.fe_params
            names = {"time": "time", "ect": "C(arm, Treatment('controls'))[T.ect]",
                     "ect:dose": "C(arm, Treatment('controls'))[T.ect]:time"}
            for j, term in enumerate(layout.terms):
                want = fe[names[term.replace("dose", "time") if term != "ect:dose"
                             else term]]
                assert got["estimate"][k, r, j] == pytest.approx(want, rel=1e-4,
                                                                 abs=1e-6)
            checked += 1
    assert checked >= 2


def test_true_values_are_the_course_parameters():
    layout = mixed_layout(ECT)
    rows = model_rows(ECT)
    t = dict(zip(layout.terms, true_values(ECT, layout, rows[0]), strict=True))
    assert t["ect:dose"] == pytest.approx(-0.11)  # -1.1e-6 per session / 1e-5
    assert t["dose"] == 0 and t["ect"] == 0
    null = null_course_design(ECT)
    assert np.all(true_values(null, layout, rows[2]) == 0)


def test_power_table_reproducible_and_sized():
    t1 = mixed_power(ECT, replicates=120, rng=3)
    t2 = mixed_power(ECT, replicates=120, rng=3)
    pd.testing.assert_frame_equal(t1, t2)
    hv = t1[(t1.roi == "hippocampus") & (t1.measure == "volume")].set_index("term")
    assert hv.loc["ect:dose", "power"] > 0.9  # GEMRIC-sized gain, n = 80
    assert hv.loc["ect:dose", "true_value"] == pytest.approx(0.98)
    assert t1["nonconverged"].max() < 0.05
    # a non-randomised group's baseline difference has no null, hence no size
    madrs = t1[t1.outcome == "madrs"].set_index("term")
    assert np.isnan(madrs.loc["ect", "size"])
    assert t1["size"].notna().sum() == len(t1) - 1


def test_design_variants():
    d = design_variant(ECT, visits=["baseline", "session1", "end"], slope_sd=2.0,
                       n=40)
    assert d.visit_names == ("baseline", "session1", "end") and d.n == 40
    assert d.courses["hippocampus", "md"][0].sd["ect"] == pytest.approx(1.6e-6)
    with pytest.raises(ValueError, match="must keep visit 'end'"):
        design_variant(ECT, visits=["baseline", "session1"])


def test_power_cli_mixed_default_and_refusals(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["power", "--preset", "ect-course", "--replicates", "60", "--seed",
                 "1", "--out", str(out), "--curve", "visits=baseline+session6+end,"
                 "baseline+session1+session6+end"]) == 0
    text = capsys.readouterr().out
    assert "mixed-model power of ect-course" in text
    t = pd.read_csv(out / "power.tsv", sep="\t")
    assert {"nonconverged", "singular", "size_z", "bias"} <= set(t.columns)
    c = pd.read_csv(out / "power_curve.tsv", sep="\t")
    assert list(pd.unique(c["value"])) == ["baseline+session6+end",
                                           "baseline+session1+session6+end"]
    for bad, word in ((["--inference", "ols"], "--inference"),
                      (["--grid", "n=40:80:20"], "--grid"),
                      (["--curve", "ratio=1,2"], "--curve"),
                      (["--curve", "visits=baseline+end"], "at least three visits")):
        assert main(["power", "--preset", "ect-course", "--replicates", "10",
                     "--out", str(tmp_path / "x"), *bad]) == 2
        assert word in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _model_data(design, arrays, r, row, layout):
    """Replicate ``r`` of ``row`` as the model data ``analyze`` builds."""
    from dtitool.design import TrialNames
    from dtitool.stats.mixed_data import ModelData
    from dtitool.stats.mixed_power import _values

    y = _values(arrays, row)[r]
    recs = [{"participant_id": f"p{i:03d}", "group": design.arms[arrays.arm[r, i]],
             "visit": v, "dose": layout.Z[t, 1], "value": y[i, t],
             "age": (arrays.age[r, i] - design.covariates.age_mean) / 10,
             "female": float(arrays.female[r, i])}
            for i in range(design.n) for t, v in enumerate(design.visit_names)
            if np.isfinite(y[i, t])]
    group = f"C(group, Treatment({design.control!r}))"
    other = next(a for a in design.arms if a != design.control)
    data = ModelData(roi=row["roi"], measure=row["measure"], outcome=row["outcome"],
                     frame=pd.DataFrame(recs),
                     formula=f"value ~ {group} * dose + age + female",
                     re_formula="~dose", unit="", time="dose",
                     terms={"dose": "dose", other: f"{group}[T.{other}]",
                            f"{other}:dose": f"{group}[T.{other}]:dose"})
    return data, TrialNames(design.arms, design.control, design.visit_names)


@pytest.mark.parametrize("random", ["select", pytest.param("slope",
                                                             marks=pytest.mark.slow)])
def test_per_arm_power_fits_are_analyzes_fits(random):
    """The power run's per-arm fits (batched engine, each arm masked in turn,
    Welch-combined) give what ``analyze`` gives on the same trial (statsmodels
    per arm): the same estimates, df, p and choice of random slope."""
    from dtitool.stats.mixed import _fit_model

    a = simulate_arrays(ECT, rng=5, stop=3)
    layout = mixed_layout(ECT)
    rows = [model_rows(ECT)[0], model_rows(ECT)[-1]]  # hippocampal MD, MADRS
    got = _fit_chunk(ECT, layout, rows, a, "satterthwaite", "arm", random)
    kept = []
    for k, row in enumerate(rows):
        for r in range(3):
            data, names = _model_data(ECT, a, r, row, layout)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want, _ = _fit_model(data, names, "satterthwaite", 0.05, "arm",
                                     random)
            for j, w in enumerate(want):
                assert w[3] == layout.terms[j]
                se = w[5]
                assert got["estimate"][k, r, j] == pytest.approx(w[4], abs=1e-5 * se)
                assert got["p"][k, r, j] == pytest.approx(w[8], rel=1e-4, abs=1e-9)
            slopes = want[0][15].count(" + ")
            assert got["slope"][k, r] == slopes / 2
            kept.append(slopes)
    if random == "select":  # both choices are met
        assert min(kept) < 2 and max(kept) > 0
