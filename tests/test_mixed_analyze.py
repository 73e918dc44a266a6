"""``dtitool analyze --model mixed`` and :func:`dtitool.stats.mixed.fit_mixed`.

Two cohorts: the shipped three-arm design (three visits, no doses: time in
hours, simulated with seed 3), and one made here with a dose at every visit,
a volume table and missing scans, without a design.toml. Checked against
outside computations:

- estimates: a statsmodels ``MixedLM.from_formula`` fit of the same formula on
  a frame built here from the TSVs (its optimiser started at the reported
  variance parameters stays there; with a visit factor, statsmodels' own start
  reaches the same optimum); SEs: lme4's ``sigma^2 (X'V^{-1}X)^{-1}`` computed
  here participant by participant from that fit;
- degrees of freedom: the batched engine (:mod:`dtitool.stats.lmm`) fitted
  here on its own, and the closed forms of a balanced random-intercept model
  (a within-participant contrast: (N - g)(T - 1); a between-participant one:
  N - g);
- everything at once: R's lmerTest and pbkrtest on the engine's reference
  datasets (tests/data/lmm: balanced, unbalanced, time in hours, a boundary
  fit): estimates, SEs, Satterthwaite and Kenward-Roger df and p;
- flags: a cohort whose participants share one slope per arm exactly (no
  random-slope variance) is singular, as the engine finds too.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adversarial_world import quiet_main

from dtitool.stats import lmm
from dtitool.stats.mixed import (
    MIXED_COLUMNS,
    _engine_fit,
    fit_mixed,
    relative_cholesky,
)
from dtitool.stats.mixed_data import wide_arrays

ROOT = Path(__file__).resolve().parents[1]
THREE_ARM = ROOT / "examples" / "designs" / "three-arm.toml"
SYNTHETIC = ROOT / "synthetic_data"
DOSES = {"baseline": (0.0, 0.0), "s3": (168.0, 3.0), "s6": (336.0, 6.0),
         "end": (504.0, 9.0)}


# ------------------------------------------------------------------ cohorts


def _ok(argv) -> str:
    code, out, err = quiet_main(argv)
    assert code == 0, err
    return out


def _refused(argv) -> str:
    code, out, err = quiet_main(argv)
    assert code == 2, out
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def three_arm(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three") / "cohort"
    _ok(["simulate", "--design", THREE_ARM, "--seed", "3", "--out", out])
    return out


def make_dosed(folder: Path, *, seed: int = 11, n: int = 40, singular: bool = False,
               drop: int = 6) -> Path:
    """Write an ECT-like cohort with doses (arms ect and sham, no design.toml).

    MD (hippocampus) and volume (hippocampus, in mm^3) at four visits, MADRS
    at each, age and sex. ``singular``: every participant's MD follows their
    arm's slope exactly (their residuals are orthogonal to 1 and dose), so
    the random-slope variance is at its boundary. ``drop`` scans are missing.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    ids = [f"sub-{i:02d}" for i in range(n)]
    arm = np.where(np.arange(n) % 2 == 0, "ect", "sham")
    ect = arm == "ect"
    dose = np.array([d for _, d in DOSES.values()])
    X1 = np.stack([np.ones(4), dose], axis=1)
    proj = np.eye(4) - X1 @ np.linalg.solve(X1.T @ X1, X1.T)
    p = pd.DataFrame({"participant_id": ids, "group": arm,
                      "age": rng.integers(20, 65, n),
                      "sex": rng.choice(["F", "M"], n)})
    md_base = rng.normal(80.0, 3.0, n)
    md_slope = np.where(ect, -0.12, 0.0)
    if not singular:
        md_slope = md_slope + rng.normal(0, np.where(ect, 0.04, 0.01))
    noise = rng.normal(0, 1.0, (n, 4))
    if singular:
        noise = noise @ proj
    md = (md_base[:, None] + md_slope[:, None] * dose + noise) * 1e-5
    vol = (rng.normal(3500, 350, n)[:, None]
           + (np.where(ect, 10.0, 0.0) + rng.normal(0, 4, n))[:, None] * dose
           + rng.normal(0, 40, (n, 4)))
    score = (rng.normal(30, 5, n)[:, None]
             + (np.where(ect, -1.5, -0.3) + rng.normal(0, 0.4, n))[:, None] * dose
             + rng.normal(0, 2, (n, 4)))
    for t, v in enumerate(DOSES):
        p[f"madrs_{v}"] = np.clip(np.round(score[:, t]), 0, 60).astype(int)
    rows = [(ids[i], v, "hippocampus", md[i, t], vol[i, t])
            for i in range(n) for t, v in enumerate(DOSES)]
    r = pd.DataFrame(rows, columns=["participant_id", "session", "roi", "md",
                                    "volume"])
    if drop:
        gone = rng.choice(np.flatnonzero(r["session"] != "baseline"), drop,
                          replace=False)
        r = r.drop(index=gone)
    p.to_csv(folder / "participants.tsv", sep="\t", index=False)
    r.drop(columns="volume").to_csv(folder / "roi_md.tsv", sep="\t", index=False)
    r.drop(columns="md").to_csv(folder / "roi_volume.tsv", sep="\t", index=False)
    pd.DataFrame({"visit": list(DOSES), "hours": [h for h, _ in DOSES.values()],
                  "dose": [d for _, d in DOSES.values()],
                  "primary": ["false", "false", "false", "true"]}).to_csv(
        folder / "visits.tsv", sep="\t", index=False)
    return folder


