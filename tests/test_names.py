"""The data layer with names of a design's own.

A design with arms drug/placebo (control placebo), visits pre/week1, outcomes
hamd (HAM-D17) and bdi (BDI-II) and ROIs thalamus/putamen is simulated, written
and read back: every name is the design's, and none of the default preset's
appears in any file.
"""

import json
import re
import warnings

import pandas as pd
import pytest
import tomli_w
from _designs import ARMS, DEFAULT_NAMES, OUTCOMES, ROIS, VISITS, drug_placebo

from dtitool.columns import sidecar
from dtitool.design import TrialNames, design_to_dict, load_preset
from dtitool.simulate import COHORT_FILES, describe_design, simulate_cohort
from dtitool.tables import (
    check_tables,
    compute_changes,
    outcomes_in,
    read_tables,
    read_visits,
    reserved_columns,
)


@pytest.fixture(scope="module")
def design():
    return drug_placebo()


@pytest.fixture(scope="module")
def folder(design, tmp_path_factory):
    out = tmp_path_factory.mktemp("drug-placebo")
    written = simulate_cohort(design, rng=5).write(out)
    assert written == COHORT_FILES
    return out


def _default_in(text: str, *, prose: bool) -> list[str]:
    """Default names in ``text``: as whole words in prose ("the baseline visit"
    is English, not the default visit name), as substrings elsewhere."""
    names = [n for n in DEFAULT_NAMES if not (prose and n == "baseline")]
    return [n for n in names if re.search(re.escape(n), text, re.IGNORECASE)]


def test_cohort_tables_use_the_designs_names(design, folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    assert list(p.columns) == ["participant_id", "group", "hamd_pre", "hamd_week1",
                               "bdi_pre", "bdi_week1", "age", "sex"]
    assert set(p["group"]) == set(ARMS)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype=str)
    assert tuple(r["session"].unique()) == VISITS
    assert tuple(r["roi"].unique()) == ROIS
    t = pd.read_csv(folder / "true_md.tsv", sep="\t", dtype=str)
    assert tuple(t["session"].unique()) == VISITS
    v = pd.read_csv(folder / "visits.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert v.to_dict("list") == {"visit": list(VISITS), "hours": ["0", "168"],
                                 "dose": ["", ""], "primary": ["false", "true"]}
    assert read_visits(folder / "visits.tsv") == design.visits


def test_no_default_name_in_any_file(folder):
    for path in sorted(folder.iterdir()):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".tsv":
            cells = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
            words = " ".join([*cells.columns, *cells.to_numpy().ravel()])
            assert not _default_in(words, prose=False), path.name
        elif path.suffix == ".json":
            side = json.loads(text)
            keys = [*side, *(k for e in side.values() for k in e.get("Levels", {}))]
            assert not _default_in(" ".join(keys), prose=False), path.name
            assert not _default_in(text, prose=True), path.name
        else:  # design.toml: field names such as baseline_mean are the schema's
            assert not _default_in(text, prose=True), path.name


def test_sidecars_describe_the_designs_names(folder):
    p = json.loads((folder / "participants.json").read_text())
    assert p["group"]["Levels"] == {
        "drug": "treatment arm",
        "placebo": "control arm (the reference of the group x dMD interaction)"}
    assert p["hamd_week1"]["Description"].startswith("HAM-D17 total score at visit "
                                                     "week1, 168 hours")
    assert "(0-52; empty if missing)" in p["hamd_week1"]["Description"]
    assert p["bdi_pre"]["Description"].startswith("BDI-II total score at the "
                                                  "baseline visit (pre) (0-63)")
    r = json.loads((folder / "roi_md.json").read_text())
    assert list(r["session"]["Levels"]) == list(VISITS)
    assert list(r["roi"]["Levels"]) == list(ROIS)


