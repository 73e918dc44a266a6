"""The two worlds side by side, what a missed reported p needs, and the notes."""

import dataclasses
import math

import numpy as np
import pytest

from dtitool.design import load_preset
from dtitool.stats.power import power
from dtitool.stats.reference import reported_families
from dtitool.stats.reproduce import (
    ALT_COLUMNS,
    FACE_VALUE_WORLD,
    NEEDED_COLUMNS,
    REALISTIC_WORLD,
    add_needed,
    alternative_inference,
    compare_inference,
    compare_worlds,
    interpretation_notes,
    other_world,
    reproduce_report,
    reproduce_table,
    world_summary,
)

# the default preset's terms (a design's are design.names.terms)
TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")

R = 2000


def _run(name, seed=2023, inference="ols"):
    # reported versus simulated: under the reported analysis unless told
    d = load_preset(name)
    return power(d, replicates=R, rng=seed, families=reported_families(d),
                 inference=inference)


@pytest.fixture(scope="module")
def realistic():
    return _run(REALISTIC_WORLD)


@pytest.fixture(scope="module")
def face_value():
    return _run(FACE_VALUE_WORLD)


@pytest.fixture(scope="module")
def table(realistic, face_value):
    t = compare_worlds(reproduce_table(realistic), reproduce_table(face_value),
                       FACE_VALUE_WORLD)
    return add_needed(t, realistic.design)


def _median_ci(res, roi, outcome, term, z=3.29):
    """Distribution-free CI of the median p (order statistics, ~99.9 %)."""
    d = res.design
    p = np.sort(np.abs(res.signed_p[:, d.roi_names.index(roi),
                                    d.outcome_names.index(outcome),
                                    TERMS.index(term)].astype(float)))
    n = p.size
    lo = math.floor(n / 2 - z * math.sqrt(n) / 2)
    hi = math.ceil(n / 2 + z * math.sqrt(n) / 2)
    return p[max(lo, 0)], p[min(hi, n - 1)]


def test_other_world():
    assert other_world(load_preset(REALISTIC_WORLD)) == FACE_VALUE_WORLD
    assert other_world(load_preset(FACE_VALUE_WORLD)) == REALISTIC_WORLD
    assert other_world(load_preset("null")) == FACE_VALUE_WORLD


def test_worlds_side_by_side(table, face_value):
    fv = reproduce_table(face_value).set_index(["roi", "reported_outcome", "term"])
    assert (table["other_world"] == FACE_VALUE_WORLD).all()
    for r in table.itertuples():
        o = fv.loc[(r.roi, r.reported_outcome, r.term)]
        assert r.other_power == o["power"]
        assert r.other_median_p == o["median_p"]
    rep = table[table["direction"] != 0]
    # the face-value world has ~50 % power by construction, the realistic far less
    assert rep["other_power"].between(0.45, 0.8).all()
    assert (rep["power"] < rep["other_power"]).all()


def test_every_reported_test_needs_a_parameter_outside_its_range(table):
    rep = table[table["direction"] != 0]
    assert (rep["verdict"] == "weaker than reported").all()
    assert (rep["needed_factor"] > 1).all()
    assert (rep["leaves_range"] != "").all()
    nulls = table[table["direction"] == 0]
    assert (nulls["needed"] == "").all() and nulls["target_p"].isna().all()
    assert set(NEEDED_COLUMNS) <= set(table.columns)
    # the reliability of the change-SD path follows from the needed SD
    design = load_preset(REALISTIC_WORLD)
    for r in rep.itertuples():
        if r.needed_change_sd_pct == r.needed_change_sd_pct:
            roi = design.rois[design.roi_names.index(r.roi)]
            c2 = (r.needed_change_sd_pct / 100 * roi.md_mean) ** 2
            assert r.needed_reliability == pytest.approx(
                c2 / (c2 + 2 * roi.noise_sd**2), rel=1e-9)