@pytest.fixture(scope="module")
def dosed(tmp_path_factory) -> Path:
    return make_dosed(tmp_path_factory.mktemp("dosed") / "cohort")


@pytest.fixture(scope="module")
def three_hours(three_arm):
    return fit_mixed(three_arm, variance="common", random="slope")


@pytest.fixture(scope="module")
def three_visit(three_arm):
    return fit_mixed(three_arm, time="visit", covariates=(), variance="common",
                     random="slope")


@pytest.fixture(scope="module")
def dosed_fit(dosed):
    return fit_mixed(dosed, control="sham", variance="common", random="slope")


# ------------------------------------------------- the same fit, done here


def direct_frame(folder: Path, *, measure="md", roi=None, outcome=None,
                 scale=1e-5) -> pd.DataFrame:
    """The long frame of one model, built from the TSVs without dtitool."""
    p = pd.read_csv(folder / "participants.tsv", sep="\t",
                    dtype={"participant_id": str})
    v = pd.read_csv(folder / "visits.tsv", sep="\t").rename(columns={"visit":
                                                                     "session"})
    if outcome is None:
        r = pd.read_csv(folder / f"roi_{measure}.tsv", sep="\t",
                        dtype={"participant_id": str})
        f = r[r["roi"] == roi].assign(value=lambda d: d[measure] / scale)
    else:
        cols = [c for c in p.columns if c.startswith(f"{outcome}_")]
        f = p.melt(id_vars="participant_id", value_vars=cols, var_name="session",
                   value_name="value").dropna()
        f["session"] = f["session"].str[len(outcome) + 1:]
    f = f.merge(p[["participant_id", "group", "age", "sex"]], on="participant_id")
    return f.merge(v, on="session").rename(columns={"session": "visit"})


def user_theta(results, key) -> np.ndarray:
    """The fit's relative Cholesky factor for time in its own unit."""
    data = results.models[key]
    L = relative_cholesky(np.asarray(results.fits[key].cov_re_unscaled))
    if data.time != "visit":
        L[1:] /= data.time_scale
    return L


