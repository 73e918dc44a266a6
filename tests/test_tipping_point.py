"""The tipping point: per-arm deltas in SDs of score change, over a grid of arms.

References: the multiple-imputation analysis itself (delta 0 is it, exactly);
statsmodels fits of the completed datasets with the imputed scores shifted by
hand, pooled by Rubin's rules (a per-arm delta is that many SDs of the arm's
observed score change, computed from the participants table); a brute-force
re-analysis of every grid point (where the conclusion flips); the exact linear
response of an estimate to the shift, the least-squares coefficient of the
shift itself on the model's design.
"""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _designs import DEFAULT_NAMES, drug_placebo

from dtitool.cli import main
from dtitool.design import MissingSpec, read_design
from dtitool.simulate import simulate_cohort
from dtitool.stats.analysis import fit_models
from dtitool.stats.missing import (
    DEFAULT_DELTAS,
    MAX_DELTAS,
    _blank_dropped,
    _completed,
    _pool_tables,
    _prepare,
    impute,
    rubin,
    tipping_grid,
    tipping_point,
)
from dtitool.stats.models import fit_complete_data
from dtitool.tables import compute_changes

ROOT = Path(__file__).resolve().parents[1]
LOST = {"mechanism": "mnar", "rate": 0.3, "outcome": "hamd", "strength": 1.0,
        "scores": True}
GROUP = "C(group, Treatment('placebo'))"


@pytest.fixture(scope="module")
def trial():
    """A drug/placebo trial (names of its own) that lost whole week1 visits."""
    d = drug_placebo(n=60, missing=LOST)
    c = simulate_cohort(d, rng=4)
    return d, c.participants, c.roi_md


def _point(table, arms, values):
    sel = np.ones(len(table), bool)
    for a, v in zip(arms, values, strict=True):
        sel &= table[f"delta_{a}"].to_numpy() == v
    return table[sel].reset_index(drop=True)


def _arm_sd(participants, names, outcome):
    """Observed SD of the primary-visit score change per arm (the direct way)."""
    p = participants
    change = (p[names.score_column(outcome, names.primary)]
              - p[names.score_column(outcome, names.baseline)])
    return change.groupby(p["group"]).std(ddof=1)


def _completed_datasets(participants, roi_md, design, imputations, seed):
    """The completed changes tables of fit_models(missing='mi', rng=seed)."""
    ch = compute_changes(participants, roi_md, design=design)
    names = ch.attrs["trial_names"]
    outcomes = [o.name for o in design.outcomes]
    prep = _prepare(ch, None, outcomes, ("baseline",), names)
    x, y, _ = impute(prep.data, imputations=imputations,
                     rng=np.random.SeedSequence(seed))
    return ch, prep, [_completed(ch, prep, x[0, m], y[0, m])
                      for m in range(imputations)]


# ------------------------------------------------------------------ the grid


def test_grid_of_two_arms_is_every_pair_and_holds_the_mar_point():
    g = tipping_grid([1, -1, 1], ["drug", "placebo"])
    assert g.shape == (9, 2)
    assert [tuple(r) for r in g] == [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    one = tipping_grid([-2, 2], ["drug", "placebo"], arm="placebo")
    assert one.tolist() == [[0, -2], [0, 0], [0, 2]]


def test_grid_of_three_arms_is_the_control_against_each_other_arm():
    arms = ["high", "low", "placebo"]
    g = tipping_grid([-1, 1], arms)
    assert len(g) == 2 * 9 - 3  # two 3 x 3 grids sharing the placebo axis
    assert not ((g[:, 0] != 0) & (g[:, 1] != 0)).any()  # never both doses
    assert {tuple(r) for r in g} >= {(1, 0, -1), (0, -1, 1), (0, 0, 0)}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"deltas": ["x"]}, r"deltas must be numbers \(SDs of score change\)"),
    ({"deltas": []}, "non-empty list of finite numbers"),
    ({"deltas": [1, np.inf]}, "non-empty list of finite numbers"),
    ({"deltas": np.arange(-25, 26)}, rf"51 distinct values with 0; at most "
                                     rf"{MAX_DELTAS}"),
    ({"deltas": [1], "arm": "saline"},
     r"arm 'saline' is not one of the trial's arms \(drug, placebo\)"),
])
def test_bad_grid_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tipping_grid(arms=["drug", "placebo"], **kwargs)