def test_needed_values_reach_the_reported_p_in_the_power_engine(table):
    """Plug a needed value into the design: the median p lands on the target."""
    design = load_preset(REALISTIC_WORLD)
    rows = table.set_index(["roi", "outcome", "term"])
    # the true correlation of L BA10 with the MADRS change (interaction) ...
    r = rows.loc[("L_BA10", "madrs", "interaction")]
    c = design.correlations
    ro = {a: np.array(c.roi_outcome_array(a)) for a in ("ketamine", "saline")}
    ro["ketamine"][0, 0] = r["needed_r_true"]
    d1 = design.replace(correlations=dataclasses.replace(
        c, roi_outcome={a: tuple(map(tuple, m)) for a, m in ro.items()}))
    res = power(d1, replicates=R, rng=7, inference="ols")
    lo, hi = _median_ci(res, "L_BA10", "madrs", "interaction")
    assert lo <= r["target_p"] <= hi
    # ... and the ketamine arm's MD-change SD of R BA10 (pooled slope, outcome
    # "any": worked out on its decisive outcome)
    r = rows.loc[("R_BA10", "any", "slope_pooled")]
    roi = design.rois[1]
    new = dataclasses.replace(roi, change_sd=roi.change_sd.replace(
        ketamine=r["needed_change_sd_pct"] / 100 * roi.md_mean))
    d2 = design.replace(rois=(design.rois[0], new, *design.rois[2:]))
    res = power(d2, replicates=R, rng=7, inference="ols")
    lo, hi = _median_ci(res, "R_BA10", r["decisive_outcome"], "slope_pooled")
    assert lo <= r["target_p"] <= hi


def test_the_saline_arm_caps_the_interaction(table):
    """No ketamine-arm MD-change SD makes an interaction as strong as reported."""
    rep = table[(table["direction"] != 0) & (table["term"] == "interaction")]
    assert rep["needed_change_sd_pct"].isna().all()
    assert rep["needed"].str.contains("caps the test").all()


def test_face_value_world_needs_nothing(face_value):
    t = add_needed(reproduce_table(face_value), face_value.design)
    rep = t[t["direction"] != 0]
    assert (rep["verdict"] == "in range").all()
    assert (rep["needed"] == "").all()


def test_world_summary():
    w = world_summary(load_preset(REALISTIC_WORLD))
    assert w["violations"] == []
    assert w["reliability_saline"][1] < 0.05
    assert w["change_sd_pct_saline"][1] <= 1
    f = world_summary(load_preset(FACE_VALUE_WORLD))
    assert f["reliability_ketamine"][0] == pytest.approx(0.6, abs=0.01)
    assert f["r_squared_madrs"] == pytest.approx(0.45, abs=0.01)
    assert len(f["violations"]) == 15


def test_gelman_stern_note_counts_the_pattern(table, realistic):
    notes = interpretation_notes(table, realistic)
    assert "not a randomised factor" in notes[0]
    line = next(n for n in notes if n.startswith("L_BA10 madrs"))
    assert "Gelman and Stern 2006" in line
    d = realistic.design
    sp = realistic.signed_p[:, 0, 0].astype(float)
    k, s, i = (TERMS.index(t) for t in ("slope_ketamine", "slope_saline",
                                        "interaction"))
    pattern = (np.abs(sp[:, k]) <= 0.05) & (sp[:, k] > 0) & (np.abs(sp[:, s]) > 0.05)
    inter = (np.abs(sp[:, i]) <= 0.05) & (sp[:, i] > 0)
    assert f"appears in {pattern.mean():.0%} of trials" in line
    assert f"significant in {inter[pattern].mean():.0%} of the trials" in line
    row = table[(table["roi"] == "L_BA10") & (table["outcome"] == "madrs")
                & (table["term"] == "interaction")].iloc[0]
    assert f"median p {row['median_p']:.3g}, power {row['power']:.2f}" in line
    assert d.name == REALISTIC_WORLD


def test_report_text(table, realistic):
    text = reproduce_report(table, realistic,
                            other_design=load_preset(FACE_VALUE_WORLD))
    assert "means about 50 % power" in text
    assert REALISTIC_WORLD in text and FACE_VALUE_WORLD in text
    assert "What the reported p-values need" in text
    assert "Reading the results" in text
    assert "Gelman and Stern 2006" in text
    assert "every parameter inside its range" in text
    assert "outside their ranges: true MD-change SD, ketamine arm (7 ROIs)" in text


