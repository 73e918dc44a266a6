import dataclasses
import tomllib

import numpy as np
import pytest

from dtitool.design import (
    PerArm,
    available_presets,
    design_from_dict,
    design_to_dict,
    design_to_toml,
    load_preset,
    read_design,
    write_design,
)

ROI_NAMES = load_preset("ketamine-rct").roi_names  # the default preset's ROIs


@pytest.fixture(scope="module")
def preset():
    return load_preset("ketamine-rct")


def test_preset_is_the_reference_study(preset):
    assert preset.n == 98
    assert preset.allocation == PerArm(ketamine=2, saline=1)
    assert preset.arm_sizes() == (65, 33)
    assert preset.roi_names == ROI_NAMES
    assert preset.outcome_names == ("madrs", "qids")
    madrs = preset.outcomes[0]
    assert (madrs.scale_min, madrs.scale_max) == (0, 60)
    assert preset.outcomes[1].scale_max == 27
    assert "10.1038/s41398-023-02451-0" in preset.reference


def test_preset_signs_follow_reported_findings(preset):
    ket = preset.correlations.roi_outcome_array("ketamine")
    sal = preset.correlations.roi_outcome_array("saline")
    idx = {r: i for i, r in enumerate(preset.roi_names)}
    # MD decrease with improvement (positive slope) in L BA10 / L amygdala, ketamine
    for r in ("L_BA10", "L_amygdala"):
        assert ket[idx[r], 0] > 0 and ket[idx[r], 1] > 0
        assert sal[idx[r], 0] == 0
    # R BA10 in both arms alike
    assert ket[idx["R_BA10"], 0] > 0 and sal[idx["R_BA10"], 0] > 0
    # hippocampus opposite direction on MADRS, ketamine arm
    for r in ("L_hippocampus", "R_hippocampus"):
        assert ket[idx[r], 0] < 0
    for r in ("R_amygdala", "vACC"):
        assert not ket[idx[r]].any() and not sal[idx[r]].any()


def test_preset_values_have_sources(preset):
    keys = " ".join(preset.sources)
    for stem in ("trial.n", "md_mean", "cv", "baseline_", "change_", "reliability",
                 "roi_outcome"):
        assert stem in keys


@pytest.mark.parametrize(
    ("n", "sizes"), [(98, (65, 33)), (99, (66, 33)), (10, (7, 3)), (5, (3, 2)),
                     (100, (67, 33)), (6, (4, 2))]
)
def test_arm_sizes_keep_ratio(preset, n, sizes):
    assert preset.with_n(n).arm_sizes() == sizes


def test_toml_round_trip(preset, tmp_path):
    path = tmp_path / "d.toml"
    write_design(preset, path, run={"seed": 3})
    design, run = read_design(path)
    assert design == preset
    assert run == {"seed": 3}


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_round_trips_through_tomli_w(name, tmp_path):
    design = load_preset(name)
    path = tmp_path / f"{name}.toml"
    write_design(design, path, run={"seed": 11, "replicates": 5})
    again, run = read_design(path)
    assert again == design
    assert run == {"seed": 11, "replicates": 5}
    # writing the re-read design gives the same text: the writer is stable
    assert design_to_toml(again, run=run) == path.read_text()


@pytest.mark.parametrize("argv", [
    ["simulate", "--preset", "mixed", "--seed", "3", "--n", "30"],
    ["power", "--preset", "null", "--seed", "3", "--replicates", "64", "--quiet"],
])  # fmt: skip
def test_written_design_toml_round_trips(argv, tmp_path, capsys):
    from dtitool.cli import main

    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 0
    design, run = read_design(out / "design.toml")
    assert run["seed"] == 3
    again = tmp_path / "again.toml"
    write_design(design, again, run=run)
    assert read_design(again) == (design, run)


def test_base_override_merges(preset):
    d = design_from_dict({"base": "ketamine-rct", "trial": {"n": 150},
                          "rois": {"L_BA10": {"cv": 0.015}}})
    assert d.n == 150
    assert d.rois[0].cv == 0.015
    assert d.rois[0].md_mean == preset.rois[0].md_mean
    assert d.rois[1] == preset.rois[1]


