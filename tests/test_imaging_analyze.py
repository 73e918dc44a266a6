"""``dtitool analyze --model imaging``: a cohort's change tests, as power runs them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.simulate import simulate_cohort
from dtitool.stats.imaging_change import (
    change_tests,
    imaging_rows,
    imaging_terms,
    imaging_values,
)
from dtitool.stats.imaging_fit import IMAGING_COLUMNS, fit_imaging

ECT = load_preset("ect-course")
STATS = ("estimate", "se", "df", "t", "p", "n", "n_arm", "n_control")


def _engine_table(cohort, keep=None) -> pd.DataFrame:
    """The power engine's statistics of replicate 0, one row per row and term."""
    d = cohort.design
    a = cohort.arrays
    out = change_tests(imaging_values(a), a.arm, control=d.arms.index(d.control),
                       n_arms=len(d.arms), keep=keep)
    terms = imaging_terms(d.arms, d.control, d.visit_names)
    recs = []
    for j, row in enumerate(imaging_rows(d)):
        for k, term in enumerate(terms):
            recs.append({"roi": row["roi"], "measure": row["measure"], "term": term,
                         **{s: out[s][0, j, k] for s in STATS}})
    return pd.DataFrame(recs).set_index(["roi", "measure", "term"])


@pytest.fixture(scope="module")
def mrs_cohort(tmp_path_factory):
    """ect-course with its volume table given a unit and a CRLB per scan."""
    folder = tmp_path_factory.mktemp("imaging") / "cohort"
    cohort = simulate_cohort(ECT, rng=31)
    folder.mkdir()
    cohort.write(folder)
    vol = pd.read_csv(folder / "roi_volume.tsv", sep="\t")
    rng = np.random.default_rng(8)
    vol["unit"] = "mm^3"
    vol["crlb"] = np.round(rng.uniform(5, 26, len(vol)), 1)  # about 29 % above 20
    vol.to_csv(folder / "roi_volume.tsv", sep="\t", index=False)
    return cohort, folder, vol


def _keep(cohort, vol, limit=20.0) -> np.ndarray:
    """The quality rule as the engine's keep mask (False: excluded)."""
    d = cohort.design
    keep = np.ones((1, d.n, len(imaging_rows(d)), len(d.visits)), dtype=bool)
    ids = {p: i for i, p in enumerate(cohort.participants["participant_id"])}
    rows = {(r["roi"], r["measure"]): j for j, r in enumerate(imaging_rows(d))}
    bad = vol[vol["crlb"] > limit]
    keep[0, bad["participant_id"].map(ids), [rows[(r, "volume")] for r in bad["roi"]],
         bad["session"].map(d.visit_names.index)] = False
    return keep


def test_engine_equals_the_scipy_fit_of_the_same_trial_with_the_quality_rule(
        mrs_cohort):
    """Every statistic of the power engine equals the analysis to 1e-10."""
    cohort, _, vol = mrs_cohort
    from dtitool.mrs import apply_quality

    # the tables in memory: the files hold 10 significant digits, the arrays 17
    table = cohort.measure_table("volume").assign(unit="mm^3", crlb=vol["crlb"])
    kept, report = apply_quality(table, max_crlb=20)
    assert report.n_excluded > 0
    res = fit_imaging(cohort.participants, {"md": cohort.roi_md, "volume": kept},
                      design=ECT)
    got = res.table.set_index(["roi", "measure", "term"])
    ref = _engine_table(cohort, keep=_keep(cohort, vol))
    assert list(res.table.columns) == list(IMAGING_COLUMNS)
    assert sorted(got.index) == sorted(ref.index)
    ref = ref.loc[got.index]
    for s in STATS:
        np.testing.assert_allclose(got[s].to_numpy(float), ref[s].to_numpy(float),
                                   rtol=1e-10, atol=0, err_msg=s)
    # the CI is the t interval of estimate and se
    from scipy import stats

    half = stats.t.ppf(0.975, got["df"]) * got["se"]
    np.testing.assert_allclose(got["ci_high"] - got["estimate"], half, rtol=1e-9)
    n = got["n"].sort_index()
    assert (n.loc[("hippocampus", "volume")] < n.loc[("hippocampus", "md")]).all()


