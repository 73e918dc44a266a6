"""dtitool analyze on a cohort with MRS tables: the unit, the fit-quality rule.

The cohort is simulated (examples/designs/drug-placebo.toml); its GABA values
and Gannet fit errors are made up here, written in Gannet's format by
dtitool.mrs's writer, imported with ``dtitool mrs-import`` and copied beside
``roi_md.tsv``, as a trial's real Gannet output would be. The estimates are
checked against a statsmodels fit on the known values with the excluded
spectra removed by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.mrs import (
    DEFAULT_LIMITS,
    apply_quality,
    write_gannet,
    write_lcmodel_table,
)
from dtitool.tables import check_tables

DESIGN = Path(__file__).resolve().parents[1] / "examples" / "designs" / \
    "drug-placebo.toml"
INTERACTION = "C(group, Treatment('placebo'))[T.drug]:d_gaba"


def run(*argv) -> tuple[int, str, str]:
    """The command line's exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A simulated cohort with roi_gaba.tsv from Gannet's format.

    Known exclusions at the default limit (fit error above 12 %): drug
    participants D0 (pre), D1 (week1) and D2 (both spectra), placebo P0
    (week1, 12.001 %) and P1 (pre): 6 spectra (drug 4, placebo 2), 5
    participants (drug 3, placebo 2). D3's pre spectrum has exactly 12 %:
    kept. P2 has no week1 spectrum at all: a missing scan, not fit quality.
    """
    root = tmp_path_factory.mktemp("mrs_cohort")
    folder = root / "cohort"
    code, _, err = run("simulate", "--design", DESIGN, "--seed", "3", "--out",
                       folder, "--quiet")
    assert code == 0, err
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype={"group": str})
    rng = np.random.default_rng(11)
    n = len(p)
    # Gannet prints 3 decimals: the known values are those printed
    pre = np.round(rng.normal(3.0, 0.3, n), 3)
    dscore = (p["hamd_week1"] - p["hamd_pre"]).fillna(0).to_numpy(float)
    post = np.round(pre + 0.02 * (dscore - dscore.mean())
                    + rng.normal(0, 0.15, n), 3)
    err_pre = np.round(rng.uniform(3, 11, n), 3)
    err_post = np.round(rng.uniform(3, 11, n), 3)
    drug = np.flatnonzero(p["group"] == "drug")
    placebo = np.flatnonzero(p["group"] == "placebo")
    err_pre[drug[0]] = 14.0
    err_post[drug[1]] = 25.0
    err_pre[drug[2]], err_post[drug[2]] = 13.0, 12.5
    err_pre[drug[3]] = 12.0
    err_post[placebo[0]] = 12.001
    err_pre[placebo[1]] = 30.0
    rows = []
    for i, pid in enumerate(p["participant_id"]):
        for visit, value, fe in (("pre", pre[i], err_pre[i]),
                                 ("week1", post[i], err_post[i])):
            if visit == "week1" and i == placebo[2]:
                continue  # no follow-up spectrum
            rows.append({"file": f"{pid}_ses-{visit}_acq-acc_MEGA.7",
                         "metabolite": "GABA", "scale": "water",
                         "value": value, "quality": fe})
    write_gannet(root / "Gannet_output.csv", pd.DataFrame(rows))
    code, _, err = run("mrs-import", "--format", "gannet", "--out",
                         root / "mrs", root / "Gannet_output.csv")
    assert code == 0, err
    for ext in ("tsv", "json"):
        shutil.copy(root / "mrs" / f"roi_gaba.{ext}", folder)
    known = pd.DataFrame({"participant_id": p["participant_id"], "pre": pre,
                          "week1": post, "err_pre": err_pre,
                          "err_week1": err_post})
    known.loc[placebo[2], "week1"] = np.nan
    return {"folder": folder, "root": root, "participants": p, "known": known,
            "drug": drug, "placebo": placebo}


@pytest.fixture(scope="module")
def analysed(cohort, tmp_path_factory):
    """``analyze --model change --inference ols`` with the default limits."""
    out = tmp_path_factory.mktemp("mrs_results") / "results.tsv"
    code, text, err = run("analyze", cohort["folder"], "--out", out, "--model",
                          "change", "--inference", "ols")
    assert code == 0, err
    table = pd.read_csv(out, sep="\t")
    side = json.loads(out.with_suffix(".json").read_text())
    return {"table": table, "text": text, "err": err, "sidecar": side}


def _gaba(table, outcome="hamd", term="interaction"):
    t = table[(table["measure"] == "gaba") & (table["outcome"] == outcome)
              & (table["term"] == term)]
    assert len(t) == 1
    return t.iloc[0]


def test_imported_table_is_what_analyze_reads(cohort):
    t = pd.read_csv(cohort["folder"] / "roi_gaba.tsv", sep="\t")
    assert t.columns.tolist() == ["participant_id", "session", "roi", "gaba",
                                  "unit", "fit_error"]
    assert set(t["unit"]) == {"i.u."} and len(t) == 2 * 60 - 1


def test_excluded_spectra_are_counted_per_table_model_and_arm(analysed):
    t = analysed["table"]
    assert t.columns[-3:].tolist() == ["quality_rule", "n_dropped_quality",
                                       "dropped_quality_by_arm"]
    for outcome in ("hamd", "bdi"):
        row = _gaba(t, outcome)
        assert row["quality_rule"] == "fit_error > 12%"
        assert row["n_dropped_quality"] == 5
        assert row["dropped_quality_by_arm"] == "drug 3, placebo 2"
    # the missing follow-up spectrum is a missing scan, the rest fit quality
    reasons = _gaba(t)["missing_reasons"]
    assert reasons.startswith("no week1 scan 1, fit quality (fit_error > 12%) 5")
    # MD has no rule: the quality columns are empty on its rows
    md = t[t["measure"] == "md"]
    assert md[["quality_rule", "n_dropped_quality",
               "dropped_quality_by_arm"]].isna().all().all()
    # the summary says the rule is the default, and what it removed per arm
    text = analysed["text"]
    assert ("fit quality of gaba: fit_error > 12% (the default; --max-fit-error "
            "sets it): 6 of 119 spectra excluded as missing data (drug 4, "
            "placebo 2; 5 participants)") in text
    assert "fit quality (fit_error > 12%) 5" in text
    # an excluded baseline spectrum is not reported as a follow-up without one
    assert "without a pre scan" not in analysed["err"]
    side = analysed["sidecar"]
    assert "6 of 119 spectra excluded" in side["n_dropped_quality"]["Description"]
    assert side["n_dropped_quality"]["Units"] == "participants"


def test_estimates_equal_statsmodels_without_the_excluded_spectra(cohort,
                                                                  analysed):
    import statsmodels.formula.api as smf

    k, p = cohort["known"], cohort["participants"]
    f = k.merge(p, on="participant_id")
    bad = (f["err_pre"] > 12) | (f["err_week1"] > 12)
    assert int(bad.sum()) == 5
    f = f.loc[~bad & f["week1"].notna()]
    f = f.assign(d_gaba=f["week1"] - f["pre"],
                 d_score=f["hamd_week1"] - f["hamd_pre"],
                 baseline_score=f["hamd_pre"])
    fit = smf.ols("d_score ~ C(group, Treatment('placebo')) * d_gaba "
                  "+ baseline_score", data=f).fit()
    t = analysed["table"]
    row = _gaba(t)
    assert row["n"] == fit.nobs
    assert row["n_dropped"] == 60 - fit.nobs
    for col, want in (("estimate", fit.params[INTERACTION]),
                      ("se", fit.bse[INTERACTION]),
                      ("p", fit.pvalues[INTERACTION]), ("df", fit.df_resid)):
        assert row[col] == pytest.approx(want, rel=1e-8, abs=1e-12), col
    slope = _gaba(t, term="slope_placebo")
    assert slope["estimate"] == pytest.approx(fit.params["d_gaba"], rel=1e-8)
    assert slope["se"] == pytest.approx(fit.bse["d_gaba"], rel=1e-8)


def test_the_unit_is_reported(analysed):
    assert "Estimates: score points per 1 i.u. of gaba change" in analysed["text"]
    levels = analysed["sidecar"]["measure"]["Levels"]
    assert levels["gaba"].startswith("gaba (roi_gaba.tsv, in i.u.)")
    assert "per 1 i.u. of gaba change" in levels["gaba"]
    assert "1e-5 mm^2/s" in levels["md"]
    assert "measure" in analysed["sidecar"]["estimate"]["Units"]


def test_a_given_limit_replaces_the_default(cohort, tmp_path):
    code, text, err = run("analyze", cohort["folder"], "--out",
                          tmp_path / "r.tsv", "--model", "change",
                          "--max-fit-error", "13")
    assert code == 0, err
    # 14, 25, 30 % stay out; 13 and 12.5 % (D2) and 12.001 % (P0) come back
    assert ("fit quality of gaba: fit_error > 13%: 3 of 119 spectra excluded as "
            "missing data (drug 2, placebo 1; 3 participants)") in text
    row = _gaba(pd.read_csv(tmp_path / "r.tsv", sep="\t"))
    assert (row["quality_rule"], row["n_dropped_quality"]) == ("fit_error > 13%", 3)
    assert row["dropped_quality_by_arm"] == "drug 2, placebo 1"


def _one_line_error(argv, match):
    code, out, err = run(*argv)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("dtitool analyze: error:"), err
    assert match in err, err
    return err


@pytest.mark.parametrize(("extra", "match"), [
    (["--max-crlb", "20"], "--max-crlb 20 was given but no roi_<measure>.tsv in "),
    (["--max-crlb", "20"], "(the tables have fit_error: --max-fit-error sets its "
                           "limit)"),
    (["--max-fit-error", "0"], "--max-fit-error must be a percentage above 0 "
                               "(e.g. 12); got 0"),
    (["--max-fit-error", "-3"], "got -3"),
    (["--max-fit-error", "nan"], "got nan"),
])  # fmt: skip
def test_bad_limits_are_one_line_and_exit_2(cohort, tmp_path, extra, match):
    model = [] if "--model" in extra else ["--model", "change"]
    _one_line_error(["analyze", cohort["folder"], "--out", tmp_path / "r.tsv",
                     *model, *extra], match)
    assert not (tmp_path / "r.tsv").exists()


def _edited(cohort, tmp_path, edit) -> Path:
    folder = tmp_path / "cohort"
    shutil.copytree(cohort["folder"], folder)
    t = pd.read_csv(folder / "roi_gaba.tsv", sep="\t", dtype=str,
                    keep_default_na=False)
    edit(t)
    t.to_csv(folder / "roi_gaba.tsv", sep="\t", index=False)
    return folder


def _cell(column, rows, value):
    def edit(t):
        t[column] = np.where(t.index.isin(rows), value, t[column])
    return edit


@pytest.mark.parametrize(("edit", "match"), [
    (_cell("unit", [5, 9], "mM"), "holds values in 2 units: i.u. (117 rows), mM "
                                  "(2 rows); a table must have one unit"),
    (_cell("unit", [7], ""), "has an empty unit for"),
    (_cell("fit_error", [3], "bad"), "fit_error must be a percentage of 0 or more "
                                     "(or empty: not reported); got 'bad'"),
    (_cell("fit_error", [3], "-1"), "got -1 for "),
])  # fmt: skip
def test_bad_mrs_tables_are_one_line_and_exit_2(cohort, tmp_path, edit, match):
    folder = _edited(cohort, tmp_path, edit)
    _one_line_error(["analyze", folder, "--out", tmp_path / "r.tsv", "--model",
                     "change"], match)


def test_unrated_spectra_are_kept_and_said(cohort, tmp_path):
    # an empty fit_error (the tool reported none): kept, and counted
    folder = _edited(cohort, tmp_path, _cell("fit_error", [10, 11], ""))
    code, text, err = run("analyze", folder, "--out", tmp_path / "r.tsv",
                          "--model", "change")
    assert code == 0, err
    assert "2 spectra without a fit_error value kept" in text


def test_too_few_left_names_the_rule(cohort, tmp_path):
    code, _, err = run("analyze", cohort["folder"], "--out", tmp_path / "r.tsv",
                       "--model", "change", "--max-fit-error", "4")
    assert code == 2 and err.count("\n") == 1
    assert "complete data" in err and "fit quality of gaba: fit_error > 4%" in err


def test_a_crlb_table_from_lcmodel(cohort, tmp_path):
    # LCModel tables: the CRLB (%SD) rule, default 20 %
    folder = tmp_path / "cohort"
    shutil.copytree(cohort["folder"], folder)
    (folder / "roi_gaba.tsv").unlink()
    (folder / "roi_gaba.json").unlink()
    p = cohort["participants"]
    rng = np.random.default_rng(5)
    tables = tmp_path / "lcm"
    tables.mkdir()
    sd = {}
    for i, pid in enumerate(p["participant_id"]):
        for visit in ("pre", "week1"):
            sd[(pid, visit)] = 45 if (i, visit) in ((0, "pre"), (7, "week1")) \
                else 21 if (i, visit) == (9, "pre") else 20 if i == 12 else 6
            write_lcmodel_table(
                tables / f"{pid}_ses-{visit}_voxel-acc_svs.table",
                {"Glu+Gln": float(rng.uniform(8, 12)), "Cr+PCr": 8.0},
                crlb={"Glu+Gln": sd[(pid, visit)], "Cr+PCr": 2})
    code, _, err = run("mrs-import", "--format", "lcmodel", "--metabolites",
                       "glx", "--unit", "water", "--out", tmp_path / "mrs",
                       *sorted(tables.iterdir()))
    assert code == 0, err
    shutil.copy(tmp_path / "mrs" / "roi_glx.tsv", folder)
    code, text, err = run("analyze", folder, "--out", tmp_path / "r.tsv",
                          "--model", "change")
    assert code == 0, err
    g = p["group"].to_numpy()
    arms = {a: sum(g[i] == a for i in (0, 7, 9)) for a in ("drug", "placebo")}
    assert (f"fit quality of glx: crlb > 20% (the default; --max-crlb sets it): "
            f"3 of 120 spectra excluded as missing data (drug {arms['drug']}, "
            f"placebo {arms['placebo']}; 3 participants)") in text
    assert "score points per 1 mM of glx change" in text
    row = pd.read_csv(tmp_path / "r.tsv", sep="\t").query(
        "measure == 'glx' and outcome == 'hamd' and term == 'interaction'").iloc[0]
    assert row["missing_reasons"] == "fit quality (crlb > 20%) 3"
    assert row["n"] == 57
    # --max-fit-error names the column this folder has
    _one_line_error(["analyze", folder, "--out", tmp_path / "r2.tsv", "--model",
                     "change", "--max-fit-error", "12"],
                    "(the tables have crlb: --max-crlb sets its limit)")


# ------------------------------------------------------------------ the API


def test_apply_quality_api(cohort):
    path = cohort["folder"] / "roi_gaba.tsv"
    kept, report = apply_quality(path)
    assert DEFAULT_LIMITS == {"crlb": 20.0, "fit_error": 12.0}
    assert [r.text for r in report.rules] == ["fit_error > 12%"]
    assert report.rules[0].default and report.n_spectra == 119
    assert report.n_excluded == 6 and len(kept) == 113
    assert report.excluded["reason"].unique().tolist() == [
        "fit quality (fit_error > 12%)"]
    assert report.by_arm(cohort["participants"], ("drug", "placebo")) == {
        "drug": 4, "placebo": 2}
    # 12 % exactly is kept: the rule is "above"
    d3 = cohort["participants"]["participant_id"][cohort["drug"][3]]
    assert ((kept["participant_id"] == d3) & (kept["session"] == "pre")).any()
    assert kept.attrs["quality_rules"] == ("fit_error > 12%",)
    assert len(kept.attrs["quality_excluded"]) == 6
    kept, report = apply_quality(path, max_fit_error=100)
    assert report.n_excluded == 0 and not report.rules[0].default


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"max_crlb": 20}, ValueError,
     r"max_crlb=20 was given but the MRS table \(gaba\) has no crlb column; it "
     r"has fit_error: give max_fit_error"),
    ({"max_fit_error": -1}, ValueError, r"max_fit_error must be a percentage "
                                        r"above 0 \(e.g. 12\); got -1"),
    ({"max_fit_error": "12"}, TypeError, r"max_fit_error must be a number"),
    ({"max_fit_error": True}, TypeError, r"max_fit_error must be a number"),
])  # fmt: skip
def test_apply_quality_refusals(cohort, kwargs, error, match):
    t = pd.read_csv(cohort["folder"] / "roi_gaba.tsv", sep="\t")
    with pytest.raises(error, match=match):
        apply_quality(t, **kwargs)


def test_an_unruled_quality_column_is_a_warning(cohort):
    folder = cohort["folder"]
    t = pd.read_csv(folder / "roi_gaba.tsv", sep="\t")
    with pytest.warns(UserWarning, match=r"has a fit-quality column \(fit_error\) "
                                         r"but no quality rule was applied"):
        check_tables(folder / "participants.tsv", t, measure="gaba")
    kept, _ = apply_quality(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, checked = check_tables(folder / "participants.tsv", kept,
                                  measure="gaba")
    assert checked.attrs["measure_scale"] == (1.0, "i.u.")
    assert checked.attrs["quality_rules"] == ("fit_error > 12%",)


def test_the_design_unit_must_match(cohort):
    import tomllib

    from dtitool.design import design_from_dict

    d = tomllib.loads(DESIGN.read_text())
    d["rois"]["thalamus"]["measures"] = {"gaba": {
        "mean": 3.0, "sd": 0.3, "cv": 0.05, "change_mean": 0.0, "change_sd": 0.1,
        "unit": "mM", "scale": 0.1}}
    design = design_from_dict(d)
    kept, _ = apply_quality(cohort["folder"] / "roi_gaba.tsv")
    with pytest.raises(ValueError, match=r"ROI gaba table is in i.u. but the design "
                                         r"states gaba in mM"):
        check_tables(cohort["folder"] / "participants.tsv", kept, design=design,
                     measure="gaba")


def test_mixed_models_apply_the_rule_too(cohort, tmp_path):
    """The mixed models (visit as a factor: two visits) lose the same spectra."""
    import statsmodels.formula.api as smf

    out = tmp_path / "mixed.tsv"
    code, text, err = run("analyze", cohort["folder"], "--out", out, "--model",
                          "mixed", "--time", "visit", "--variance", "common")
    assert code == 0, err
    assert "fit-quality column" not in err  # the rule was applied
    assert ("fit quality of gaba: fit_error > 12% (the default; --max-fit-error "
            "sets it): 6 of 119 spectra excluded") in text
    t = pd.read_csv(out, sep="\t")
    g = t[(t["measure"] == "gaba")].set_index("term")
    # the same model fitted by statsmodels on the kept spectra
    k = cohort["known"]
    p = cohort["participants"].set_index("participant_id")
    rows = []
    for r in k.itertuples():
        for visit in ("pre", "week1"):
            v, e = getattr(r, visit), getattr(r, f"err_{visit}")
            if np.isfinite(v) and e <= 12:
                rows.append({"y": v, "pid": r.participant_id, "visit": visit,
                             "group": p.loc[r.participant_id, "group"],
                             "age": p.loc[r.participant_id, "age"],
                             "sex": p.loc[r.participant_id, "sex"]})
    df = pd.DataFrame(rows)
    fit = smf.mixedlm("y ~ C(group, Treatment('placebo')) * C(visit) + age + "
                      "C(sex)", df, groups="pid").fit(reml=True)
    want = fit.fe_params["C(group, Treatment('placebo'))[T.drug]:C(visit)[T.week1]"]
    # gaba is modelled per 1 i.u.; statsmodels' default stopping is looser
    # than analyze's polished optimum, hence 1e-5
    assert g.loc["drug:week1", "estimate"] == pytest.approx(want, rel=1e-5)
    assert g.loc["drug:week1", "n_obs"] == len(df)