def test_scalar_correlations_expand(preset):
    d = design_to_dict(preset)
    d["correlations"]["roi_change"] = 0.3
    d["correlations"]["roi_outcome"] = {"ketamine": {}, "saline": {}}
    design = design_from_dict(d)
    m = np.asarray(design.correlations.roi_change)
    assert m.shape == (7, 7)
    assert m[0, 1] == 0.3 and m[3, 3] == 1.0


def _with(preset, path, value):
    d = design_to_dict(preset)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "exc", "match"),
    [
        (("trial", "n"), "98", TypeError, r"trial.n must be an integer; got str '98'"),
        (("trial", "n"), 3, ValueError, r"too small for the arms.*2 ketamine and 1"),
        (("trial", "block_size"), 4, ValueError, r"block_size must be a multiple.*3"),
        (("trial", "allocation"), {"ketamine": 0, "saline": 1}, ValueError,
         r"allocation.ketamine must be >= 1"),
        (("rois", "L_BA10", "md_mean"), 0.89, ValueError,
         r"rois.L_BA10.md_mean must be in mm\^2/s"),
        (("rois", "L_BA10", "cv"), -0.1, ValueError, r"rois.L_BA10.cv must be >= 0"),
        (("rois", "L_BA10", "md_men"), 1e-3, ValueError,
         r"unknown key rois.L_BA10.md_men; valid keys here: change_mean"),
        (("outcomes", "madrs", "inclusion_min"), 70, ValueError,
         r"outcomes.madrs.inclusion_min must be within \[0, 60\]"),
        (("missing", "mechanism"), "random", ValueError, r"'none', 'mcar', 'mnar'"),
        (("correlations", "outcome_change"), 1.5, ValueError, r"\(-1, 1\)"),
        (("trail",), {}, ValueError, r"unknown key trail; valid keys here"),
    ],
)
def test_invalid_fields_are_named(preset, path, value, exc, match):
    with pytest.raises(exc, match=match):
        design_from_dict(_with(preset, path, value))


def test_conflicting_correlations_named(preset):
    d = design_to_dict(preset)
    d["correlations"]["roi_change"] = 0.0
    d["correlations"]["roi_outcome"]["ketamine"]["madrs"] = {
        "L_BA10": 0.9, "R_BA10": 0.9}
    d["correlations"]["roi_change"] = [[1.0 if i == j else 0.0 for j in range(7)]
                                       for i in range(7)]
    d["correlations"]["roi_change"][0][1] = d["correlations"]["roi_change"][1][0] = -0.5
    with pytest.raises(ValueError, match=r"arm 'ketamine' are not jointly possible"
                       r".*corr\(dMD\[L_BA10\], dMD\[R_BA10\]\) = -0.5.*dmadrs"):
        design_from_dict(d)


def test_unknown_preset_lists_known():
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; known presets: .*"
                       "ketamine-rct"):
        load_preset("nope")
    assert "ketamine-rct" in available_presets()


def test_read_design_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        read_design(bad)
    with pytest.raises(ValueError, match="does not exist or is not a file"):
        read_design(tmp_path / "missing.toml")


def test_written_toml_is_plain_toml(preset):
    text = design_to_toml(preset, run={"seed": 1})
    d = tomllib.loads(text)
    assert d["trial"]["n"] == 98
    assert d["run"]["seed"] == 1


def test_replace_revalidates(preset):
    with pytest.raises(ValueError, match=r"trial\.n"):
        dataclasses.replace(preset, n=2)
    assert preset.replace(n=50).n == 50


def test_reliability_formula(preset):
    r = preset.rois[0]
    expected = r.change_sd["ketamine"]**2 / (
        r.change_sd["ketamine"]**2 + 2 * (r.cv * r.md_mean) ** 2)
    assert preset.reliability()["L_BA10"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["null", "neuroplasticity", "neuroinflammation",
                                  "mixed"])
def test_scenario_presets_load_and_inherit(preset, name):
    d = load_preset(name)
    assert d.name == name
    assert d.n == preset.n and d.roi_names == preset.roi_names
    assert d.rois[0].cv == preset.rois[0].cv
    assert d.sources["correlations.roi_outcome"].startswith("scenario")