def direct_fit(frame, formula, re_formula, start=None):
    from statsmodels.regression.mixed_linear_model import MixedLM

    model = MixedLM.from_formula(formula, frame, groups="participant_id",
                                 re_formula=re_formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if start is None:
            return model.fit(reml=True)
        return model.fit(reml=True, method=["lbfgs"],
                         start_params=start[np.tril_indices(len(start))])


def lme4_se(res) -> pd.Series:
    """sqrt diag of sigma^2 (X'V^{-1}X)^{-1}, V per participant, dense."""
    model = res.model
    G, s2 = np.asarray(res.cov_re), float(res.scale)
    groups = np.asarray(model.groups)
    XtVX = 0.0
    for g in np.unique(groups):
        i = np.flatnonzero(groups == g)
        X, Z = model.exog[i], model.exog_re[i]
        XtVX = XtVX + X.T @ np.linalg.solve(Z @ G @ Z.T + s2 * np.eye(i.size), X)
    return pd.Series(np.sqrt(np.diag(np.linalg.inv(XtVX))), index=model.exog_names)


def engine_df(res, terms, *, kr=False):
    """The batched engine fitted here to the same model, its df of ``terms``."""
    model = res.model
    ids, pi = np.unique(np.asarray(model.groups), return_inverse=True)
    visits = list(pd.unique(model.data.frame["visit"]))
    ti = model.data.frame["visit"].map({v: i for i, v in enumerate(visits)})
    y = np.full((1, ids.size, len(visits)), np.nan)
    y[0, pi, ti] = model.endog
    X = np.zeros((ids.size, len(visits), model.exog.shape[1]))
    X[pi, ti] = model.exog
    Z = np.zeros((ids.size, len(visits), model.exog_re.shape[1]))
    Z[pi, ti] = model.exog_re
    fit = lmm.fit_lmm(y, X, Z)
    L = np.zeros((len(terms), X.shape[-1]))
    for k, t in enumerate(terms):
        L[k, list(model.exog_names).index(t)] = 1.0
    if kr:
        return fit, lmm.kenward_roger(fit, y, X, Z, None, L)[1][0]
    return fit, lmm.satterthwaite(fit, y, X, Z, None, L)[0]


GROUP = "C(group, Treatment('placebo'))"


def _patsy(term: str, time: str, group=GROUP, baseline="baseline") -> str:
    """The patsy column of a table term."""
    def one(x):
        if x == time:
            return x
        if time == "visit" and x in ("day1", "week1"):
            return f"C(visit, Treatment({baseline!r}))[T.{x}]"
        return f"{group}[T.{x}]"

    return ":".join(one(x) for x in term.split(":"))


# -------------------------------------------------------------------- tests


def test_three_arm_terms_rows_and_flags(three_hours):
    t = three_hours.table
    assert list(t.columns) == list(MIXED_COLUMNS)
    assert three_hours.time == "hours"  # no visit states a dose
    assert list(t["term"][:5]) == ["hours", "high", "low", "high:hours",
                                   "low:hours"]
    # imaging rows: roi and measure, no outcome; rating scales: outcome only
    img = t[t["outcome"] == ""]
    assert set(img["roi"]) == {"thalamus", "putamen"} and set(img["measure"]) == {
        "md"}
    sc = t[t["outcome"] != ""]
    assert set(sc["outcome"]) == {"hamd", "bdi"} and (sc["roi"] == "").all()
    assert (sc["measure"] == "").all()
    assert t["converged"].all() and not t["singular"].any()
    assert (t["n_obs"] == 270).all() and (t["n_participants"] == 90).all()
    assert three_hours.covariates == ("age", "sex")
    assert "(1 + hours | participant)" in three_hours.formula
    text = three_hours.summary()
    assert "Fits: 4; not converged: 0; singular" in text
    assert "MixedResults" in three_hours._repr_html_()


@pytest.mark.parametrize("key", [("thalamus", "md", ""), ("", "", "hamd")])
def test_estimates_and_ses_are_a_statsmodels_fit(three_arm, three_hours, key):
    roi, _, outcome = key
    frame = direct_frame(three_arm, roi=roi or None, outcome=outcome or None)
    formula = f"value ~ {GROUP} * hours + age + C(sex)"
    res = direct_fit(frame, formula, "~hours", start=user_theta(three_hours, key))
    assert res.converged  # statsmodels' optimiser stays where it starts
    se = lme4_se(res)
    rows = three_hours.table
    rows = rows[(rows["roi"] == roi) & (rows["outcome"] == outcome)]
    for r in rows.itertuples():
        col = _patsy(r.term, "hours")
        assert r.estimate == pytest.approx(res.fe_params[col], rel=1e-8, abs=1e-12)
        assert r.se == pytest.approx(se[col], rel=1e-8)
        # statsmodels' own bse_fe inverts the information of every parameter
        # together: close to lme4's, not equal (module docstring)
        assert r.se == pytest.approx(res.bse_fe[col], rel=0.02)
    # and the optimum is statsmodels' too: its own start gets no higher
    own = direct_fit(frame, formula, "~hours")
    assert own.llf <= res.llf + 1e-8


def test_satterthwaite_df_are_the_engines(three_hours):
    t = three_hours.table
    for key, res in three_hours.fits.items():
        rows = t[(t["roi"] == key[0]) & (t["outcome"] == key[2])]
        cols = [three_hours.models[key].terms[t] for t in rows["term"]]
        fit, df = engine_df(res, cols)
        assert fit.converged[0] and not fit.singular[0]
        np.testing.assert_allclose(rows["df"], df, rtol=1e-6)
        # the engine's own estimates agree with statsmodels' fit
        se = np.sqrt(np.diag(fit.cov[0]))
        idx = [list(res.model.exog_names).index(c) for c in cols]
        scale = np.array([1.0 / three_hours.models[key].time_scale if "hours" in c
                          else 1.0 for c in cols])
        np.testing.assert_allclose(rows["estimate"], fit.beta[0, idx] * scale,
                                   rtol=0, atol=1e-6 * se[idx].max())


def test_visit_factor_terms_and_closed_form_df(three_arm, three_visit):
    t = three_visit.table
    key = ("thalamus", "md", "")
    rows = t[t["roi"] == "thalamus"].set_index("term")
    assert list(rows.index) == ["day1", "week1", "high", "low", "high:day1",
                                "high:week1", "low:day1", "low:week1"]
    assert "(1 | participant)" in three_visit.formula
    # balanced (90 x 3, nothing missing), random intercept: a within-participant
    # contrast has (N - g)(T - 1) df, a between-participant one N - g
    for term in ("day1", "week1", "high:day1", "low:week1"):
        assert rows.loc[term, "df"] == pytest.approx((90 - 3) * 2, rel=1e-9)
    data, res = three_visit.models[key], three_visit.fits[key]
    y, X, Z = wide_arrays(data, np.asarray(res.model.exog),
                          np.asarray(res.model.exog_re), ["baseline", "day1",
                                                          "week1"])
    fit = _engine_fit(res, y, X, Z)
    names = list(res.model.exog_names)
    between = np.zeros(len(names))  # high minus placebo averaged over the visits
    between[names.index(_patsy("high", "visit"))] = 1.0
    for v in ("day1", "week1"):
        between[names.index(_patsy(f"high:{v}", "visit"))] = 1.0 / 3.0
    df = lmm.satterthwaite(fit, y, X, Z, None, between[None])
    assert df[0, 0] == pytest.approx(90 - 3, rel=1e-9)
    # and statsmodels' own fit of the random-intercept model (its default
    # start and optimiser, which stops a few 1e-7 short of the optimum) gives
    # the same estimates and lme4's SEs
    frame = direct_frame(three_arm, roi="thalamus")
    own = direct_fit(frame, f"value ~ {GROUP} * C(visit, Treatment('baseline'))",
                     None)
    se = lme4_se(own)
    for term, r in rows.iterrows():
        col = _patsy(term, "visit")
        assert r["estimate"] == pytest.approx(own.fe_params[col], rel=1e-6)
        assert r["se"] == pytest.approx(se[col], rel=1e-5)
    assert res.llf >= own.llf - 1e-9


def test_kenward_roger(three_arm):
    kr = fit_mixed(three_arm, time="visit", covariates=(), df="kenward-roger",
                   variance="common", random="slope")
    assert kr.df_method == "kenward-roger"
    key = ("", "", "bdi")
    rows = kr.table[kr.table["outcome"] == "bdi"]
    cols = [kr.models[key].terms[t] for t in rows["term"]]
    _, df = engine_df(kr.fits[key], cols, kr=True)
    np.testing.assert_allclose(rows["df"], df, rtol=1e-6)
    # a balanced random-intercept model needs no adjustment (Kenward & Roger
    # 1997): the within-participant df stay (N - g)(T - 1)
    within = rows[rows["term"].str.contains("day1|week1")]
    np.testing.assert_allclose(within["df"], 174.0, rtol=1e-6)
    assert "Kenward-Roger" in kr.summary()


def test_dosed_cohort_without_a_design(dosed, dosed_fit):
    t = dosed_fit.table
    assert dosed_fit.time == "dose"  # every visit states a dose
    assert list(pd.unique(t["term"])) == ["dose", "ect", "ect:dose"]
    models = list(dict.fromkeys(zip(t["roi"], t["measure"], t["outcome"],
                                    strict=True)))
    assert models == [("hippocampus", "md", ""), ("hippocampus", "volume", ""),
                      ("", "", "madrs")]
    assert dosed_fit.units == {"md": "1e-05 mm^2/s", "volume": "10 mm^3"}
    md = t[t["measure"] == "md"]
    assert (md["n_obs"] == 160 - 6).all() and (md["n_participants"] == 40).all()
    assert t["converged"].all() and not t["singular"].any()
    # the ECT arm's MD falls with dose; its volume grows by ~10 mm^3 a session
    ect_md = dosed_fit.term("ect:dose", roi="hippocampus")
    assert ect_md["estimate"] < 0 and ect_md["p"] < 0.05
    vol = dosed_fit.term("ect:dose", roi="hippocampus", measure="volume")
    assert vol["ci_low"] < 1.0 < vol["ci_high"]  # per 10 mm^3
    # volume on its model scale, per dose: statsmodels' fit of volume / 10
    key = ("hippocampus", "volume", "")
    frame = direct_frame(dosed, measure="volume", roi="hippocampus", scale=10.0)
    formula = "value ~ C(group, Treatment('sham')) * dose + age + C(sex)"
    res = direct_fit(frame, formula, "~dose", start=user_theta(dosed_fit, key))
    se = lme4_se(res)
    for term in ("dose", "ect", "ect:dose"):
        col = _patsy(term, "dose", group="C(group, Treatment('sham'))")
        row = dosed_fit.term(term, roi="hippocampus", measure="volume")
        assert row["estimate"] == pytest.approx(res.fe_params[col], rel=1e-8)
        assert row["se"] == pytest.approx(se[col], rel=1e-8)
    cols = [dosed_fit.models[key].terms[x] for x in ("dose", "ect", "ect:dose")]
    _, df = engine_df(dosed_fit.fits[key], cols)
    rows = t[t["measure"] == "volume"]
    np.testing.assert_allclose(rows["df"], df, rtol=1e-6)


def test_fitting_twice_gives_the_same_table(dosed, dosed_fit):
    again = fit_mixed(dosed, control="sham", variance="common", random="slope")
    pd.testing.assert_frame_equal(again.table, dosed_fit.table)


def test_tables_as_dataframes(dosed, dosed_fit):
    from dtitool.design import VisitSpec

    p = pd.read_csv(dosed / "participants.tsv", sep="\t")
    r = pd.read_csv(dosed / "roi_md.tsv", sep="\t")
    visits = [VisitSpec(v, h, d) for v, (h, d) in DOSES.items()]
    got = fit_mixed(p, r, visits=visits, control="sham", covariates=("age",))
    assert got.covariates == ("age",)
    assert list(pd.unique(got.table["measure"])) == ["md", ""]
    row = got.term("ect:dose", roi="hippocampus")
    # dropping sex changes the estimate a little, not its sign
    assert np.sign(row["estimate"]) == np.sign(
        dosed_fit.term("ect:dose", roi="hippocampus")["estimate"])
    with pytest.raises(ValueError, match=r"time 'hours' needs the visits' "
                       r"schedule"):
        fit_mixed(p, r, visits=list(DOSES), control="sham", time="hours")
    names_only = fit_mixed(p, r, visits=list(DOSES), control="sham")
    assert names_only.time == "visit"


def test_a_fit_without_random_slope_variance_is_singular(tmp_path):
    folder = make_dosed(tmp_path / "flat", singular=True, drop=0)
    res = fit_mixed(folder, control="sham", measures=["md"], variance="common",
                    random="slope")
    key = ("hippocampus", "md", "")
    md = res.table[res.table["measure"] == "md"]
    assert md["singular"].all() and md["converged"].all()
    assert res.n_singular >= 1
    assert f"singular (a variance at its boundary): {res.n_singular}" in (
        res.summary())
    # the engine, fitted on its own, finds the boundary too, and the same
    # fixed effects
    cols = [res.models[key].terms[t] for t in md["term"]]
    fit, _ = engine_df(res.fits[key], cols)
    assert fit.singular[0]
    # the default drops a slope the likelihood-ratio test does not support:
    # then no variance sits at its boundary (in either arm)
    sel = fit_mixed(folder, control="sham", measures=["md"])
    smd = sel.table[sel.table["measure"] == "md"]
    assert set(smd["random"]) == {"ect: (1 | participant); sham: (1 | participant)"}
    assert not smd["singular"].any() and smd["converged"].all()
    per_fit = sel.table.drop_duplicates(["roi", "measure", "outcome"])["random"]
    kept = sum(part.count(" + ") for part in per_fit)  # MADRS's slope is real
    assert kept >= 1 and f"{kept} of {2 * len(per_fit)} fits kept it" in sel.summary()
    idx = [list(res.fits[key].model.exog_names).index(c) for c in cols]
    per = np.array([1.0 / res.models[key].time_scale if "dose" in c else 1.0
                    for c in cols])
    se = np.sqrt(np.diag(fit.cov[0]))[idx] * per
    np.testing.assert_allclose(md["estimate"], fit.beta[0, idx] * per, rtol=0,
                               atol=1e-6 * se.max())


# ---------------------------------------------------------------- the CLI


def test_cli_default_is_mixed_for_three_sessions(three_arm, three_hours, tmp_path):
    out = tmp_path / "res" / "results.tsv"
    text = _ok(["analyze", three_arm, "--out", out, "--variance", "common",
                "--random", "slope"])
    assert "more than two sessions" in text and "Mixed models (REML" in text
    got = pd.read_csv(out, sep="\t", keep_default_na=False)
    want = three_hours.table
    assert list(got.columns) == list(MIXED_COLUMNS)
    for col in ("roi", "measure", "outcome", "term"):
        assert list(got[col]) == list(want[col]), col
    for col in ("estimate", "se", "df", "t", "p", "ci_low", "ci_high"):
        np.testing.assert_allclose(got[col].astype(float), want[col], rtol=1e-9)
    assert (got["converged"].astype(str) == "True").all()
    side = json.loads(out.with_suffix(".json").read_text())
    assert "0 of 4 fits did not converge" in side["converged"]["Description"]
    assert "0 of 4 fits are singular" in side["singular"]["Description"]
    runs = json.loads((out.parent / "dtitool-run.json").read_text())["runs"]
    assert set(runs[-1]["files"]) == {"results.tsv", "results.json"}
    assert not list(tmp_path.rglob(".dtitool-tmp-*"))
    # not over an existing table without --force
    err = _refused(["analyze", three_arm, "--out", out])
    assert "already exists" in err


def test_cli_model_change_is_unchanged(three_arm, tmp_path):
    from dtitool.stats.analysis import fit_models
    from dtitool.tables import read_tables

    out = tmp_path / "change.tsv"
    _ok(["analyze", three_arm, "--out", out, "--model", "change"])
    got = pd.read_csv(out, sep="\t")
    want = fit_models(*read_tables(three_arm)).table
    assert list(got["term"]) == list(want["term"])
    np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-9)
    np.testing.assert_allclose(got["p"], want["p"], rtol=1e-9)
    # two sessions: change by default, the same bytes as --model change
    a, b = tmp_path / "a" / "r.tsv", tmp_path / "b" / "r.tsv"
    text_a = _ok(["analyze", SYNTHETIC, "--out", a])
    text_b = _ok(["analyze", SYNTHETIC, "--out", b, "--model", "change"])
    assert a.read_bytes() == b.read_bytes()
    assert text_a.replace(str(a), "OUT") == text_b.replace(str(b), "OUT")


