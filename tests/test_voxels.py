"""MRS voxels in the design: metabolites without MD, simulated spectra (fit
quality, ratios to creatine), the MRS presets, their analysis without MD, and
the round trip through Gannet, Osprey and LCModel files."""

import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest

from dtitool import simulate_cohort
from dtitool.cli import main
from dtitool.design import design_from_dict, design_to_dict, load_preset
from dtitool.design.voxels import noise_factor
from dtitool.mrs.export import write_tool_files
from dtitool.simulate import simulate_arrays

MRS = ("gaba", "glx", "tcr")


def _variant(**glx):
    d = design_to_dict(load_preset("ketamine-mrs"))
    d["voxels"]["mPFC"]["measures"]["glx"].update(glx)
    return design_from_dict(d)


def test_presets_load_and_round_trip_through_toml():
    for name in ("ketamine-mrs", "ketamine-rct-mrs"):
        d = load_preset(name)
        assert design_from_dict(design_to_dict(d)) == d
        assert d.voxel_names == ("mPFC",)
        assert [m.name for m in d.measures[-3:]] == list(MRS)
        assert all(m.voxel for m in d.measures[-3:])
    d = load_preset("ketamine-mrs")
    assert d.roi_names == () and d.arms == ("ketamine",)
    assert [r for r, _ in d.model_rows] == ["mPFC"] * 3
    # the profile course: the change at the primary visit (24 h) is 0
    assert d.measures[0].change_mean["ketamine"] == 0.0
    rct = load_preset("ketamine-rct-mrs")
    assert rct.roi_names == load_preset("ketamine-rct").roi_names
    assert rct.visit_names == ("baseline", "infusion", "24h")