def test_null_preset_has_no_effects():
    d = load_preset("null")
    for arm in ("ketamine", "saline"):
        assert not d.correlations.roi_outcome_array(arm).any()
        assert all(r.change_mean[arm] == 0 for r in d.rois)


def test_roi_outcome_override_replaces_whole_pattern(preset):
    d = design_from_dict({"base": "ketamine-rct", "correlations": {"roi_outcome": {
        "ketamine": {"madrs": {"vACC": 0.3}}}}})
    ket = d.correlations.roi_outcome_array("ketamine")
    assert ket[6, 0] == 0.3
    assert np.count_nonzero(ket) == 1
    assert not d.correlations.roi_outcome_array("saline").any()


def test_outcome_reliability_optional_and_validated(preset):
    d = design_to_dict(preset)
    del d["outcomes"]["madrs"]["reliability"]
    assert design_from_dict(d).outcomes[0].reliability == 1.0
    d = design_from_dict(_with(preset, ("outcomes", "madrs", "reliability"), 0.85))
    assert d.outcomes[0].reliability == 0.85
    with pytest.raises(ValueError, match=r"outcomes\.madrs\.reliability must be > 0"):
        design_from_dict(_with(preset, ("outcomes", "madrs", "reliability"), 0.0))
    with pytest.raises(ValueError, match=r"outcomes\.qids\.reliability must be"):
        design_from_dict(_with(preset, ("outcomes", "qids", "reliability"), 1.2))


# ------------------------------------------------------- realistic default world


def test_presets_ship_both_worlds():
    assert {"ketamine-rct", "ketamine-rct-face-value"} <= set(available_presets())
    fv = load_preset("ketamine-rct-face-value")
    assert fv.n == 98 and fv.roi_names == ROI_NAMES
    assert {o.change_model for o in fv.outcomes} == {"additive"}
    assert all(o.reliability == 1.0 for o in fv.outcomes)


def test_ranges_round_trip_and_validation(preset, tmp_path):
    rg = preset.ranges
    assert rg.cv == (0.01, 0.074)
    assert rg.change_sd("saline") == (0.0, 0.01)
    assert rg.change_sd("ketamine") == (0.0, 0.03)
    path = tmp_path / "d.toml"
    write_design(preset, path)
    assert read_design(path)[0].ranges == rg
    with pytest.raises(ValueError, match=r"unknown key ranges\.cvv"):
        design_from_dict(_with(preset, ("ranges", "cvv"), [0, 1]))
    with pytest.raises(ValueError, match=r"ranges\.r_squared must have low <= high"):
        design_from_dict(_with(preset, ("ranges", "r_squared"), [0.6, 0.5]))
    with pytest.raises(TypeError, match=r"ranges\.cv must be a pair"):
        design_from_dict(_with(preset, ("ranges", "cv"), 0.02))
    with pytest.raises(ValueError, match=r"unknown key ranges\.change_sd_fraction\.x"):
        design_from_dict(_with(preset, ("ranges", "change_sd_fraction"),
                               {"x": [0, 1]}))


def test_default_inside_its_ranges_face_value_outside():
    assert load_preset("ketamine-rct").range_violations() == []
    v = load_preset("ketamine-rct-face-value").range_violations()
    # every ROI's true change SD leaves its range in both arms, and the QIDS R^2
    assert sum(".change_sd.saline" in x for x in v) == 7
    assert sum(".change_sd.ketamine" in x for x in v) == 7
    assert any(x.startswith("R^2 of qids") for x in v)


def test_saline_change_sd_rule_and_md_summary(preset):
    """Saline true change SD <= 1 % of MD; the summary's formulas, by hand."""
    m = preset.md_summary()
    assert len(m) == 2 * len(preset.rois)
    sal = m[m["arm"] == "saline"]
    assert (sal["change_sd_pct_md"] <= 1.0).all()
    for r in m.itertuples():
        roi = preset.rois[preset.roi_names.index(r.roi)]
        b2, e2, c2 = roi.md_sd**2, (roi.cv * roi.md_mean) ** 2, roi.change_sd[r.arm]**2
        assert r.session_correlation == pytest.approx(
            b2 / np.sqrt((b2 + e2) * (b2 + c2 + e2)), rel=1e-12)
        assert r.dmd_reliability == pytest.approx(c2 / (c2 + 2 * e2), rel=1e-12)
        assert r.change_sd_pct_md == pytest.approx(100 * roi.change_sd[r.arm]
                                                   / roi.md_mean)
    # a realistic saline arm: its dMD is nearly all noise
    assert (sal["dmd_reliability"] < 0.1).all()