def test_a_string_of_deltas_is_refused():
    with pytest.raises(TypeError, match="deltas must be a sequence of numbers, not "
                       "the string '12'"):
        tipping_grid("12", ["drug", "placebo"])


# ------------------------------------------------------------ the MAR point


@pytest.mark.parametrize("inference", ["welch", "ols"])
def test_delta_zero_is_the_mar_analysis_exactly(trial, inference):
    d, p, r = trial
    tp = tipping_point(p, r, design=d, deltas=(-1, 1), imputations=4, rng=3,
                       inference=inference)
    mi = fit_models(p, r, design=d, missing="mi", imputations=4, rng=3,
                    inference=inference)
    zero = _point(tp.table, tp.arms, (0, 0))
    assert tp.arms == ("drug", "placebo")
    for col in ("estimate", "se", "t", "df", "p", "ci_low", "ci_high", "fmi", "n"):
        np.testing.assert_array_equal(zero[col], mi.table[col], err_msg=col)
    assert not zero["conclusion_changed"].any()
    assert tp.seed == mi.seed == 3


# ------------------------------------------- a delta is that many SDs of the arm


def test_a_per_arm_delta_is_the_point_shift_times_that_arms_observed_sd(trial):
    """Shift the imputed hamd scores of one arm by delta x its observed SD (from
    the participants table) by hand, fit statsmodels to every completed dataset
    and pool: the table's row at that delta is that analysis."""
    d, p, r = trial
    M, seed = 4, 6
    tp = tipping_point(p, r, design=d, deltas=(-1.5, 0.5), imputations=M,
                       rng=seed, inference="ols")
    names = d.names
    sd = _arm_sd(p, names, "hamd")
    lost = set(p.loc[p["hamd_week1"].isna(), "participant_id"])
    assert lost and {"drug", "placebo"} <= set(p.loc[p["participant_id"].isin(lost),
                                                       "group"])
    _, _, done = _completed_datasets(p, r, d, M, seed)
    rows = tp.table[tp.table["outcome"] == "hamd"]
    np.testing.assert_allclose(rows["change_sd_drug"], sd["drug"], rtol=1e-12)
    np.testing.assert_allclose(rows["change_sd_placebo"], sd["placebo"], rtol=1e-12)
    for delta in [(-1.5, 0.0), (0.0, 0.5), (0.5, -1.5)]:
        points = dict(zip(names.arms, delta, strict=True))
        est, se, dfs = [], [], []
        points_sd = {arm: points[arm] * sd[arm] for arm in names.arms}
        for c in done:
            sub = c[c["roi"] == "thalamus"]
            shift = (sub["participant_id"].isin(lost)
                     * sub["group"].map(points_sd).astype(float))
            sub = pd.DataFrame({"x": sub["d_md"] * 1e5,
                                "dy": sub["d_hamd"] + shift,
                                "base": sub["hamd_pre"], "group": sub["group"]})
            fit = smf.ols(f"dy ~ {GROUP} * x + base", sub).fit()
            ct = fit.t_test(f"{GROUP}[T.drug]:x = 0")
            est.append(float(ct.effect[0]))
            se.append(float(np.asarray(ct.sd).ravel()[0]))
            dfs.append(fit.df_resid)
        want = rubin(est, se, dfs)
        got = _point(rows, names.arms, delta)
        got = got[(got["roi"] == "thalamus") & (got["term"] == "interaction")].iloc[0]
        np.testing.assert_allclose(
            [got["estimate"], got["se"], got["df"], got["p"]],
            [want.estimate, want.se, want.df, want.p], rtol=1e-8, err_msg=delta)