def test_cli_dosed_cohort(dosed, dosed_fit, tmp_path):
    out = tmp_path / "mixed.tsv"
    text = _ok(["analyze", dosed, "--out", out, "--control", "sham",
                "--df", "satterthwaite", "--variance", "common", "--random",
                "slope"])
    assert "per unit of dose" in text and "volume in 10 mm^3" in text
    got = pd.read_csv(out, sep="\t")
    np.testing.assert_allclose(got["estimate"], dosed_fit.table["estimate"],
                               rtol=1e-9)
    # --time hours: the same data, time in hours
    text = _ok(["analyze", dosed, "--out", tmp_path / "h.tsv", "--control",
                "sham", "--time", "hours"])
    assert "ect:hours" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--inference", "ols"], "--inference is an option of the change-score "
     "models, not of --model mixed"),
    (["--figures", "figs"], "--figures is an option of the change-score"),
    (["--missing", "mi"], "--missing is an option of the change-score"),
    (["--familywise", "maxt"], "--familywise is an option of the change-score"),
    (["--seed", "3"], "--seed is an option"),
    (["--model", "change", "--time", "dose"], "--time is an option of the mixed "
     "models, not of --model change"),
    (["--model", "change", "--df", "kenward-roger"], "--df is an option of the "
     "mixed models"),
    (["--model", "change", "--variance", "common"], "--variance is an option of "
     "the mixed models"),
    (["--model", "change", "--random", "slope"], "--random is an option of the "
     "mixed models"),
    (["--covariates", "baseline"], "covariate 'baseline' .* does not apply to "
     "the mixed models"),
    (["--covariates", "height"], "unknown covariate 'height'; expected a "
     "participants column: age, sex"),
])
def test_cli_refuses_options_of_the_other_model(three_arm, tmp_path, extra,
                                                message):
    out = tmp_path / "res" / "r.tsv"
    err = _refused(["analyze", three_arm, "--out", out, *extra])
    assert re.search(message, err), err
    assert not (tmp_path / "res").exists()


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.glob("*.tsv"):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_cli_bad_inputs_name_what_where_and_what_was_expected(dosed, tmp_path):
    out = tmp_path / "res" / "r.tsv"
    # a visit without a dose, with --time dose
    d = _copy(dosed, tmp_path / "nodose")
    v = pd.read_csv(d / "visits.tsv", sep="\t")
    v.loc[v["visit"] == "s6", "dose"] = np.nan
    v.to_csv(d / "visits.tsv", sep="\t", index=False)
    err = _refused(["analyze", d, "--out", out, "--control", "sham", "--time",
                    "dose"])
    assert "visit 's6' has none" in err
    # without it, time is hours (not every visit states a dose)
    res = fit_mixed(d, control="sham", measures=["md"])
    assert res.time == "hours"
    # a session that is not a visit
    d = _copy(dosed, tmp_path / "session")
    r = pd.read_csv(d / "roi_md.tsv", sep="\t")
    r.loc[r.index[5], "session"] = "s9"
    r.to_csv(d / "roi_md.tsv", sep="\t", index=False)
    err = _refused(["analyze", d, "--out", out, "--control", "sham"])
    assert "ROI MD table has unknown session label(s) 's9'" in err
    assert "expected 'baseline' or 's3'" in err
    # a participant missing from the participants table
    d = _copy(dosed, tmp_path / "who")
    p = pd.read_csv(d / "participants.tsv", sep="\t")
    p.iloc[1:].to_csv(d / "participants.tsv", sep="\t", index=False)
    err = _refused(["analyze", d, "--out", out, "--control", "sham"])
    assert "participant(s) not in the participants table: sub-00" in err
    # hours that are not a number
    d = _copy(dosed, tmp_path / "hours")
    v = pd.read_csv(d / "visits.tsv", sep="\t", dtype=str)
    v.loc[2, "hours"] = "two weeks"
    v.to_csv(d / "visits.tsv", sep="\t", index=False)
    err = _refused(["analyze", d, "--out", out, "--control", "sham"])
    assert "visits table" in err and "row 3 ('s6'): hours must be a number" in err
    assert "'two weeks'" in err
    assert not (tmp_path / "res").exists()