@pytest.mark.parametrize("name", ["ketamine-rct", "ketamine-rct-face-value"])
def test_r_squared_equals_one_minus_residual_variance(name):
    """c' R^-1 c against 1 / (Sigma^-1)_yy of the joint correlation matrix."""
    d = load_preset(name)
    nr = len(d.rois)
    for arm in ("ketamine", "saline"):
        full = d.change_correlation(arm)
        for k, o in enumerate(d.outcome_names):
            idx = [*range(nr), nr + k]
            sub = full[np.ix_(idx, idx)]
            expected = 1 - 1 / np.linalg.inv(sub)[-1, -1]
            assert d.r_squared(arm)[o] == pytest.approx(expected, abs=1e-12)
    if name == "ketamine-rct":
        assert max(d.r_squared("ketamine").values()) <= d.ranges.r_squared[1]


def test_scale_reliability_below_one_and_sourced(preset):
    for o in preset.outcomes:
        assert 0 < o.reliability < 1
        assert o.change_model == "logit"
    keys = " ".join(preset.sources)
    assert "outcomes.madrs.reliability" in keys and "outcomes.qids.reliability" in keys
    assert "0.93" in preset.sources["outcomes.madrs.reliability"]
    assert "0.86" in preset.sources["outcomes.qids.reliability"]


def _parameter_paths(design) -> list[str]:
    d = design_to_dict(design)
    out = []

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out.append(prefix)

    for top in ("trial", "visits", "rois", "outcomes", "correlations", "ranges",
                "covariates", "missing"):
        walk(top, d[top])
    return out


@pytest.mark.parametrize("name", ["ketamine-rct", "ketamine-rct-face-value"])
def test_every_preset_value_has_a_source_and_every_source_a_value(name):
    import fnmatch

    d = load_preset(name)
    paths = _parameter_paths(d)

    def covers(key, path):
        return fnmatch.fnmatchcase(path, key) or fnmatch.fnmatchcase(path, key + ".*")

    skip = ("correlations.roi_outcome.",)  # the whole pattern has one source
    for path in paths:
        if path.startswith(skip):
            continue
        if path.endswith(("scale_min", "scale_max", ".scale")) or path in (
                "missing.outcome", "missing.strength", "missing.rate"):
            continue  # definitions of the scales / the switched-off mechanism
        assert any(covers(k, path) for k in d.sources), path
    for key in d.sources:
        assert any(covers(key, p) for p in paths), f"stale source key {key}"