@pytest.mark.parametrize(("change", "match"), [
    ({"md_correlation": 0.2}, r"unknown key voxels\.mPFC\.measures\.glx\."
                               r"md_correlation"),
    ({"unit": "mm^3"}, r"voxels\.mPFC\.measures\.glx\.unit must be a unit of "
                       r"MRS quantification \(i\.u\., mM, ratio to tCr, a\.u\.\)"),
    ({"crlb": 5.0, "fit_error": 5.0}, "give crlb .* or fit_error .*, not both"),
    ({"crlb": 120.0}, r"voxels\.mPFC\.measures\.glx\.crlb"),
])
def test_bad_voxel_measures_are_refused_naming_the_key(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _variant(**change)


def test_ratio_needs_creatine_and_names_clash_and_profile_checks():
    d = design_to_dict(load_preset("ketamine-mrs"))
    d["voxels"]["mPFC"]["measures"]["glx"]["unit"] = "ratio to tCr"
    del d["voxels"]["mPFC"]["measures"]["tcr"]
    with pytest.raises(ValueError, match="has no tcr measure"):
        design_from_dict(d)
    d = design_to_dict(load_preset("ketamine-rct-mrs"))
    d["voxels"]["L_BA10"] = d["voxels"].pop("mPFC")
    with pytest.raises(ValueError, match="a voxel and an ROI share the name"):
        design_from_dict(d)
    d = design_to_dict(load_preset("ketamine-mrs"))
    course = d["voxels"]["mPFC"]["measures"]["gaba"]["course"][0]
    course["profile"] = {"frame9": 1.0}
    with pytest.raises(ValueError, match=r"course profile must name visits .*frame9"):
        design_from_dict(d)
    course["profile"] = {"baseline": 0.5}
    with pytest.raises(ValueError, match=r"profile\.baseline must be 0"):
        design_from_dict(d)
    d = design_to_dict(load_preset("ketamine-rct"))
    d["rois"]["L_BA10"]["measures"] = {"gaba": {
        "mean": 2.0, "sd": 0.2, "cv": 0.07, "unit": "i.u.", "scale": 0.1,
        "change_mean": {"ketamine": 0.0, "saline": 0.0},
        "change_sd": {"ketamine": 0.0, "saline": 0.0}, "crlb": 5.0}}
    with pytest.raises(ValueError, match=r"unknown key rois\.L_BA10\.measures"
                                         r"\.gaba\.crlb"):
        design_from_dict(d)


def test_profile_course_shapes_the_voxel_change_over_the_frames():
    d = load_preset("ketamine-mrs").with_n(4000)
    a = simulate_arrays(d, rng=5)
    true = a.extra_true[0, :, 0, :]  # gaba, (N, visits)
    change = true - true[:, :1]
    # profile 0.5, 1, 0.7 at the frames and 0 at 24 h, amplitude mean 0.76
    np.testing.assert_allclose(change.mean(0), [0, 0.38, 0.76, 0.532, 0], atol=0.03)
    ratio = change[:, 1] / change[:, 2]
    np.testing.assert_allclose(ratio, 0.5)
    assert np.all(change[:, 4] == 0)


def test_spectra_share_a_noise_factor_and_their_quality_follows_it():
    d = load_preset("ketamine-mrs").with_n(2000)
    a = simulate_arrays(d, rng=1)
    q, v = a.quality[0], a.extra[0]  # (N, M, V)
    # crlb x value / (level x mean) is the spectrum's factor k, shared by the
    # metabolites of one spectrum
    k = q * v / (np.array([10.0, 6.0, 3.0]) * np.array([2.0, 10.0, 8.0]))[:, None]
    np.testing.assert_allclose(k[:, 0], k[:, 1], rtol=1e-12)
    np.testing.assert_allclose(k[:, 0], k[:, 2], rtol=1e-12)
    # mean square 1: cv stays the RMS scan noise
    z = np.random.default_rng(0).standard_normal(200_000)
    assert abs(np.mean(noise_factor(z, 0.3) ** 2) - 1) < 0.01
    # observed baseline spread: between SD and cv noise
    sd = np.std(v[:, 0, 0])
    assert abs(sd - np.hypot(0.2, 0.07 * 2.0)) < 0.02


def test_ratio_to_creatine_is_the_concentration_over_creatine():
    conc = simulate_arrays(load_preset("ketamine-mrs"), rng=9, stop=3)
    ratio = simulate_arrays(_variant(unit="ratio to tCr", scale=0.05), rng=9, stop=3)
    np.testing.assert_allclose(ratio.extra[:, :, 1], conc.extra[:, :, 1]
                               / conc.extra[:, :, 2], rtol=1e-12)
    np.testing.assert_allclose(ratio.extra_true[:, :, 1], conc.extra_true[:, :, 1]
                               / conc.extra_true[:, :, 2], rtol=1e-12)
    np.testing.assert_array_equal(ratio.quality, conc.quality)


@pytest.mark.parametrize(("preset", "digest"), [
    ("ketamine-rct", "ef77400bc2f06124"), ("ect-course", "01c344d051f48dad")])
def test_designs_without_voxels_draw_what_they_always_drew(preset, digest):
    # digests of MD, scores and measures of 3 trials (seed 4) before voxels
    a = simulate_arrays(preset, rng=4, stop=3)
    assert a.quality is None
    raw = a.md.tobytes() + a.scores.tobytes() + (
        b"" if a.extra is None else a.extra.tobytes())
    assert hashlib.sha256(raw).hexdigest()[:16] == digest


def test_mrs_cohort_files_and_tables(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["simulate", "--preset", "ketamine-mrs", "--seed", "2",
                 "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.tsv"))
    assert "roi_md.tsv" not in names and "true_md.tsv" not in names
    assert {f"roi_{m}.tsv" for m in MRS} <= set(names)
    t = pd.read_csv(out / "roi_gaba.tsv", sep="\t")
    assert list(t.columns) == ["participant_id", "session", "roi", "gaba", "unit",
                               "crlb"]
    assert set(t["unit"]) == {"i.u."} and len(t) == 8 * 5


def test_analyze_an_mrs_cohort_without_md(tmp_path, capsys):
    out = tmp_path / "c"
    main(["simulate", "--preset", "ketamine-rct-mrs", "--seed", "2", "--n", "40",
          "--out", str(out)])
    (out / "roi_md.tsv").unlink()
    (out / "roi_md.json").unlink()
    res = tmp_path / "a.tsv"
    assert main(["analyze", str(out), "--model", "change", "--max-crlb", "12",
                 "--out", str(res)]) == 0
    captured = capsys.readouterr().out
    t = pd.read_csv(res, sep="\t")
    assert set(t["measure"]) == set(MRS)
    assert (t["quality_rule"] == "crlb > 12%").all()
    gaba = t[t["measure"] == "gaba"]
    assert gaba["n_dropped_quality"].iloc[0] > 0
    assert "fit quality of gaba: crlb > 12%" in captured
    assert main(["analyze", str(out), "--model", "change", "--figures",
                 str(tmp_path / "f"), "--out", str(tmp_path / "b.tsv")]) == 2
    assert "--figures needs ROI MD" in capsys.readouterr().err
    res = tmp_path / "m.tsv"
    assert main(["analyze", str(out), "--model", "mixed", "--time", "visit",
                 "--out", str(res)]) == 0
    m = pd.read_csv(res, sep="\t")
    row = m[(m["measure"] == "gaba") & (m["term"] == "ketamine:infusion")]
    assert len(row) == 1 and row["p"].iloc[0] < 1e-6  # the rise during infusion


@pytest.mark.parametrize(("fmt", "digits"), [("gannet", 3), ("osprey", 12),
                                         ("lcmodel", 3)])
def test_round_trip_through_each_tools_files(tmp_path, fmt, digits):
    cohort = simulate_cohort("ketamine-mrs", rng=3)
    tables = {m: cohort.measure_table(m) for m in MRS}
    folder = tmp_path / fmt
    folder.mkdir()
    files = write_tool_files(tables, fmt, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["mrs-import", "--format", fmt, "--out", str(tmp_path / "o"),
                     *map(str, files)]) == 0
    for m in MRS:
        got = pd.read_csv(tmp_path / "o" / f"roi_{m}.tsv", sep="\t")
        want = tables[m]
        key = ["participant_id", "session", "roi"]
        merged = want.merge(got, on=key, suffixes=("", "_read"))
        assert len(merged) == len(want) == len(got)
        x, y = merged[m].to_numpy(), merged[f"{m}_read"].to_numpy()
        if fmt == "lcmodel":  # 3 significant digits
            np.testing.assert_allclose(y, x, rtol=5e-3)
        else:
            np.testing.assert_allclose(y, x, atol=0.5 * 10.0 ** -digits)
        quality = "fit_error" if fmt == "gannet" else "crlb"
        q = merged[quality + ("_read" if quality == "crlb" else "")]
        tol = 0.5 if fmt == "lcmodel" else 0.5 * 10.0 ** -digits
        np.testing.assert_allclose(q, merged["crlb"], atol=tol)
        assert set(got["unit"]) == ({"mM"} if fmt == "lcmodel" else {"i.u."})


def test_mixed_power_drops_the_spectra_analyze_drops(tmp_path):
    """The power engine's mixed fits with the quality rule are analyze's fits
    (statsmodels, after dtitool.mrs.apply_quality) of the same trial."""
    from dtitool.stats.mixed_power import _fit_chunk, mixed_layout, model_rows

    design = load_preset("ketamine-rct-mrs").with_n(40)
    out = tmp_path / "c"
    cohort = simulate_cohort(design, rng=2)
    out.mkdir()
    cohort.write(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["analyze", str(out), "--model", "mixed", "--time", "visit",
                     "--max-crlb", "9", "--out", str(tmp_path / "m.tsv")]) == 0
    want = pd.read_csv(tmp_path / "m.tsv", sep="\t")
    want = want[want["measure"] == "gaba"].set_index("term")
    layout = mixed_layout(design, "visit")
    rows = [r for r in model_rows(design) if r["measure"] == "gaba"]
    kept = cohort.arrays.kept_spectra({"crlb": 9})
    assert (~kept[0, :, 0, :]).sum() > 10  # the rule removes gaba spectra here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = _fit_chunk(design, layout, rows, cohort.arrays, "satterthwaite",
                         "arm", "select", {"crlb": 9})
    for j, term in enumerate(layout.terms):
        se = want.loc[term, "se"]
        assert got["estimate"][0, 0, j] * rows[0]["scale"] == pytest.approx(
            want.loc[term, "estimate"] * rows[0]["scale"], abs=1e-4 * se)
        assert got["p"][0, 0, j] == pytest.approx(want.loc[term, "p"], rel=1e-3,
                                                  abs=1e-9)
    none = _fit_chunk(design, layout, rows, cohort.arrays, "satterthwaite",
                      "arm", "select", {"crlb": 99})
    assert not np.allclose(none["estimate"], got["estimate"])