def test_cli_writes_the_table_and_the_rule_line(mrs_cohort, tmp_path, capsys):
    cohort, folder, vol = mrs_cohort
    out = tmp_path / "imaging.tsv"
    assert main(["analyze", str(folder), "--model", "imaging", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "Imaging change from baseline" in text
    assert "fit quality of volume: crlb > 20%" in text
    t = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(t.columns) == list(IMAGING_COLUMNS)
    assert out.with_suffix(".json").is_file()
    ref = _engine_table(cohort, keep=_keep(cohort, vol)).loc[
        list(zip(t["roi"], t["measure"], t["term"], strict=True))]
    # the cohort's tables hold 10 significant digits: a value of about 85 (MD
    # per 1e-5 mm^2/s) or 350 (volume per 10 mm^3) is off by up to 5e-9 and a
    # change of about 1 by as much, so the statistics agree to about 1e-7
    for s in STATS:
        np.testing.assert_allclose(t[s].to_numpy(float), ref[s].to_numpy(float),
                                   rtol=1e-6, err_msg=s)
    # a looser limit keeps every spectrum: the engine without a mask
    assert main(["analyze", str(folder), "--model", "imaging", "--max-crlb", "99",
                 "--force", "--out", str(out)]) == 0
    t = pd.read_csv(out, sep="\t", keep_default_na=False)
    ref = _engine_table(cohort).loc[
        list(zip(t["roi"], t["measure"], t["term"], strict=True))]
    np.testing.assert_allclose(t["t"], ref["t"], rtol=1e-6)


@pytest.mark.parametrize(("extra", "match"), [
    (["--covariates", "age"], "--covariates is an option of the change-score and "
                              "mixed models"),
    (["--time", "visit"], "--time is an option of the mixed models, not of --model "
                          "imaging"),
    (["--inference", "ols"], "--inference is an option of the change-score models"),
])
def test_cli_refuses_the_other_models_options(mrs_cohort, tmp_path, capsys, extra,
                                              match):
    _, folder, _ = mrs_cohort
    assert main(["analyze", str(folder), "--model", "imaging", "--out",
                 str(tmp_path / "x.tsv"), *extra]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x.tsv").exists()


def test_missing_scans_are_complete_cases():
    """A missing primary-visit scan leaves that visit's tests only."""
    d = load_preset("ketamine-rct")
    d = d.replace(missing=d.missing.__class__(mechanism="mcar", rate=0.2))
    cohort = simulate_cohort(d, rng=4)
    res = fit_imaging(cohort.participants, cohort.roi_md, design=d)
    got = res.table.set_index(["roi", "measure", "term"])
    ref = _engine_table(cohort).loc[got.index]
    assert got["n"].max() < d.n
    for s in STATS:
        np.testing.assert_allclose(got[s].to_numpy(float), ref[s].to_numpy(float),
                                   rtol=1e-10, err_msg=s)


def test_an_arm_without_two_complete_participants_is_nan_with_a_warning():
    p = pd.DataFrame({"participant_id": list("abcdef"),
                      "group": ["drug"] * 3 + ["placebo"] * 3,
                      "madrs_pre": 30, "madrs_post": 20})
    md = pd.DataFrame([(i, s, "acc", (80 + k + (s == "post") * (k % 2)) * 1e-5)
                       for k, i in enumerate("abcdef") for s in ("pre", "post")
                       if not (s == "post" and i in "bc")],  # two scans missing
                      columns=["participant_id", "session", "roi", "md"])
    with pytest.warns(UserWarning, match="acc md drug:post"):
        res = fit_imaging(p, md, visits=["pre", "post"], control="placebo")
    assert np.isnan(res.table["p"].iloc[1]) and res.table["n_arm"].iloc[1] == 1
    assert np.isfinite(res.table["p"].iloc[0])


def test_fit_imaging_refuses_a_bad_alpha():
    with pytest.raises(ValueError, match="alpha must be between 0 and 1; got 2"):
        fit_imaging("nowhere", alpha=2)