def test_sources_are_in_the_model_docs():
    """Every author-year the default cites is in docs/model.md's source table."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "model.md").read_text(
        encoding="utf-8")
    cited = set()
    for v in load_preset("ketamine-rct").sources.values():
        cited |= set(re.findall(r"([A-Z][\w-]+(?: et al\.| & [A-Z][\w-]+)?) (\d{4})",
                                v))
    assert len(cited) >= 8
    for author, year in cited:
        assert f"{author} {year}" in text.replace("\n", " "), (author, year)


def test_model_docs_name_every_covariates_key():
    """docs/model.md names each key of a design's [covariates] table, in the
    generative model (step 6) and the defaults table."""
    import dataclasses
    from pathlib import Path

    from dtitool.design.spec import CovariateSpec

    text = (Path(__file__).resolve().parents[1] / "docs" / "model.md").read_text(
        encoding="utf-8")
    step = text.split("6. **Covariates.**")[1].split("\n\n")[0]
    row = next(ln for ln in text.splitlines() if ln.startswith("| `covariates`"))
    for f in dataclasses.fields(CovariateSpec):
        assert f"`{f.name}`" in step and f"`{f.name}`" in row, f.name


def test_change_model_validated(preset):
    with pytest.raises(ValueError, match=r"outcomes\.madrs\.change_model must be one"):
        design_from_dict(_with(preset, ("outcomes", "madrs", "change_model"), "log"))
    with pytest.raises(ValueError, match=r"outcomes\.madrs\.change_mean / "
                       r"change_sd\.saline: the SD of a true change"):
        design_from_dict(_with(preset, ("outcomes", "madrs", "change_sd"),
                               {"ketamine": 10.77, "saline": 0.05}))
    with pytest.raises(ValueError, match=r"outcomes\.qids\.remission_max must be "
                       r"within \[0, 27\]"):
        design_from_dict(_with(preset, ("outcomes", "qids", "remission_max"), 30))


def test_logit_scale_rejects_impossible_ratings(preset):
    d = _with(preset, ("outcomes", "madrs", "baseline_mean"), 6.0)
    d["outcomes"]["madrs"]["baseline_sd"] = 18.0
    d["outcomes"]["madrs"]["inclusion_min"] = 0
    with pytest.raises(ValueError, match=r"outcomes\.madrs\.baseline_mean / "
                       r"baseline_sd: no rating on the 0-60 scale has mean 6 and SD "
                       r"18"):
        design_from_dict(d)


def test_design_files_of_earlier_releases_keep_their_score_model():
    # Files written before the score-model choice existed have no change_model
    # and no reliability: they must load with the model they were run with
    # (additive, reliability 1), so that --design repeats those runs.
    d = design_to_dict(load_preset("ketamine-rct-face-value"))
    for o in d["outcomes"].values():
        del o["change_model"], o["reliability"]
    old = design_from_dict(d)
    assert [(o.change_model, o.reliability) for o in old.outcomes] == [
        ("additive", 1.0), ("additive", 1.0)]
    assert old == load_preset("ketamine-rct-face-value")


# ------------------------------------------------------------------ names, schema


def _v2(**changes):
    from dtitool.design import design_to_dict

    d = design_to_dict(load_preset("ketamine-rct"))
    d.update(changes)
    return d


def test_a_design_names_its_arms_control_and_visits():
    from dtitool.design import design_from_dict

    d = _v2()
    d["trial"]["allocation"] = {"placebo": 1, "low": 1}
    d["trial"]["control"] = "placebo"
    for table in ("rois", "outcomes"):
        for spec in d[table].values():
            for k in ("change_mean", "change_sd"):
                spec[k] = {"low": spec[k]["ketamine"], "placebo": spec[k]["saline"]}
    d["correlations"]["roi_outcome"] = {
        "low": d["correlations"]["roi_outcome"]["ketamine"],
        "placebo": d["correlations"]["roi_outcome"]["saline"]}
    del d["ranges"]
    d["visits"] = [{"name": "pre", "hours": 0}, {"name": "day7", "days": 7}]
    design = design_from_dict(d)
    assert design.arms == ("low", "placebo")  # control last, whatever the order
    assert design.treatment == "low" and design.control == "placebo"
    assert design.visit_names == ("pre", "day7") and design.primary_visit == "day7"
    assert design.visits[1].hours == 168.0
    assert design.names.terms == ("interaction", "slope_low", "slope_placebo",
                                  "slope_pooled")
    assert design.arm_sizes() == (49, 49)


@pytest.mark.parametrize(("change", "match"), [
    ({"visits": None}, r"missing \[\[visits\]\]"),
    ({"visits": [{"name": "pre", "hours": 0}]}, "lists 1 visit"),
    ({"visits": [{"name": "pre", "hours": 0}, {"name": "a", "hours": 24,
                                                "primary": True, "fraction": 0.5},
                 {"name": "b", "hours": 48}]}, "a.fraction must be 1"),
    ({"visits": [{"name": "pre", "hours": 0, "fraction": 0.0},
                 {"name": "a", "hours": 24}]}, "pre.fraction must be left out"),
    ({"visits": [{"name": "pre", "hours": 0},
                 {"name": "a", "hours": 24, "fraction": {"ketamine": 0.5}},
                 {"name": "b", "hours": 48}]}, "has no value for arm 'saline'"),
    ({"visits": [{"name": "pre", "hours": 0},
                 {"name": "a", "hours": 24, "fraction": 9},
                 {"name": "b", "hours": 48}]},
     r"a.fraction must be >= -5.0 and <= 5.0"),
    ({"visits": [{"name": "pre", "hours": 5}, {"name": "a", "hours": 24}]},
     "must be 0"),
    ({"visits": [{"name": "pre", "hours": 0}, {"name": "pre", "hours": 24}]},
     "listed twice"),
    ({"visits": [{"name": "ses 1", "hours": 0}, {"name": "a", "hours": 24}]},
     "letters and digits"),
    ({"schema": 3}, "schema = 3"),
])
def test_bad_schedules_and_schemas_are_named(change, match):
    from dtitool.design import design_from_dict

    d = _v2(**change)
    if change.get("visits", 0) is None:
        del d["visits"]
    with pytest.raises(ValueError, match=match):
        design_from_dict(d)


def test_an_allocation_without_arms_is_refused():
    from dtitool.design import design_from_dict

    d = _v2()
    d["trial"]["allocation"] = {}
    with pytest.raises(TypeError, match=r"trial.allocation must be a table"):
        design_from_dict(d)


def test_visit_fractions_follow_the_schedule():
    from dtitool.design import design_from_dict

    d = _v2()
    d["visits"] = [{"name": "pre", "hours": 0},
                   {"name": "s3", "hours": 24, "dose": 3},
                   {"name": "s6", "hours": 48, "dose": 6, "primary": True},
                   {"name": "m1", "days": 30, "dose": 6,
                    "fraction": {"ketamine": 0.5, "saline": 0.25}},
                   {"name": "m2", "days": 60}]
    design = design_from_dict(d)
    # dose / primary dose where doses are stated, the arm's own where given,
    # else 1; the rows are the arms in design order (control last)
    assert design.arms == ("ketamine", "saline")
    np.testing.assert_array_equal(design.visit_fractions(),
                                  [[0, 0.5, 1, 0.5, 1], [0, 0.5, 1, 0.25, 1]])


def test_version_1_files_load_as_the_ketamine_trial(tmp_path):
    from dtitool.design import design_to_dict, read_design

    d = design_to_dict(load_preset("ketamine-rct"))
    text = (tmp_path / "v2.toml")
    from dtitool.design import write_design

    write_design(load_preset("ketamine-rct"), text)
    lines = [ln for ln in text.read_text().splitlines()
             if not ln.startswith(("schema", "control"))]
    # drop the visits array (written inline) and the outcome scale names
    body = "\n".join(lines)
    start = body.index("visits = [")
    body = body[:start] + body[body.index("]\n", start) + 2:]
    body = "\n".join(ln for ln in body.splitlines() if not ln.startswith("scale ="))
    (tmp_path / "v1.toml").write_text(body)
    v1, _ = read_design(tmp_path / "v1.toml")
    assert v1 == load_preset("ketamine-rct").replace(
        outcomes=tuple(dataclasses.replace(o, scale="") for o in v1.outcomes))
    assert v1.arms == ("ketamine", "saline") and v1.visit_names == ("baseline", "24h")
    assert d["schema"] == 2


def test_a_rating_scale_by_name_gives_its_range():
    from dtitool.design import design_from_dict

    d = _v2()
    o = d["outcomes"].pop("madrs")
    del o["scale_min"], o["scale_max"]
    o["scale"] = "HAM-D17"
    o["baseline_mean"], o["baseline_sd"], o["inclusion_min"] = 22.0, 4.0, 18
    d["outcomes"] = {"hamd": o, **d["outcomes"]}
    d["correlations"]["roi_outcome"] = {
        arm: {("hamd" if k == "madrs" else k): v for k, v in per.items()}
        for arm, per in d["correlations"]["roi_outcome"].items()}
    design = design_from_dict(d)
    hamd = design.outcomes[0]
    assert (hamd.name, hamd.scale, hamd.scale_min, hamd.scale_max) == (
        "hamd", "HAM-D17", 0, 52)
    o2 = dict(o, scale="HAM-D17", scale_max=60)
    d["outcomes"]["hamd"] = o2
    with pytest.raises(ValueError, match="contradicts"):
        design_from_dict(d)
    d["outcomes"]["hamd"] = dict(o, scale="HADS")
    with pytest.raises(ValueError, match="not a scale dtitool knows"):
        design_from_dict(d)
