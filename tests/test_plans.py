"""Analysis plans side by side (dtitool.stats.plans, plans_engine, plans_run)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dtitool.design import load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.plans import READY, Plan, parse_plan, plan_from_dict
from dtitool.stats.plans_engine import plan_tests, plan_variables
from dtitool.stats.plans_run import PAIRED_COLUMNS, PLAN_COLUMNS, plans_power

KET = load_preset("ketamine-rct")


@pytest.fixture(scope="module")
def trial():
    """Two simulated ketamine-rct trials and the plans' batched tests."""
    a = simulate_arrays(KET, rng=3, stop=2)
    plans = [*READY.values(), parse_plan("reported:inference=ols", KET),
             parse_plan("ancova-md:inference=ols", KET),
             parse_plan("composite-pc1:inference=ols", KET)]
    return a, plans, plan_tests(a, plans)


def _frame(a, r):
    v = plan_variables(a)
    m = v["mask"][r]
    d = {"arm": np.where(v["arm"][r] == 0, "ketamine", "saline")[m]}
    for j in range(len(KET.rois)):
        d[f"x{j}"] = v["dmd"][r, :, j][m]
        d[f"mb{j}"] = v["mdb"][r, :, j][m]
    for k in range(len(KET.outcomes)):
        d[f"b{k}"] = v["b"][r, :, k][m]
        d[f"y{k}"] = v["y"][r, :, k][m]
        d[f"resp{k}"] = v["resp"][r, :, k][m]
    return pd.DataFrame(d)


def _pc1(df):
    """The first principal component of dMD from the pooled within-arm covariance."""
    X = df[[f"x{j}" for j in range(len(KET.rois))]].to_numpy()
    C = np.vstack([X[df["arm"] == a] - X[df["arm"] == a].mean(axis=0)
                   for a in ("ketamine", "saline")])
    w = np.linalg.eigh(C.T @ C)[1][:, -1]
    return X @ (w if w.sum() >= 0 else -w)