def test_api_refuses_bad_arguments(dosed):
    with pytest.raises(ValueError, match="df must be one of satterthwaite, "
                       "kenward-roger; got 'kr'"):
        fit_mixed(dosed, control="sham", df="kr")
    with pytest.raises(ValueError, match="time must be one of dose, hours, visit; "
                       "got 'days'"):
        fit_mixed(dosed, control="sham", time="days")
    with pytest.raises(ValueError, match=r"unknown covariate 'group' .*name the "
                       r"mixed models use themselves"):
        fit_mixed(dosed, control="sham", covariates=("group",))


# ------------------------------------------------------ R's lmerTest and pbkrtest


R_DATA = ROOT / "tests" / "data" / "lmm"


@pytest.mark.parametrize("name", ["q2_balanced", "q2_unbalanced", "q2_hours",
                                  "q2_boundary"])
def test_statsmodels_fit_and_df_match_r(name):
    """The engine author's R fixtures (value ~ arm * time + age + sex +
    (1 + time | participant); tests/data/lmm/make_reference.py): the
    statsmodels fit with the engine's df at its variance parameters gives
    lmerTest's and pbkrtest's estimates, SEs, df and p."""
    from dtitool.stats.mixed import _fit_model

    ref = json.loads((R_DATA / "reference.json").read_text())["datasets"][name]
    data, names = _r_fixture_data(name)
    # R's contrast rows are the columns x0..x5: time is x2, arm x1, arm:time x3
    column = {"hours": 2, "t": 1, "t:hours": 3}
    for method, key in (("satterthwaite", "satterthwaite"),
                        ("kenward-roger", "kenward_roger")):
        rows, _ = _fit_model(data, names, method, 0.05, "common", "slope")
        for r in rows:
            want = ref[key][column[r[3]]]
            est, se, df, p = r[4], r[5], r[6], r[8]
            assert est == pytest.approx(want["estimate"], rel=1e-5, abs=1e-9)
            assert se == pytest.approx(want["se"], rel=1e-5)
            assert df == pytest.approx(want["df"], rel=1e-4)
            assert p == pytest.approx(want["p"], rel=1e-4, abs=1e-9)
            assert r[11] and r[12] == ref["singular"]  # converged, singular