def test_estimates_move_exactly_as_the_regression_of_each_arms_shift(trial):
    """Within a completed dataset the shift changes only the score changes, so an
    estimate moves by sum_a delta_a sd_a g_a, g_a the least-squares coefficient
    of arm a's imputed-score indicator on the model's design (statsmodels): the
    covariance of dMD with being imputed moves a slope, nothing else does."""
    d, p, r = trial
    M, seed = 3, 8
    tp = tipping_point(p, r, design=d, deltas=(-2, -1, 1, 2), imputations=M,
                       rng=seed, inference="ols")
    sd = _arm_sd(p, d.names, "hamd")
    lost = set(p.loc[p["hamd_week1"].isna(), "participant_id"])
    _, _, done = _completed_datasets(p, r, d, M, seed)
    g = {arm: [] for arm in d.names.arms}
    for c in done:
        sub = c[c["roi"] == "putamen"].assign(
            x=lambda t: t["d_md"] * 1e5, base=lambda t: t["hamd_pre"])
        for arm in d.names.arms:
            s = (sub["participant_id"].isin(lost) & (sub["group"] == arm)) * sd[arm]
            fit = smf.ols(f"s ~ {GROUP} * x + base", sub.assign(s=s)).fit()
            g[arm].append(fit.params[f"{GROUP}[T.drug]:x"])
    rows = tp.table[(tp.table["roi"] == "putamen") & (tp.table["outcome"] == "hamd")
                    & (tp.table["term"] == "interaction")]
    base = _point(rows, d.names.arms, (0, 0))["estimate"].iloc[0]
    want = base + sum(rows[f"delta_{a}"] * np.mean(g[a]) for a in d.names.arms)
    np.testing.assert_allclose(rows["estimate"], want, rtol=1e-9, atol=1e-12)


# ------------------------------------------------ the 2-D grid and its flips


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_grid_shape_and_flips_match_a_brute_force_reanalysis(trial):
    """Every grid point re-analysed the long way (the imputed scores shifted in
    each completed dataset, statsmodels fits, Rubin's rules): same estimates,
    same conclusions, same flips; and the summary names the nearest flip."""
    d, p, r = trial
    M, seed, deltas = 3, 5, (-2, -1, 0, 1, 2)
    tp = tipping_point(p, r, design=d, deltas=deltas, imputations=M, rng=seed,
                       inference="welch")
    names = d.names
    t = tp.table
    n_models, n_terms = 2 * 2, len(names.terms)
    assert tp.grid.shape == (25, 2) and len(t) == n_models * n_terms * 25
    assert list(t.columns[:5]) == ["roi", "outcome", "term", "delta_drug",
                                   "delta_placebo"]
    per = t.groupby(["roi", "outcome", "term"], sort=False)
    assert (per.size() == 25).all()
    assert (per[["delta_drug", "delta_placebo"]].apply(
        lambda g: len(g.drop_duplicates())) == 25).all()
    ch, prep, _ = _completed_datasets(p, r, d, M, seed)
    x, y, _ = impute(prep.data, imputations=M, rng=np.random.SeedSequence(seed))
    sd = np.stack([_arm_sd(p, names, k)[list(names.arms)].to_numpy()
                   for k in prep.outcomes], axis=-1)  # (arms, outcomes)
    lost = ~np.isfinite(prep.data.y[0])  # (N, K)
    mar = None
    for delta in tp.grid:
        shift = np.where(lost, delta[prep.arms][:, None] * sd[prep.arms], 0.0)
        tables, contrasts = [], []
        for m in range(M):
            c = _completed(ch, prep, x[0, m], y[0, m], shift)
            _blank_dropped(c, prep)
            res = fit_complete_data(c, inference="welch", names=names)
            tables.append(res.table)
            contrasts.append(res.interactions)
        want = _pool_tables(tables, 0.05, ("term",), contrasts, "welch")
        got = _point(t, names.arms, delta)
        np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-8)
        np.testing.assert_allclose(got["p"], want["p"], rtol=1e-7)
        sig = want["p"] <= 0.05
        brute = np.where(sig, np.where(want["estimate"] > 0, "positive",
                                       "negative"), "not significant")
        assert list(got["conclusion"]) == list(brute), delta
        if not delta.any():
            mar = brute
    flips = t["conclusion_changed"].to_numpy().reshape(-1, 25)
    brute_flips = t["conclusion"].to_numpy().reshape(-1, 25) != np.asarray(
        mar)[:, None]
    np.testing.assert_array_equal(flips, brute_flips)
    assert flips.any() and not flips.all()  # this trial tips somewhere, not everywhere
    tips = tp.tipping_points()
    assert (tips["changed"] == flips.sum(axis=1)).all()
    for row in tips[tips["changed"] > 0].itertuples():
        g = t[(t["roi"] == row.roi) & (t["outcome"] == row.outcome)
              & (t["term"] == row.term)]
        dist = np.hypot(g["delta_drug"], g["delta_placebo"])[g["conclusion_changed"]]
        assert np.hypot(row.nearest_delta_drug, row.nearest_delta_placebo) == dist.min()