def test_imaging_power_applies_the_quality_rule_and_shows_its_bias():
    """Excluding spectra on their relative CRLB removes low concentrations more
    often (the CRLB in % is inversely related to the value), so the rule biases
    each visit's mean upwards and raises the size of the change test where the
    change varies most (the peak frame); with every spectrum kept the size is
    in its band, and the power agrees with the noncentral t."""
    from dtitool.stats.binomial import size_band
    from dtitool.stats.imaging_change import imaging_power

    design = load_preset("ketamine-mrs").with_n(40)
    R = 4000
    ruled = imaging_power(design, replicates=R, rng=3).set_index(["measure", "term"])
    kept = imaging_power(design, replicates=R, rng=3,
                         quality_limits={"crlb": 1e9}).set_index(["measure", "term"])
    assert ruled.loc[("gaba", "frame2"), "mean_n"] < 39.8
    assert kept.loc[("gaba", "frame2"), "mean_n"] == 40
    lo, hi = size_band(R, 0.05, 1)
    assert ruled.loc[("gaba", "frame2"), "size"] * R > hi
    assert lo <= kept.loc[("gaba", "frame2"), "size"] * R <= hi
    # the peak's bias: the mean change is above its true value under the rule
    assert (ruled.loc[("gaba", "frame2"), "bias"]
            > kept.loc[("gaba", "frame2"), "bias"] + 0.005)
    small = imaging_power(design.with_n(8), replicates=R, rng=3,
                          quality_limits={"crlb": 1e9})
    for _, r in small[small["measure"] != "tcr"].iterrows():
        se = np.sqrt(max(r["power"] * (1 - r["power"]), 1e-9) / R)
        assert abs(r["power"] - r["analytic_power"]) < 3.4 * se + 1e-9, r["term"]