# over 3 s: the default suite stays under 5 minutes
@pytest.mark.slow
def test_cli_reproduce_two_worlds(tmp_path, capsys):
    import pandas as pd

    from dtitool.cli import main

    out = tmp_path / "r"
    assert main(["reproduce", "--replicates", "256", "--seed", "1", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    t = pd.read_csv(out / "reproduce.tsv", sep="\t", keep_default_na=False)
    assert list(t.columns[:6]) == ["roi", "outcome", "term", "reported_p",
                                   "median_p", "power"]
    assert {"other_world", "other_median_p", "other_power", *NEEDED_COLUMNS} <= set(
        t.columns)
    assert set(t["other_world"]) == {FACE_VALUE_WORLD}
    assert set(t["inference"]) == {"ols"} and set(t["alt_inference"]) == {"welch"}
    assert "means about 50 % power" in text and "Gelman and Stern" in text
    assert "under --inference welch" in text
    # design.toml records design, seed and options: --design repeats the run
    toml = (out / "design.toml").read_text()
    assert "seed = 1" in toml and 'command = "reproduce"' in toml
    again = tmp_path / "again"
    assert main(["reproduce", "--design", str(out / "design.toml"), "--out",
                 str(again), "--quiet"]) == 0
    assert (again / "reproduce.tsv").read_bytes() == (out / "reproduce.tsv"
                                                      ).read_bytes()
    # welch as the reported analysis: ols beside it
    out_w = tmp_path / "w"
    assert main(["reproduce", "--replicates", "128", "--seed", "1", "--inference",
                 "welch", "--compare", "none", "--out", str(out_w), "--quiet"]) == 0
    tw = pd.read_csv(out_w / "reproduce.tsv", sep="\t")
    assert set(tw["inference"]) == {"welch"} and set(tw["alt_inference"]) == {"ols"}
    out2 = tmp_path / "r2"
    assert main(["reproduce", "--preset", FACE_VALUE_WORLD, "--compare", "none",
                 "--replicates", "128", "--seed", "1", "--out", str(out2)]) == 0
    t2 = pd.read_csv(out2 / "reproduce.tsv", sep="\t")
    assert "other_world" not in t2.columns
    assert main(["reproduce", "--compare", "nope", "--replicates", "64",
                 "--out", str(tmp_path / "r3")]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_needed_for_a_design_without_the_association():
    """The null scenario: the needed correlation comes from the formula alone."""
    res = power(load_preset("null"), replicates=256, rng=1, inference="ols")
    t = add_needed(reproduce_table(res), res.design)
    weaker = t[(t["direction"] != 0) & (t["verdict"] == "weaker than reported")]
    assert len(weaker) > 0
    assert (weaker["needed_r_true"].fillna(1) > 0.3).all()
    assert weaker["needed"].str.contains("no association to show").all()
    # with no effect the estimate's sign is a coin flip: nothing is said for those
    other = t[(t["direction"] != 0) & (t["verdict"] == "opposite sign")]
    assert (other["needed"] == "").all()


def test_welch_beside_the_reported_analysis_in_the_same_trials(realistic):
    """The reported analysis (ols) and welch, one seed: the same trials.

    In the realistic world the arms' score changes differ in variance, so the
    ols tests are off their level and the welch tests are not (2000 null
    trials: the 99 % band, Bonferroni over the run's 56 tests, flags a test at
    its level in at most 1 % of runs).
    """
    assert alternative_inference("ols") == "welch"
    assert alternative_inference("hc3") == "welch"
    assert alternative_inference("welch") == "ols"
    welch = _run(REALISTIC_WORLD, inference="welch")
    t = compare_inference(reproduce_table(realistic), reproduce_table(welch))
    assert list(t.columns[-len(ALT_COLUMNS):]) == list(ALT_COLUMNS)
    assert set(t["alt_inference"]) == {"welch"} and set(t["inference"]) == {"ols"}
    w = reproduce_table(welch).set_index(["roi", "reported_outcome", "term"])
    for r in t.itertuples():
        o = w.loc[(r.roi, r.reported_outcome, r.term)]
        assert (r.alt_median_p, r.alt_power, r.alt_size) == (
            o["median_p"], o["power"], o["size"])
    single = t[t["outcome"] != "any"]
    assert single["alt_size_ok"].all()
    assert not single["size_ok"].astype(bool).all()
    text = reproduce_report(t, realistic)
    assert "The same simulated trials under --inference welch" in text
    assert "ols_median_p" in text and "welch_power" in text and "welch_size" in text
    n_off = int(single["size_ok"].eq(False).sum())
    assert (f"ols {single['size'].min():.3f}-{single['size'].max():.3f} ({n_off} "
            f"of {len(single)} outside") in text