def test_one_arm_alone_is_the_matching_slice_of_the_grid(trial):
    d, p, r = trial
    full = tipping_point(p, r, design=d, deltas=(-1, 1), imputations=3, rng=2)
    one = tipping_point(p, r, design=d, deltas=(-1, 1), arm="placebo",
                        imputations=3, rng=2)
    assert (one.table["delta_drug"] == 0).all()
    assert sorted(one.table["delta_placebo"].unique()) == [-1, 0, 1]
    same = full.table[full.table["delta_drug"] == 0].reset_index(drop=True)
    np.testing.assert_allclose(one.table["estimate"], same["estimate"], rtol=1e-12)
    np.testing.assert_allclose(one.table["p"], same["p"], rtol=1e-12)
    assert "the placebo arm's delta alone" in one.summary()


def test_three_arms_take_their_names_from_the_trial():
    d, _ = read_design(ROOT / "examples" / "designs" / "three-arm.toml")
    d = dataclasses.replace(d, missing=MissingSpec("mnar", 0.3, outcome="hamd",
                                                   scores=True))
    c = simulate_cohort(d, rng=2)
    tp = tipping_point(c.participants, c.roi_md, design=d, deltas=(-1, 1),
                       imputations=3, rng=1)
    assert tp.arms == ("high", "low", "placebo")
    assert len(tp.grid) == 15
    assert len(tp.table) == 2 * 2 * len(d.names.terms) * 15
    o = tp.table[tp.table["term"] == "omnibus"]
    assert set(o["conclusion"]) <= {"significant", "not significant"}
    text = tp.summary()
    assert "the placebo arm's delta against each other arm's" in text
    for name in DEFAULT_NAMES[:2]:
        assert name not in text and name not in "".join(tp.table.columns)


def test_nothing_imputed_shifts_nothing():
    """Only scans lost: no score is imputed, every grid point is the MAR one."""
    d = drug_placebo(n=60, missing={"mechanism": "mcar", "rate": 0.2})
    c = simulate_cohort(d, rng=1)
    tp = tipping_point(c.participants, c.roi_md, design=d, deltas=(-2, 2),
                       imputations=2, rng=1)
    assert (tp.table["n_imputed_scores"] == 0).all()
    assert not tp.table["conclusion_changed"].any()
    per = tp.table.groupby(["roi", "outcome", "term"])["estimate"]
    assert (per.max() - per.min() <= 1e-9 * per.max().abs().clip(1)).all()
    assert "delta shifts nothing" in tp.summary()


# ------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def trial_dir(trial, tmp_path_factory):
    from dtitool.design import design_to_toml

    d, p, r = trial
    data = tmp_path_factory.mktemp("trial")
    p.to_csv(data / "participants.tsv", sep="\t", index=False)
    r.to_csv(data / "roi_md.tsv", sep="\t", index=False)
    (data / "design.toml").write_text(design_to_toml(d))
    return data