def _reference(df, plan: Plan, j, k):
    """statsmodels' interaction p of one plan, ROI ``j`` and outcome ``k``."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    df = df.copy()
    if plan.imaging == "composite-mean":
        df["x"] = df[[f"x{i}" for i in range(len(KET.rois))]].mean(axis=1)
    elif plan.imaging == "composite-pc1":
        df["x"] = _pc1(df)
    elif plan.model == "ancova-md":
        df["x"] = df[f"x{j}"] + df[f"mb{j}"]
    else:
        df["x"] = df[f"x{j}"]
    covs = ([f"mb{j}"] if plan.model == "ancova-md" else []) + (
        [f"b{k}"] if plan.baseline else [])
    rhs = " + ".join(["x", *covs])
    if plan.model == "mixed":
        # statsmodels' own REML fit per arm (a tight L-BFGS), on both visits;
        # its p needs Satterthwaite's df, which statsmodels has not: None
        long = pd.DataFrame({
            "pid": np.repeat(np.arange(len(df)), 2),
            "arm": np.repeat(df["arm"].to_numpy(), 2),
            "visit": np.tile([0.0, 1.0], len(df)),
            "score": np.column_stack([df[f"b{k}"], df[f"b{k}"] + df[f"y{k}"]]
                                     ).ravel(),
            "md": np.column_stack([df[f"mb{j}"], df[f"mb{j}"] + df[f"x{j}"]]
                                  ).ravel()})
        long["md"] -= long["md"].mean()
        slopes = []
        for a in ("ketamine", "saline"):
            part = long[long["arm"] == a]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = smf.mixedlm("score ~ visit + md", part, groups=part["pid"]
                                ).fit(reml=True, method=["nm", "bfgs"], maxiter=5000)
            slopes.append(f.fe_params["md"])
        return slopes[0] - slopes[1], None
    if plan.model == "responder":
        X = np.column_stack([(df["arm"] == "ketamine"), (df["arm"] == "saline"),
                             (df["arm"] == "ketamine") * df["x"],
                             (df["arm"] == "saline") * df["x"], df[f"b{k}"]]
                            ).astype(float)
        f = sm.Logit(df[f"resp{k}"].to_numpy(), X).fit(disp=0, tol=1e-12,
                                                       maxiter=200)
        c = np.array([0, 0, 1, -1, 0.0])
        est = c @ f.params
        se = np.sqrt(c @ f.cov_params() @ c)
        return est, 2 * sps.norm.sf(abs(est / se))
    if plan.inference == "welch":
        fits = [smf.ols(f"y{k} ~ {rhs}", df[df["arm"] == a]).fit()
                for a in ("ketamine", "saline")]
        est = fits[0].params["x"] - fits[1].params["x"]
        v = [f.bse["x"] ** 2 for f in fits]
        d = (v[0] + v[1]) ** 2 / (v[0] ** 2 / fits[0].df_resid
                                  + v[1] ** 2 / fits[1].df_resid)
        return est, 2 * sps.t.sf(abs(est) / np.sqrt(v[0] + v[1]), d)
    f = smf.ols(f"y{k} ~ C(arm) + x:C(arm)" + "".join(f" + {c}" for c in covs),
                df).fit()
    t = f.t_test("x:C(arm)[ketamine] - x:C(arm)[saline] = 0")
    return float(t.effect[0]), float(t.pvalue)


@pytest.mark.parametrize("r", [0, 1])
def test_every_plan_equals_statsmodels_on_one_trial(trial, r):
    """Each plan's batched interaction is statsmodels' fit of that trial: p to
    1e-8 (logistic: 1e-6; Welch df from each arm's OLS fit)."""
    a, plans, res = trial
    df = _frame(a, r)
    checked = 0
    for plan in plans:
        got = res[plan.name]
        for i, (roi, outcome, term) in enumerate(got["labels"]):
            assert term == "interaction"
            k = KET.outcome_names.index(outcome)
            j = KET.roi_names.index(roi) if plan.imaging == "roi" else None
            if plan.model == "mixed" and j not in (0, 4):
                continue  # statsmodels' MixedLM is slow: two ROIs suffice
            if plan.model == "responder" and not np.isfinite(got["p"][r, i]):
                # no finite maximum: a saline arm without a responder
                assert df.loc[df["arm"] == "saline", f"resp{k}"].sum() == 0
                continue
            est, p = _reference(df, plan, j, k)
            # statsmodels' own optimiser stops about 1e-5 from the optimum of
            # a mixed model (analyze --plan polishes it: 1e-8, below)
            tol = {"responder": 1e-6, "mixed": 3e-5}.get(plan.model, 1e-8)
            assert got["estimate"][r, i] == pytest.approx(est, rel=tol, abs=tol)
            if p is not None:
                assert got["p"][r, i] == pytest.approx(p, rel=tol, abs=1e-12)
            checked += 1
    assert checked >= 78  # every linear test (the responder ones where finite)


def test_plan_labels_and_options(trial):
    _, _, res = trial
    assert [lab[0] for lab in res["composite-mean"]["labels"]] == [
        "composite-mean", "composite-mean"]
    assert res["primary-roi"]["labels"] == [("L_BA10", "madrs", "interaction"),
                                            ("L_BA10", "qids", "interaction")]
    p = parse_plan("primary-roi:roi=vACC", KET)
    assert p.name == "primary-roi:vACC" and p.rois == ("vACC",)
    assert parse_plan("reported:multiplicity=holm", KET).name == (
        "reported:multiplicity=holm")
    assert "log odds ratio" in READY["responder"].estimand
    assert "within and between participants" in READY["mixed"].estimand
    for bad in ({"imaging": "composite-mean"}, {"baseline": True}):
        with pytest.raises(ValueError, match="the mixed plan models both visits"):
            Plan("m", model="mixed", **{"baseline": False, **bad})
    assert "baseline score held fixed" not in READY["change"].estimand
    for bad, msg in (("nonsense", "unknown plan 'nonsense'"),
                     ("primary-roi:roi=thalamus", "unknown ROI 'thalamus'"),
                     ("reported:multiplicity=bonferroni", "multiplicity must be"),
                     ("responder:inference=ols", "Wald z"),
                     ("composite-mean:roi=vACC", "roi does not apply"),
                     ("reported:colour=red", "unknown option 'colour'"),
                     ("reported:holm", "options are key=value")):
        with pytest.raises(ValueError, match=msg):
            parse_plan(bad, KET)
    q = plan_from_dict({"name": "sap", "base": "primary-roi", "roi": "vACC",
                        "multiplicity": "holm"}, KET)
    assert (q.name, q.rois, q.multiplicity) == ("sap", ("vACC",), "holm")
    with pytest.raises(ValueError, match="base must be one of"):
        plan_from_dict({"name": "x", "base": "lasso"}, KET)


@pytest.fixture(scope="module")
def small_run():
    plans = [READY["reported"], READY["change"], READY["composite-mean"],
             parse_plan("reported:multiplicity=holm", KET)]
    return plans_power(KET, plans, replicates=300, rng=5, chunk_size=128)


def test_plans_power_tables(small_run):
    table, paired = small_run
    assert list(table.columns) == PLAN_COLUMNS
    assert list(paired.columns) == PAIRED_COLUMNS
    again = plans_power(KET, [READY["reported"], READY["change"],
                              READY["composite-mean"],
                              parse_plan("reported:multiplicity=holm", KET)],
                        replicates=300, rng=5, chunk_size=300)
    pd.testing.assert_frame_equal(table, again[0])  # chunking changes nothing
    any_rows = table[table["roi"] == "any"].set_index(["plan", "outcome"])
    # no multiplicity over seven ROIs: the family-wise error is far above alpha,
    # flagged and not ranked; Holm keeps it
    rep = any_rows.loc[("reported", "madrs")]
    assert rep["size"] > 0.15 and rep["flag"].startswith("size above")
    assert pd.isna(rep["rank"])
    holm = any_rows.loc[("reported:multiplicity=holm", "madrs")]
    assert holm["size"] < 0.09 and pd.notna(holm["rank"])
    # the unadjusted "any" power is at least the Holm one, trial by trial
    assert rep["power"] >= holm["power"]
    # paired differences are the differences of the marginal rates
    row = paired[(paired.plan_a == "reported") & (paired.plan_b == "change")
                 & (paired.outcome == "madrs")].iloc[0]
    assert row["power_difference"] == pytest.approx(row["power_a"] - row["power_b"])
    assert row["power_difference_ci_low"] <= row["power_difference"] <= row[
        "power_difference_ci_high"]
    # per-test rows: coverage near 95 %, the truth from the pooled large trial
    tests = table[table["roi"] != "any"]
    assert tests["coverage"].between(0.88, 0.99).all()
    assert (tests["true_value_mcse"] > 0).all()


def test_reported_truth_agrees_with_the_power_engines(small_run):
    """The pooled large trial's estimate of the reported interaction agrees
    with the change-score power engine's (another large sample: both within
    4 of their combined Monte Carlo SEs)."""
    from dtitool.stats.design_analysis import true_values

    table, _ = small_run
    rep = table[(table["plan"] == "reported") & (table["roi"] != "any")]
    value, se = true_values(KET, rng=11)
    for r in rep.itertuples():
        j, k = KET.roi_names.index(r.roi), KET.outcome_names.index(r.outcome)
        assert abs(r.true_value - value[j, k, 0]) <= 4 * np.hypot(
            r.true_value_mcse, se[j, k, 0])


def test_cli_plans_writes_repeats_and_refuses(tmp_path, capsys):
    from dtitool.cli import main

    out = tmp_path / "p"
    assert main(["plans", "--preset", "ketamine-rct", "--plan", "reported",
                 "--plan", "composite-mean", "--plan", "primary-roi:roi=vACC",
                 "--replicates", "120", "--seed", "4", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "analysis plans on 120 trials of ketamine-rct" in cap.out
    assert "size above its band" in cap.err  # seven unadjusted tests per outcome
    t = pd.read_csv(out / "plans.tsv", sep="\t")
    assert set(t["plan"]) == {"reported", "composite-mean", "primary-roi:vACC"}
    assert (out / "plans.png").stat().st_size > 10_000
    _check_report(out / "plans.html", t)
    # the written design repeats the run: the same table
    again = tmp_path / "q"
    assert main(["plans", "--design", str(out / "design.toml"), "--out", str(again),
                 "--quiet"]) == 0
    for name in ("plans.tsv", "plans.html"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    # [[plans]] tables in a design file
    f = tmp_path / "sap.toml"
    f.write_text('base = "ketamine-rct"\n\n[[plans]]\nname = "sap"\nbase = '
                 '"primary-roi"\nroi = "R_amygdala"\n', encoding="utf-8")
    assert main(["plans", "--design", str(f), "--replicates", "60", "--seed", "1",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    s = pd.read_csv(tmp_path / "s" / "plans.tsv", sep="\t")
    assert set(s["plan"]) == {"sap"} and set(s["roi"]) == {"R_amygdala", "any"}
    capsys.readouterr()
    for bad, msg in ((["--plan", "lasso"], "unknown plan 'lasso'"),
                     (["--preset", "ect-course"], "two-visit design")):
        assert main(["plans", *bad, "--replicates", "10",
                     "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def _check_report(path, table):
    """plans.html: one page without external resources, the figure embedded, and
    every plan's family row per outcome in the ranked table with its flag."""
    import html
    import re

    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://|//[a-z]", re.sub(
        r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    assert not re.search(r'(?:src|href)="(?!data:image/png;base64,|#)', page)
    assert page.count("data:image/png;base64,") == 1
    ranked = page.split("Plans ranked by power")[2].split("<tbody>")[1].split(
        "</tbody>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", ranked)
    fam = table[table["roi"] == "any"]
    assert len(rows) == len(fam)
    for r in fam.itertuples():
        cells = [re.sub(r"<[^>]+>", "", c) for c in
                 re.findall(r"<td[^>]*>(.*?)</td>", next(
                     x for x in rows if f">{r.plan}<" in x and f">{r.outcome}<" in x))]
        assert f"{r.power:.3f}" in cells and f"{r.size:.3f}" in cells
        assert (r.flag if isinstance(r.flag, str) else "") in cells
    for plan in set(table["plan"]):
        assert page.count(f">{plan}<") >= 3  # estimands, ranking, every test
    for estimand in set(table["estimand"].dropna()) - {""}:
        if not estimand.startswith("any of the plan"):
            assert html.escape(estimand) in page  # each plan's estimand stated


def test_plans_report_refuses_plans_not_in_the_table(small_run):
    from dtitool.report.plots_plans import plans_report

    table, paired = small_run
    with pytest.raises(ValueError, match="plan 'responder' has no rows"):
        plans_report(table, paired, [READY["reported"], READY["responder"]], KET)


def _changes(a, r):
    """Replicate ``r`` of simulated arrays as compute_changes' table."""
    names = KET.names
    b, p = names.baseline, names.primary
    rows = []
    for i in range(KET.n):
        rec = {"participant_id": f"sub-{i:03d}", "group": KET.arms[a.arm[r, i]]}
        for k, o in enumerate(KET.outcome_names):
            rec[f"{o}_{b}"] = float(a.scores[r, i, k, 0])
            rec[f"{o}_{p}"] = float(a.scores[r, i, k, a.primary])
            rec[f"d_{o}"] = rec[f"{o}_{p}"] - rec[f"{o}_{b}"]
        for j, roi in enumerate(KET.roi_names):
            mb, mp = a.md[r, i, j, 0], a.md[r, i, j, a.primary]
            rows.append({**rec, "roi": roi, f"md_{b}": mb, f"md_{p}": mp,
                         "d_md": mp - mb})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("r", [0, 1])
def test_analyze_plan_fits_equal_the_engine(trial, r):
    """``analyze --plan``'s statsmodels fits of one dataset give the batched
    engine's p-values to 1e-8 (logistic 1e-6), plan by plan."""
    from dtitool.stats.plans_fit import fit_plans

    a, plans, res = trial
    got = fit_plans(_changes(a, r), plans, KET.names)
    n = 0
    for plan in plans:
        want = res[plan.name]
        rows = got[got["plan"] == plan.name]
        assert [(x.roi, x.outcome, x.term) for x in rows.itertuples()] == want["labels"]
        tol = 1e-6 if plan.model == "responder" else 1e-8
        for i, x in enumerate(rows.itertuples()):
            if not np.isfinite(want["p"][r, i]):
                assert not np.isfinite(x.p)
                continue
            assert x.p == pytest.approx(want["p"][r, i], rel=tol, abs=1e-12)
            assert x.estimate == pytest.approx(want["estimate"][r, i], rel=tol,
                                               abs=tol)
            assert x.df == pytest.approx(want["df"][r, i], rel=1e-8)
            n += 1
    assert n >= 78


def test_cli_analyze_plan(tmp_path, capsys):
    """``analyze --plan reported`` is the reported analysis' interaction (the
    default welch models of ``analyze``); options a plan sets itself are
    refused, and so is --plan with the mixed models."""
    from dtitool.cli import main

    cohort = tmp_path / "c"
    assert main(["simulate", "--preset", "ketamine-rct", "--seed", "3", "--out",
                 str(cohort)]) == 0
    assert main(["analyze", str(cohort), "--out", str(tmp_path / "std.tsv")]) == 0
    assert main(["analyze", str(cohort), "--plan", "reported", "--plan",
                 "composite-mean", "--out", str(tmp_path / "plans.tsv")]) == 0
    out = capsys.readouterr().out
    assert "analysis plans on" in out
    std = pd.read_csv(tmp_path / "std.tsv", sep="\t")
    got = pd.read_csv(tmp_path / "plans.tsv", sep="\t")
    rep = got[got["plan"] == "reported"].set_index(["roi", "outcome"])
    inter = std[std["term"] == "interaction"].set_index(["roi", "outcome"])
    assert len(rep) == 14
    for key, r in rep.iterrows():
        assert r["p"] == pytest.approx(inter.loc[key, "p"], rel=1e-6)
    assert set(got.loc[got["plan"] == "composite-mean", "roi"]) == {"composite-mean"}
    for extra, msg in ((["--inference", "ols"], "--inference does not apply with "
                        "--plan"),
                       (["--model", "mixed"], "--plan is an option of the "
                        "change-score models")):
        assert main(["analyze", str(cohort), "--plan", "reported", *extra,
                     "--out", str(tmp_path / "x" / "r.tsv")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_responder_fits_equal_the_full_design_newton():
    """The responder engine (each arm's rows gathered, padded where arm sizes
    differ, a log-odds start, separated fits settled before any step) gives
    logistic_batch's plain full-design Newton-Raphson from zero, fit by fit:
    the same fits without a finite maximum, estimates to 1e-8 and variances
    to 1e-7, with and without the baseline covariate."""
    from dtitool.stats.design_variants import null_counterpart
    from dtitool.stats.plans_logistic import logistic_batch, responder_tests

    pairs = [(j, k) for k in range(2) for j in range(7)]
    checked = failed = 0
    for design, seed in ((KET, 8), (null_counterpart(KET), 9)):
        v = plan_variables(simulate_arrays(design, rng=seed, stop=40))
        # one participant moved to the other arm in the last trial: arm sizes
        # differ between trials (the padded path)
        uneven = dict(v, arm=v["arm"].copy())
        uneven["arm"][-1, 0] = 1 - uneven["arm"][-1, 0]
        for w in (v, uneven):
            arm = w["arm"]
            ind = [(arm == a).astype(float) for a in range(2)]
            for baseline in (True, False):
                got = responder_tests(w, pairs, 2, baseline)
                for (j, k), (est, var, df, ok) in zip(pairs, got, strict=True):
                    cols = ind + [i * w["dmd"][..., j] for i in ind]
                    if baseline:
                        cols.append(w["b"][..., k])
                    coef, cov, ref_ok = logistic_batch(
                        np.stack(cols, axis=-1), w["resp"][..., k], w["mask"],
                        groups=range(2))
                    assert (ok == ref_ok).all()
                    assert np.isinf(df).all()
                    ref = coef[:, 2] - coef[:, 3]
                    rv = cov[:, 2, 2] + cov[:, 3, 3] - 2 * cov[:, 2, 3]
                    np.testing.assert_allclose(est[ok, 0], ref[ok], rtol=1e-8,
                                               atol=1e-10)
                    np.testing.assert_allclose(var[ok, 0], rv[ok], rtol=1e-7)
                    assert np.isnan(est[~ok]).all()
                    checked += int(ok.sum())
                    failed += int((~ok).sum())
    assert checked >= 1000 and failed >= 100
    # one very large trial (as the pooled truth): few fits of many rows, whose
    # rows the engine folds into columns
    a = simulate_arrays(KET, rng=10, stop=80)
    w = plan_variables(a)
    w = {k: x.reshape(1, -1, *x.shape[2:]) for k, x in w.items()}
    got = responder_tests(w, pairs, 2, True)
    ind = [(w["arm"] == a).astype(float) for a in range(2)]
    for (j, k), (est, var, _, ok) in zip(pairs, got, strict=True):
        coef, cov, ref_ok = logistic_batch(
            np.stack(ind + [i * w["dmd"][..., j] for i in ind] + [w["b"][..., k]],
                     axis=-1), w["resp"][..., k], w["mask"], groups=range(2))
        assert ok[0] and ref_ok[0]
        assert est[0, 0] == pytest.approx(coef[0, 2] - coef[0, 3], rel=1e-8)
        assert var[0, 0] == pytest.approx(
            cov[0, 2, 2] + cov[0, 3, 3] - 2 * cov[0, 2, 3], rel=1e-7)


def _correlated_null():
    """The null preset with reliable, strongly correlated ROI changes: its seven
    tests of an outcome are correlated, so max-T's critical p is above
    Bonferroni's (Holm's first step)."""
    import dataclasses

    d = load_preset("null")
    J = len(d.rois)
    rc = tuple(tuple(1.0 if i == j else 0.9 for j in range(J)) for i in range(J))
    return d.replace(correlations=dataclasses.replace(d.correlations, roi_change=rc),
                     rois=tuple(dataclasses.replace(r, cv=r.cv / 10)
                                for r in d.rois))


def test_maxt_plan_keeps_its_size_and_beats_holm_on_correlated_tests():
    """A max-T plan's family-wise size (out of sample) is within the exact
    binomial band; where the tests correlate its critical p is above alpha / 7
    and it rejects more often than Holm on the same trials."""
    d = _correlated_null()
    plans = [parse_plan("reported:multiplicity=maxt", d),
             parse_plan("reported:multiplicity=holm", d)]
    table, paired = plans_power(d, plans, replicates=2000, rng=4)
    fam = table[table["roi"] == "any"].set_index(["plan", "outcome"])
    maxt, holm = plans[0].name, plans[1].name
    for outcome in d.outcome_names:
        m, h = fam.loc[(maxt, outcome)], fam.loc[(holm, outcome)]
        assert bool(m["size_ok"]), m["size"]
        assert m["critical_p"] > 1.1 * 0.05 / len(d.rois)
        assert np.isnan(h["critical_p"])
        # Holm's "any" is min p <= alpha / 7: a subset of max-T's rejections
        assert m["power"] >= h["power"] and m["size"] >= h["size"] - 0.01
        row = paired[(paired.plan_a == maxt) & (paired.outcome == outcome)].iloc[0]
        assert row["power_difference"] >= 0
    assert fam.loc[maxt, "power"].sum() > fam.loc[holm, "power"].sum() + 0.01


def test_maxt_critical_p_and_out_of_sample_size():
    """The critical p is the rank floor(alpha (R + 1)) null draw; the null
    trials' rejections use the other half's draws (in sample the rate would
    be alpha by construction)."""
    from dtitool.stats.plans_run import _maxt_any

    rng = np.random.default_rng(0)
    null_min = rng.random((400, 4)) / 7
    p = rng.random((50, 3))
    rej, crit, nrej = _maxt_any(p, null_min, 0.05)
    k = int(np.floor(0.05 * (null_min.size + 1))) - 1
    assert crit == np.sort(null_min.ravel())[k]
    np.testing.assert_array_equal(rej, p.min(axis=1) < crit)
    for use, fit in ((slice(0, None, 2), slice(1, None, 2)),
                     (slice(1, None, 2), slice(0, None, 2))):
        c = np.sort(null_min[fit].ravel())[int(np.floor(0.05 * (800 + 1))) - 1]
        np.testing.assert_array_equal(nrej[use], null_min[use, 0] < c)
    # a failed fit's p (NaN) never rejects
    q = p.copy()
    q[:, :] = np.nan
    assert not _maxt_any(q, null_min, 0.05)[0].any()


def test_maxt_plan_errors_and_chunks():
    with pytest.raises(ValueError, match="multiplicity must be one of none, holm, "
                       "bh, maxt; got 'maxT'"):
        parse_plan("reported:multiplicity=maxT", KET)
    plan = parse_plan("primary-roi:multiplicity=maxt", KET)
    with pytest.raises(ValueError, match="critical p from the null counterpart"):
        plans_power(KET, [plan], replicates=10, null=False)
    # the permutation draws are per trial: chunking changes nothing
    plans = [parse_plan("composite-mean:multiplicity=maxt", KET), plan]
    a, _ = plans_power(KET, plans, replicates=150, rng=2, chunk_size=64)
    b, _ = plans_power(KET, plans, replicates=150, rng=2, chunk_size=150)
    pd.testing.assert_frame_equal(a, b)
    assert a["critical_p"].notna().sum() == 4
    from dtitool.cli.plans import plans_summary

    text = plans_summary(a, KET, 150)
    assert text.count("(maxt, critical p 0.0") == 4


@pytest.mark.slow  # about 3 s: the default suite stays under 5 minutes
def test_pooled_mixed_plan_equals_analyze():
    """``mixed:inference=ols`` (one model of both arms, arm:MD tested): the
    batched engine gives analyze --plan's MixedLM p and estimate to 1e-8."""
    from dtitool.stats.plans_fit import fit_plans

    a = simulate_arrays(KET, rng=3, stop=1)
    plan = parse_plan("mixed:inference=ols", KET)
    want = plan_tests(a, [plan])[plan.name]
    got = fit_plans(_changes(a, 0), [plan], KET.names)
    assert len(got) == 14
    np.testing.assert_allclose(got["p"], want["p"][0], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(got["estimate"], want["estimate"][0], rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(got["df"], want["df"][0], rtol=1e-8)