def _holm_any(p, alpha=0.05):
    """Whether Holm's step-down rejects at least once: its smallest p alone."""
    return np.sort(p)[0] <= alpha / len(p)


def test_modality_families_follow_holm_per_modality():
    from dtitool.stats.imaging_change import imaging_rows, imaging_terms
    from dtitool.stats.modalities import modality_power

    design = load_preset("ketamine-rct-mrs")
    rows = imaging_rows(design)
    terms = imaging_terms(design.arms, design.control, design.visit_names)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (400, len(rows), len(terms))) ** 2.5  # small p, often
    t = modality_power(design, rows, terms, p, p[::-1]).set_index("modality")
    assert list(t.index) == ["MD", "MRS", "all", "any"]
    contrast = [j for j, x in enumerate(terms) if ":" in x]
    fam = {"MD": [i for i, r in enumerate(rows) if r["kind"] == "md"],
           "MRS": [i for i, r in enumerate(rows) if r["kind"] == "extra"]}
    want = {}
    for k, idx in fam.items():
        sub = p[:, idx][:, :, contrast].reshape(len(p), -1)
        want[k] = np.array([_holm_any(x) for x in sub])
        assert t.loc[k, "tests"] == sub.shape[1]
        assert t.loc[k, "power"] == want[k].mean()
    assert 0 < t.loc["MD", "power"] < 1 and 0 < t.loc["MRS", "power"] < 1
    assert t.loc["all", "power"] == (want["MD"] & want["MRS"]).mean()
    every = p[:, :, contrast].reshape(len(p), -1)
    assert t.loc["any", "power"] == np.mean([_holm_any(x) for x in every])
    with pytest.raises(ValueError, match=r"p must have shape \(replicates, 10, 4\)"):
        modality_power(design, rows, terms, p[:, :3])


def test_power_imaging_writes_the_modalities(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["power", "--preset", "ketamine-rct-mrs", "--model", "imaging",
                 "--replicates", "300", "--seed", "1", "--out", str(out)]) == 0
    t = pd.read_csv(out / "modalities.tsv", sep="\t").set_index("modality")
    assert list(t.index) == ["MD", "MRS", "all", "any"]
    assert t.loc["all", "power"] <= min(t.loc["MD", "power"], t.loc["MRS", "power"])
    assert t.loc["MRS", "power"] > 0.95  # the rise during the infusion
    assert "per modality" in capsys.readouterr().out


def test_power_imaging_writes_one_self_contained_page(tmp_path):
    out = tmp_path / "p"
    assert main(["power", "--preset", "ketamine-mrs", "--model", "imaging",
                 "--replicates", "200", "--seed", "1", "--quiet",
                 "--out", str(out)]) == 0
    page = (out / "imaging.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") == 1
    for text in ("Per modality, and together", "Every test", "frame2", "MRS"):
        assert text in page, text


@pytest.mark.parametrize("argv", [
    ["simulate", "--preset", "ketamine-mrs", "--images", "--seed", "1"],
    ["demo", "--preset", "ketamine-mrs", "--seed", "1"]])
def test_md_only_commands_refuse_an_mrs_only_design(tmp_path, capsys, argv):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'ketamine-mrs' has MRS voxels only (mPFC)" in err
    assert err.count("\n") == 1 and not out.exists()