def test_cli_writes_the_grid_with_its_sidecar(trial_dir, tmp_path, capsys):
    out, tip = tmp_path / "res.tsv", tmp_path / "tip.tsv"
    rc = main(["analyze", str(trial_dir), "--out", str(out), "--missing", "mi",
               "--imputations", "3", "--seed", "3", "--tipping-point", str(tip),
               "--delta=-1,1"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "tipping point (interaction): the imputed week1 scores" in text
    assert "1 SD of hamd change: drug" in text
    t = pd.read_csv(tip, sep="\t")
    assert {"delta_drug", "delta_placebo", "change_sd_drug", "change_sd_placebo",
            "conclusion", "conclusion_changed"} <= set(t.columns)
    assert len(t) == 9 * 4 * 4
    got = pd.read_csv(out, sep="\t")
    zero = t[(t["delta_drug"] == 0) & (t["delta_placebo"] == 0)]
    np.testing.assert_allclose(zero["p"], got["p"], rtol=1e-9)
    side = json.loads(tip.with_suffix(".json").read_text())
    assert side["delta_drug"]["Units"] == "SD"
    assert "drug arm's imputed" in side["delta_drug"]["Description"]
    assert side["change_sd_placebo"]["Units"] == "score points"
    assert set(side["conclusion"]["Levels"]) >= {"positive", "not significant"}


def test_cli_delta_arm_shifts_one_arm(trial_dir, tmp_path, capsys):
    tip = tmp_path / "tip.tsv"
    rc = main(["analyze", str(trial_dir), "--out", str(tmp_path / "r.tsv"),
               "--missing", "mi", "--imputations", "2", "--seed", "1",
               "--tipping-point", str(tip), "--delta=-2,2", "--delta-arm", "drug"])
    assert rc == 0, capsys.readouterr().err
    t = pd.read_csv(tip, sep="\t")
    assert (t["delta_placebo"] == 0).all()
    assert sorted(t["delta_drug"].unique()) == [-2, 0, 2]
    assert "the drug arm's delta alone" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--delta=a,1"], r"--delta must be a comma list of numbers \(SDs"),
    (["--delta=1,,2"], "--delta must be a comma list of numbers"),
    (["--delta=1,nan"], "--delta values must be finite"),
    (["--delta=" + ",".join(str(v) for v in range(1, 42))],
     rf"--delta has 42 distinct values with 0; at most {MAX_DELTAS}"),
    (["--delta-arm", "saline"],
     r"--delta-arm 'saline' is not one of the trial's arms \(drug, placebo\)"),
])
def test_cli_bad_deltas_are_one_line_and_exit_2(trial_dir, tmp_path, capsys, extra,
                                                message):
    rc = main(["analyze", str(trial_dir), "--out", str(tmp_path / "r.tsv"),
               "--missing", "mi", "--tipping-point", str(tmp_path / "t.tsv"),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r.tsv").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--delta=1"], "--delta is used with --tipping-point"),
    (["--delta-arm", "drug"], "--delta-arm is used with --tipping-point"),
    (["--tipping-point", "t.tsv"], "needs --missing mi"),
])
def test_cli_delta_options_need_the_tipping_point(trial_dir, tmp_path, capsys, extra,
                                                  message):
    rc = main(["analyze", str(trial_dir), "--out", str(tmp_path / "r.tsv"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_default_deltas_are_sd_units():
    assert DEFAULT_DELTAS == (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


# ------------------------------------------------------- the example in the docs


def _docs_example() -> tuple[str, str, list[list[str]], str]:
    """The MNAR example of docs/model.md: its text, TOML, commands and grid."""
    text = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    start = text.index("**An MNAR example**")
    section = text[start:text.index("### Power with missing data", start)]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    toml = next(b for lang, b in blocks if lang == "toml")
    commands = [line.split()[1:] for lang, b in blocks if not lang
                for line in b.splitlines() if line.startswith("dtitool ")]
    grid = next(b for lang, b in blocks if not lang and "delta_ketamine" in b)
    return " ".join(section.split()), toml, commands, grid


def _signed(v: float) -> str:
    return "0" if v == 0 else f"{v:+g}"


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_the_mnar_example_in_the_docs_tips_inside_its_range(tmp_path, monkeypatch,
                                                            capsys):
    """Run the documented commands; every number the example quotes is the run's,
    and its tipping point lies strictly inside the range of deltas."""
    text, toml, commands, grid = _docs_example()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnar.toml").write_text(toml)
    assert [c[0] for c in commands] == ["simulate", "analyze"]
    for argv in commands:
        assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    t = pd.read_csv(tmp_path / "mnar" / "tip.tsv", sep="\t")
    p = pd.read_csv(tmp_path / "mnar" / "participants.tsv", sep="\t")
    m = t[(t["roi"] == "L_BA10") & (t["outcome"] == "madrs")]
    dk, ds = m["delta_ketamine"], m["delta_saline"]

    def at(term, k, s):
        return m[(m["term"] == term) & (dk == k) & (ds == s)].iloc[0]

    inter = m[m["term"] == "interaction"]
    zero = at("interaction", 0, 0)
    lo, hi = t["delta_saline"].min(), t["delta_saline"].max()
    flips = inter[inter["conclusion_changed"]]
    near = flips.iloc[np.argmin(np.hypot(flips["delta_ketamine"],
                                         flips["delta_saline"]))]
    # the must-reach: a tipping point strictly inside the reported range
    assert zero["conclusion"] == "positive" and len(flips) > 0
    assert max(abs(near["delta_ketamine"]), abs(near["delta_saline"])) < hi == -lo
    lost = p[p["madrs_24h"].isna()].groupby("group").size()
    n = p.groupby("group").size()
    f = inter.set_index(["delta_ketamine", "delta_saline"])["conclusion_changed"]

    def first(on):  # nearest change on each side of 0 along a ray
        d = on[on != 0]
        return " and ".join(f"{v:+g}" for v in (d[d < 0].max(initial=-np.inf),
                                                d[d > 0].min(initial=np.inf))
                            if np.isfinite(v))

    k_axis = np.array([k for (k, s), c in f.items() if s == 0 and c])
    s_axis = np.array([s for (k, s), c in f.items() if k == 0 and c])
    diag = np.array([k for (k, s), c in f.items() if k == s and c])
    per_sd = {a: at(f"slope_{a}", *((1, 0) if a == "ketamine" else (0, 1)))
              for a in ("ketamine", "saline")}
    base = {a: at(f"slope_{a}", 0, 0) for a in ("ketamine", "saline")}
    move_k = per_sd["ketamine"]["estimate"] - base["ketamine"]["estimate"]
    move_s = per_sd["saline"]["estimate"] - base["saline"]["estimate"]
    allint = t[t["term"] == "interaction"]
    z = allint[(allint["delta_ketamine"] == 0) & (allint["delta_saline"] == 0)]
    z = z.set_index(["roi", "outcome"])
    g = allint.groupby(["roi", "outcome"])
    ratio = ((g["estimate"].max() - z["estimate"]).abs().combine(
        (g["estimate"].min() - z["estimate"]).abs(), max) / z["se"]).max()
    growth = g["se"].max() / z["se"]
    sd_k, sd_s = zero["change_sd_ketamine"], zero["change_sd_saline"]
    quoted = [
        f"{int(lost.sum())} of the {len(p)} participants lost their 24 h visit "
        f"({lost['ketamine']} of {n['ketamine']} ketamine, {lost['saline']} of "
        f"{n['saline']} saline)",
        f"one delta unit is {sd_k:.2f} MADRS points in the ketamine arm and "
        f"{sd_s:.2f} in the saline arm",
        f"The L BA10 MADRS interaction is {zero['estimate']:.3f} (SE "
        f"{zero['se']:.3f}, p {zero['p']:.4f}) under MAR.",
        f"Its conclusion changes at {len(flips)} of the {len(inter)} grid points, "
        f"the nearest at delta_ketamine {_signed(near['delta_ketamine'])}, "
        f"delta_saline {_signed(near['delta_saline'])} ({near['estimate']:.3f}, SE "
        f"{near['se']:.3f}, p {near['p']:.4f})",
        f"first at ketamine {first(k_axis)} and at saline {first(s_axis)}; both "
        f"arms alike, at {first(diag)}",
        f"One SD moves the ketamine slope by {move_k:.3f} (`g` = "
        f"{move_k / sd_k:.4f} per 1e-5 mm^2/s; its SE {base['ketamine']['se']:.3f}) "
        f"and the saline slope by {move_s:.3f} (SE {base['saline']['se']:.3f}), "
        f"while the saline slope's SE grows to {per_sd['saline']['se']:.3f} at "
        "delta_saline +1",
        f"the interaction stays within {inter['estimate'].min():.3f}-"
        f"{inter['estimate'].max():.3f} while its SE reaches {inter['se'].max():.3f}",
        f"the {len(z)} interactions move by at most {ratio:.2f} of their MAR SE "
        f"while their SEs grow {growth.min():.2f}-{growth.max():.2f} times",
        f"mean MADRS change by {lost['ketamine'] / n['ketamine'] * sd_k:.2f} "
        f"(ketamine) and {lost['saline'] / n['saline'] * sd_s:.2f} (saline) points "
        "per SD",
    ]
    for phrase in quoted:
        assert phrase in text, phrase
    cells = inter.pivot(index="delta_ketamine", columns="delta_saline",
                        values="conclusion").iloc[::-1]
    rows = [[("+" if c == "positive" else ".") for c in r]
            for r in cells.to_numpy()]
    shown = [line.split() for line in grid.splitlines()[2:]]
    assert [r[0] for r in shown] == [f"{v:g}" for v in cells.index]
    assert grid.splitlines()[1].split() == [f"{v:g}" for v in cells.columns]
    assert [r[1:] for r in shown] == rows