def test_read_tables_gives_every_name(design, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, _ = read_tables(folder)
    names = p.attrs["trial_names"]
    assert names == design.names
    assert names.arms == ARMS and names.control == "placebo"
    assert names.visits == VISITS and names.primary == "week1"
    assert names.terms == ("interaction", "slope_drug", "slope_placebo",
                           "slope_pooled")
    assert outcomes_in(p) == OUTCOMES
    ch = compute_changes(folder / "participants.tsv", folder / "roi_md.tsv")
    assert list(ch.columns[:7]) == ["participant_id", "group", "roi", "md_pre",
                                    "md_week1", "d_md", "d_md_pct"]
    assert {"d_hamd", "d_bdi", "hamd_pre", "bdi_week1"} <= set(ch.columns)
    assert tuple(ch["roi"].unique()) == ROIS
    assert ch.attrs["trial_names"] == design.names


def test_visits_tsv_alone_with_control(folder, tmp_path):
    """No design.toml: visits.tsv gives the visits, control= the control arm."""
    for name in ("participants.tsv", "roi_md.tsv", "visits.tsv"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ValueError, match=r"^the control arm of these tables cannot "
                       r"be determined: give control=ARM"):
        read_tables(tmp_path)
    p, _ = read_tables(tmp_path, control="placebo")
    assert p.attrs["trial_names"].visits == VISITS
    assert outcomes_in(p) == OUTCOMES
    # explicit names win over nothing; a disagreeing visits.tsv is an error
    with pytest.raises(ValueError, match=r"visits.tsv \(pre, week1\) disagree"):
        read_tables(tmp_path, design=load_preset("ketamine-rct"))


def test_missing_names_are_one_sentence_errors(folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    with pytest.raises(ValueError, match=r"^the control arm") as e:
        check_tables(p, r)
    msg = str(e.value)
    assert msg.count(". ") == 0 and "\n" not in msg
    assert "control arm" in msg and "control=ARM" in msg
    with pytest.raises(ValueError, match=r"^the visits \(which is the baseline, "
                       r"which the follow-up\) of these tables cannot be "
                       r"determined: give visits=") as e:
        check_tables(p, r, control="placebo")
    assert "\n" not in str(e.value)
    got, _ = check_tables(p, r, control="placebo", visits=VISITS)
    assert got.attrs["trial_names"].arms == ARMS


def test_unknown_group_level_is_an_error_naming_it(design, folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    p.loc[3, "group"] = "active"
    with pytest.raises(ValueError, match=r"unknown group label\(s\) 'active'; "
                       r"expected one of 'drug', 'placebo' \(the design's arms\)"):
        check_tables(p, r, design=design)
    # without a design, three levels are a three-arm trial, control last
    with pytest.raises(ValueError, match=r"the active arm has 1 participant"):
        check_tables(p, r, control="placebo", visits=VISITS)
    p.loc[3:8, "group"] = "active"
    got, _ = check_tables(p, r, control="placebo", visits=VISITS)
    assert got.attrs["trial_names"].arms == ("drug", "active", "placebo")
    assert got.attrs["trial_names"].interactions == ("interaction_drug",
                                                     "interaction_active")
    # one level is a single-arm course (its arm the "control")
    one = p[p["group"] == "placebo"]
    got, _ = check_tables(one, r[r["participant_id"].isin(one["participant_id"])],
                          control="placebo", visits=VISITS)
    assert got.attrs["trial_names"].terms == ("slope_placebo", "slope_pooled")
    with pytest.raises(ValueError, match=r"control arm 'sham' is not a level"):
        check_tables(p, r, control="sham", visits=VISITS)


def test_unknown_session_level_is_an_error_naming_it(design, folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    r.loc[0, "session"] = "week2"
    with pytest.raises(ValueError, match=r"unknown session label\(s\) 'week2'; "
                       r"expected 'pre' or 'week1'"):
        check_tables(p, r, design=design)


def test_hamd_columns_are_an_outcome():
    names = TrialNames(arms=("drug", "placebo"), control="placebo",
                       visits=("pre", "week1"))
    p = pd.DataFrame(columns=["participant_id", "group", "hamd_pre", "hamd_week1",
                              "age"])
    assert outcomes_in(p, names) == ("hamd",)
    assert "d_hamd" in reserved_columns(names, ["hamd"])
    assert "md_week1" in reserved_columns(names)


def test_unusable_score_columns_warn(design, folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    half = p.drop(columns="bdi_week1")
    with pytest.warns(UserWarning, match=r"has 'bdi_pre' but not 'bdi_week1'; "
                      r"outcome 'bdi' needs both and is not analysed"):
        got, _ = check_tables(half, r, design=design)
    assert outcomes_in(got) == ("hamd",)
    later = p.assign(hamd_week4=p["hamd_week1"])
    with pytest.warns(UserWarning, match=r"column 'hamd_week4' looks like a score "
                      r"of outcome 'hamd' at visit 'week4', which is not a visit"):
        check_tables(later, r, design=design)
    gone = p.drop(columns=["bdi_pre", "bdi_week1"])
    with pytest.warns(UserWarning, match=r"no score columns for the design's "
                      r"outcome\(s\) bdi"):
        check_tables(gone, r, design=design)


def test_scores_outside_the_designs_scale(design, folder):
    p = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    p.loc[0, "hamd_week1"] = "53"
    with pytest.raises(ValueError, match=r"'hamd_week1' has score 53 .* range 0-52"):
        check_tables(p, r, design=design)


def test_version_1_folder_still_reads(tmp_path):
    """A folder of the previous version: design.toml without schema, no visits.tsv."""
    c = simulate_cohort("ketamine-rct", rng=7)
    c.write(tmp_path)
    (tmp_path / "visits.tsv").unlink()
    (tmp_path / "visits.json").unlink()
    # the same design in the version 1 form: no schema, control or visits
    d = design_to_dict(load_preset("ketamine-rct"))
    del d["schema"], d["visits"], d["trial"]["control"]
    d["sources"] = {k: v for k, v in d["sources"].items()
                    if k not in ("visits", "trial.control")}
    v1 = tomli_w.dumps(d)
    (tmp_path / "design.toml").write_text(v1)
    p, _ = read_tables(tmp_path)
    names = p.attrs["trial_names"]
    assert names.arms == ("ketamine", "saline") and names.control == "saline"
    assert names.visits == ("baseline", "24h")
    assert outcomes_in(p) == ("madrs", "qids")


def test_summaries_speak_of_the_designs_names(design):
    text = describe_design(design, participants=400)
    assert "visits pre and week1" in text and "Scores at visit week1" in text
    assert not _default_in(text.replace("baseline", ""), prose=True)
    side = sidecar(pd.DataFrame({"term": ["interaction"], "outcome": ["hamd"]}),
                   design=design)
    assert side["term"]["Levels"]["interaction"] == ("group x dMD interaction: drug "
                                                     "slope minus placebo slope")
    assert side["outcome"]["Levels"]["hamd"] == "HAM-D17 (clinician-rated, 0-52)"