def test_random_slope_needs_three_visits(tmp_path):
    """Two visits cannot separate a random intercept, slope and residual."""
    import subprocess
    import sys

    from dtitool.design import read_design
    from dtitool.simulate import simulate_cohort

    design, _ = read_design(ROOT / "examples" / "designs" / "drug-placebo.toml")
    folder = tmp_path / "two"
    folder.mkdir()
    simulate_cohort(design, rng=1).write(folder)
    proc = subprocess.run([sys.executable, "-m", "dtitool", "analyze", str(folder),
                           "--model", "mixed", "--out", str(tmp_path / "m.tsv")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "needs at least three visits" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.tsv").exists()


def _r_fixture_data(name):
    """The R fixture dataset ``name`` as the model data analyze builds."""
    from dtitool.design import TrialNames
    from dtitool.stats.mixed_data import ModelData

    d = pd.read_csv(R_DATA / "datasets" / f"{name}.tsv", sep="\t")
    frame = pd.DataFrame({
        "participant_id": d["participant"].map("p{:02d}".format),
        "group": np.where(d["x1"] == 1, "t", "c"), "visit": d["visit"].map(
            "v{}".format), "hours": d["x2"], "value": d["y"], "age": d["x4"],
        "sex": d["x5"]})
    group = "C(group, Treatment('c'))"
    data = ModelData(roi="r", measure="md", outcome="", frame=frame,
                     formula=f"value ~ {group} * hours + age + sex",
                     re_formula="~hours", unit="", time="hours",
                     terms={"hours": "hours", "t": f"{group}[T.t]",
                            "t:hours": f"{group}[T.t]:hours"})
    names = TrialNames(("t", "c"), "c", tuple(f"v{v}" for v in
                                              sorted(d["visit"].unique())))
    return data, names


@pytest.mark.parametrize("name", ["q2_balanced", "q2_unbalanced", "q2_hours",
                                  "q2_boundary"])
def test_per_arm_fits_match_lmertest_fitted_per_arm(name):
    """``variance="arm"``: each arm is lme4's fit of that arm alone (covariates
    centred at the mean participant), the control arm's slope is its own, and
    the arms' differences have the summed variance and Welch's combination of
    lmerTest's per-arm df (tests/data/lmm/per_arm.R). ``random="select"``
    keeps the slope exactly where R's anova() likelihood-ratio p is below 0.2
    (both choices occur in q2_boundary)."""
    from dtitool.stats.inference import welch_df
    from dtitool.stats.mixed import _fit_model

    ref = json.loads((R_DATA / "per_arm.json").read_text())["datasets"][name]
    data, names = _r_fixture_data(name)
    for random in ("slope", "select"):
        chosen = {a: ("slope" if random == "slope" or ref[k]["lrt_p"] < 0.2
                      else "intercept") for a, k in (("c", "0"), ("t", "1"))}
        for method, key in (("satterthwaite", "satterthwaite"),
                            ("kenward-roger", "kenward_roger")):
            rows, fits = _fit_model(data, names, method, 0.05, "arm", random)
            assert set(fits) == {"c", "t"}
            r = {a: ref[k][chosen[a]][key] for a, k in (("c", "0"), ("t", "1"))}
            want = {"hours": (r["c"][1]["estimate"], r["c"][1]["se"] ** 2,
                              r["c"][1]["df"])}
            for term, j in (("t", 0), ("t:hours", 1)):
                c, t = r["c"][j], r["t"][j]
                want[term] = (t["estimate"] - c["estimate"],
                              t["se"] ** 2 + c["se"] ** 2,
                              float(welch_df(t["se"] ** 2, t["df"],
                                             c["se"] ** 2, c["df"])))
            for row in rows:
                est, var, df = want[row[3]]
                assert row[4] == pytest.approx(est, rel=1e-5, abs=1e-9), row[3]
                assert row[5] == pytest.approx(np.sqrt(var), rel=1e-5), row[3]
                assert row[6] == pytest.approx(df, rel=1e-4), row[3]
                assert row[11]  # converged
                labels = {a: "(1 + hours | participant)" if chosen[a] == "slope"
                          else "(1 | participant)" for a in chosen}
                assert row[15] == f"t: {labels['t']}; c: {labels['c']}"
                single = any(ref[k][chosen[a]]["singular"]
                             for a, k in (("c", "0"), ("t", "1")))
                assert row[12] == single


def test_a_covariate_constant_in_one_arm_is_named(dosed, tmp_path):
    """Each arm fitted on its own cannot estimate a covariate that is constant
    within the arm: the error names the model, the arm and the way out."""
    folder = tmp_path / "c"
    import shutil

    shutil.copytree(dosed, folder)
    p = pd.read_csv(folder / "participants.tsv", sep="\t")
    p.loc[p["group"] == "sham", "sex"] = "F"
    p.to_csv(folder / "participants.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"not all estimable in arm 'sham'.*"
                       r"--variance common"):
        fit_mixed(folder, control="sham", measures=["md"])
    # one covariance for all arms estimates it from the other arm
    res = fit_mixed(folder, control="sham", measures=["md"], variance="common")
    assert res.table["converged"].all()


def test_an_arm_without_within_participant_variation_falls_back(dosed, tmp_path):
    """An arm whose scores are the same at every visit has no variances of its
    own: that model is fitted with one covariance, with a warning naming the
    arm, and its random column says so (no per-arm labels)."""
    import shutil

    folder = tmp_path / "flat"
    shutil.copytree(dosed, folder)
    p = pd.read_csv(folder / "participants.tsv", sep="\t")
    cols = [c for c in p.columns if c.startswith("madrs_")]
    sham = p["group"] == "sham"
    for c in cols:
        p.loc[sham, c] = p.loc[sham, cols[0]]
    p.to_csv(folder / "participants.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match="the madrs model: arm 'sham' has no "
                      "variation within participants"):
        res = fit_mixed(folder, control="sham", measures=["md"])
    t = res.table.set_index("outcome")
    assert not t.loc["madrs", "random"].iloc[0].startswith("ect:")
    common = fit_mixed(folder, control="sham", measures=["md"], variance="common")
    c = common.table[common.table["outcome"] == "madrs"]
    np.testing.assert_allclose(t.loc["madrs", "estimate"], c["estimate"], rtol=1e-9)
    img = res.table[res.table["outcome"] == ""]
    assert img["random"].str.startswith("ect: ").all()
