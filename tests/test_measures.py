"""Measures of an ROI besides MD: the design, the simulator and the tables."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from _adversarial_world import quiet_main
from _designs import drug_placebo_dict, drug_placebo_measures_dict

from dtitool.design import design_from_dict, design_to_toml
from dtitool.simulate import simulate_arrays, simulate_cohort


@pytest.fixture(scope="module")
def design():
    return design_from_dict(drug_placebo_measures_dict())


def test_design_reads_writes_and_names_its_measures(design):
    assert design.measure_names == ("md", "fa", "volume")
    fa, vol = design.measures
    assert (fa.roi, fa.unit, fa.scale) == ("thalamus", "", 0.01)
    assert (vol.roi, vol.unit, vol.scale) == ("putamen", "mm^3", 10.0)
    assert design_from_dict(tomllib.loads(design_to_toml(design))) == design
    # the joint correlation of change: MD per ROI, outcomes, then the measures
    r = design.change_correlation("drug")
    assert r.shape == (6, 6)
    assert r[4, 0] == -0.4 and r[4, 2] == -0.3  # fa: thalamus MD, hamd
    assert r[5, :5].tolist() == [0.0] * 5  # volume: no link
    assert design.change_correlation("placebo")[4, 2] == 0.0


@pytest.mark.parametrize(("edit", "match"), [
    (lambda m: m.pop("sd"), r"missing key rois.thalamus.measures.fa.sd"),
    (lambda m: m.update(cv=0.7), r"fa.cv must be >= 0.0 and < 0.5"),
    (lambda m: m.update(speed=1), r"unknown key rois.thalamus.measures.fa.speed"),
    (lambda m: m.update(outcome_correlation={"drug": {"madrs": 0.2}}),
     r"outcome_correlation.drug must name outcomes of the design"),
    (lambda m: m.update(md_correlation=-0.95,
                        outcome_correlation={"drug": {"hamd": 0.9}}),
     r"not jointly possible"),
])
def test_bad_measures_are_named(edit, match):
    d = drug_placebo_measures_dict()
    edit(d["rois"]["thalamus"]["measures"]["fa"])
    with pytest.raises(ValueError, match=match):
        design_from_dict(d)


def test_an_unknown_quantity_states_its_unit_and_scale():
    d = drug_placebo_dict()
    gaba = {"mean": 2.5, "sd": 0.3, "cv": 0.07, "change_mean": 0.0,
            "change_sd": 0.1}
    d["rois"]["thalamus"]["measures"] = {"gaba": dict(gaba)}
    with pytest.raises(ValueError, match=r"gaba.unit is missing"):
        design_from_dict(d)
    d["rois"]["thalamus"]["measures"] = {"gaba": {**gaba, "unit": "i.u."}}
    with pytest.raises(ValueError, match=r"gaba.scale is missing"):
        design_from_dict(d)
    d["rois"]["thalamus"]["measures"] = {"gaba": {**gaba, "unit": "i.u.",
                                                  "scale": 0.1}}
    assert design_from_dict(d).measures[0].scale == 0.1
    d["rois"]["thalamus"]["measures"] = {"md": dict(gaba)}
    with pytest.raises(ValueError, match=r"must not be md"):
        design_from_dict(d)


def test_a_design_without_measures_keeps_its_draws():
    # adding a measure appends draws: MD, scores and arms stay what they were
    plain = design_from_dict(drug_placebo_dict())
    more = design_from_dict(drug_placebo_measures_dict())
    a = simulate_arrays(plain, rng=4, stop=70)
    b = simulate_arrays(more, rng=4, stop=70)
    assert a.extra is None and b.extra.shape == (70, 60, 2, 2)
    np.testing.assert_array_equal(a.arm, b.arm)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_allclose(b.md, a.md, rtol=1e-12)


def test_simulated_measures_follow_the_design(design):
    a = simulate_arrays(design, rng=9, stop=3000)
    fa, vol = design.measures
    true_chg = a.extra_true[..., 1] - a.extra_true[..., 0]  # (R, N, 2)
    for code, arm in enumerate(design.arms):
        m = a.arm == code
        for i, spec in enumerate((fa, vol)):
            x = true_chg[..., i][m]
            se = spec.change_sd[arm] / np.sqrt(x.size)
            assert x.mean() == pytest.approx(spec.change_mean[arm], abs=4 * se)
            assert x.std() == pytest.approx(spec.change_sd[arm], rel=0.03)
    # baseline: mean, between-subject SD; one scan's noise cv x mean
    base = a.extra_true[..., 0, 0]
    assert base.mean() == pytest.approx(fa.mean, abs=4 * fa.sd / np.sqrt(base.size))
    noise = a.extra[..., 0, 0] - base
    assert noise.std() == pytest.approx(fa.noise_sd, rel=0.03)
    # correlations in the drug arm: with the thalamus's MD change and HAM-D's
    drug = a.arm == 0
    md_chg = (a.md_true[..., 0, 1] - a.md_true[..., 0, 0])[drug]
    r_md = np.corrcoef(true_chg[..., 0][drug], md_chg)[0, 1]
    assert r_md == pytest.approx(-0.4, abs=0.03)
    r_vol = np.corrcoef(true_chg[..., 1][drug], md_chg)[0, 1]
    assert abs(r_vol) < 0.03


def test_cohort_writes_a_table_per_measure(design, tmp_path):
    out = tmp_path / "c"
    code, _, err = quiet_main(["simulate", "--design", _write(design, tmp_path),
                               "--seed", "2", "--out", out, "--quiet"])
    assert code == 0, err
    for m, roi, unit in (("fa", "thalamus", "1 (a ratio)"),
                         ("volume", "putamen", "mm^3")):
        t = pd.read_csv(out / f"roi_{m}.tsv", sep="\t")
        assert t.columns.tolist() == ["participant_id", "session", "roi", m]
        assert set(t["roi"]) == {roi} and len(t) == 60 * 2
        side = pd.read_json(out / f"roi_{m}.json", typ="series")
        assert side[m]["Units"] == unit
        assert (out / f"true_{m}.tsv").is_file()
    c = simulate_cohort(design, rng=2)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "roi_fa.tsv", sep="\t"),
        c.measure_table("fa").astype({"fa": float}), check_exact=False, rtol=1e-9)


def _write(design, folder):
    path = folder / "measures.toml"
    path.write_text(design_to_toml(design))
    return path


def test_analyze_fits_every_measure_and_equals_statsmodels(design, tmp_path):
    import statsmodels.formula.api as smf

    out = tmp_path / "c"
    code, _, err = quiet_main(["simulate", "--design", _write(design, tmp_path),
                               "--seed", "5", "--out", out, "--quiet"])
    assert code == 0, err
    code, text, err = quiet_main(["analyze", out, "--out", tmp_path / "r.tsv",
                                  "--inference", "ols"])
    assert code == 0, err
    t = pd.read_csv(tmp_path / "r.tsv", sep="\t")
    assert t.columns[:3].tolist() == ["roi", "measure", "outcome"]
    assert t.groupby(["roi", "measure"], sort=False).size().to_dict() == {
        ("thalamus", "md"): 8, ("putamen", "md"): 8, ("thalamus", "fa"): 8,
        ("putamen", "volume"): 8}
    assert "d_score ~ C(group, Treatment('placebo')) * d_fa" in text
    assert "per 0.01 of fa change" in text and "per 10 mm^3 of volume change" in text
    assert "wrote" in text and "(32 rows)" in text
    # FA against a statsmodels formula fit of the same model from the tables
    p = pd.read_csv(out / "participants.tsv", sep="\t")
    fa = pd.read_csv(out / "roi_fa.tsv", sep="\t").pivot(
        index="participant_id", columns="session", values="fa").reset_index()
    f = fa.merge(p, on="participant_id")
    f["d_fa"] = (f["week1"] - f["pre"]) / 0.01
    f["d_score"] = f["hamd_week1"] - f["hamd_pre"]
    f["baseline_score"] = f["hamd_pre"]
    fit = smf.ols("d_score ~ C(group, Treatment('placebo')) * d_fa + baseline_score",
                  data=f).fit()
    name = "C(group, Treatment('placebo'))[T.drug]:d_fa"
    row = t[(t["measure"] == "fa") & (t["outcome"] == "hamd")
            & (t["term"] == "interaction")].iloc[0]
    assert row["estimate"] == pytest.approx(fit.params[name], rel=1e-8)
    assert row["p"] == pytest.approx(fit.pvalues[name], rel=1e-8)


def test_a_missing_measure_table_is_named(design, tmp_path):
    out = tmp_path / "c"
    quiet_main(["simulate", "--design", _write(design, tmp_path), "--seed", "5",
                "--out", out, "--quiet"])
    (out / "roi_volume.tsv").unlink()
    code, _, err = quiet_main(["analyze", out, "--out", tmp_path / "r.tsv"])
    assert code == 0, err
    assert "measure(s) volume have no roi_<measure>.tsv" in err
    t = pd.read_csv(tmp_path / "r.tsv", sep="\t")
    assert set(t["measure"]) == {"md", "fa"}


def test_power_fits_every_measure_and_its_null_is_null(design, tmp_path):
    from dtitool.stats.design_variants import null_counterpart
    from dtitool.stats.power import power

    null = null_counterpart(design)
    assert null.measures[0].outcome_r("drug", "hamd") == 0.0
    assert null.measures[0].md_correlation == -0.4  # MD-FA link kept
    res = power(design, replicates=512, rng=3, inference="welch")
    t = res.table
    assert t.groupby(["roi", "measure"], sort=False).size().to_dict() == {
        ("thalamus", "md"): 8, ("putamen", "md"): 8, ("thalamus", "fa"): 8,
        ("putamen", "volume"): 8}
    assert t["size_ok"].all()
    # FA's drug-arm link with HAM-D (r = -0.3 with true change): its slope
    # has more power than volume's, which has no link
    pw = t.set_index(["roi", "measure", "outcome", "term"])["power"]
    # (0.19 and 0.05 at this seed; 512 trials give an SE of 0.017 at most)
    assert (pw[("thalamus", "fa", "hamd", "slope_drug")]
            > pw[("putamen", "volume", "hamd", "slope_drug")] + 0.07)
    assert pw[("putamen", "volume", "hamd", "slope_drug")] < 0.1
    # the batched engine's FA estimates equal a statsmodels fit per replicate
    import statsmodels.formula.api as smf

    from dtitool.stats.inference import batch_models

    a = simulate_arrays(design, rng=8, stop=3)
    bm = batch_models(a, "ols")
    j = design.model_rows.index(("thalamus", "fa"))
    for r in range(3):
        f = pd.DataFrame({
            "group": np.where(a.arm[r] == 0, "drug", "placebo"),
            "x": (a.extra[r, :, 0, 1] - a.extra[r, :, 0, 0]) / 0.01,
            "b": a.scores[r, :, 0, 0],
            "y": a.scores[r, :, 0, 1] - a.scores[r, :, 0, 0]})
        fit = smf.ols("y ~ C(group, Treatment('placebo')) * x + b", data=f).fit()
        name = "C(group, Treatment('placebo'))[T.drug]:x"
        assert bm.estimate[r, j, 0, 0] == pytest.approx(fit.params[name], rel=1e-8)
        assert bm.p[r, j, 0, 0] == pytest.approx(fit.pvalues[name], rel=1e-8)
    power_tsv = tmp_path / "p"
    code, _, err = quiet_main(["power", "--design", _write(design, tmp_path),
                               "--replicates", "128", "--out", power_tsv, "--quiet"])
    assert code == 0, err
    assert pd.read_csv(power_tsv / "power.tsv", sep="\t").columns[:3].tolist() == [
        "roi", "measure", "outcome"]
    with pytest.raises(ValueError, match=r"other measures \(fa, volume\)"):
        power(design, replicates=64, rng=1, missing="mi")


@pytest.mark.slow
def test_demo_runs_with_measures(design, tmp_path):
    out = tmp_path / "demo"
    code, _, err = quiet_main(["demo", "--design", _write(design, tmp_path),
                               "--replicates", "200", "--curve-replicates", "100",
                               "--out", out])
    assert code == 0, err
    report = (out / "report.html").read_text()
    assert "volume" in report and "fa" in report
    assert (out / "cohort" / "roi_fa.tsv").is_file()
