"""``dtitool extract`` with names of the user's own: ROIs, sessions, measures."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _designs import DEFAULT_NAMES, ROIS, VISITS, drug_placebo

from dtitool.cli import main
from dtitool.imaging.phantom import ATLAS_FILENAME, LUT_FILENAME
from dtitool.imaging.synthetic import write_cohort_images
from dtitool.simulate import simulate_cohort

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (6, 5, 4)


@pytest.fixture
def study(tmp_path):
    """An atlas of labels 1-2 (no LUT beside it), a LUT naming them, maps of
    two participants at visits pre and week1 (MD and FA)."""
    lab = np.zeros(SHAPE, np.int16)
    lab[:3, 1:4, 1:3] = 1
    lab[3:, 1:4, 1:3] = 2
    nib.save(nib.Nifti1Image(lab, AFFINE), tmp_path / "atlas.nii.gz")
    pd.DataFrame({"index": [1, 2], "name": ["thalamus", "putamen"]}).to_csv(
        tmp_path / "names.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    for sub in ("sub-01", "sub-02"):
        for ses in ("pre", "week1"):
            folder = tmp_path / "maps" / sub / f"ses-{ses}"
            folder.mkdir(parents=True)
            for kind, lo, hi in (("MD", 0.6e-3, 1.0e-3), ("FA", 0.1, 0.5)):
                data = rng.uniform(lo, hi, SHAPE).astype(np.float32)
                nib.save(nib.Nifti1Image(data, AFFINE),
                         folder / f"{sub}_ses-{ses}_{kind}.nii.gz")
    return tmp_path


def maps(study, kind="MD"):
    return sorted(str(p) for p in (study / "maps").rglob(f"*_{kind}.nii.gz"))


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_lut_names_and_sessions_pass_through(study, capsys):
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", "--out", study / "roi_md.tsv",
                        *maps(study)], capsys)
    assert code == 0, err
    df = pd.read_csv(study / "roi_md.tsv", sep="\t")
    assert list(df.columns[:4]) == ["participant_id", "session", "roi", "md"]
    assert df["roi"].unique().tolist() == ["thalamus", "putamen"]
    assert df["session"].unique().tolist() == ["pre", "week1"]
    assert len(df) == 8


def test_no_lut_is_one_line_naming_the_problem(study, capsys):
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--out",
                        study / "roi_md.tsv", *maps(study)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "nothing names them" in err and "--lut" in err
    assert "columns index and name" in err  # the format
    assert not (study / "roi_md.tsv").exists()


def test_measure_fa(study, capsys):
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", "--measure", "fa", "--out", study,
                        *maps(study, "FA")], capsys)
    assert code == 0, err
    df = pd.read_csv(study / "roi_fa.tsv", sep="\t")
    assert list(df.columns) == ["participant_id", "session", "roi", "fa",
                                "n_voxels", "n_excluded"]
    assert df["fa"].between(0.1, 0.5).all()
    meta = json.loads((study / "roi_fa.json").read_text())
    assert meta["fa"]["Units"] == ""
    assert list(meta) == list(df.columns)
    # a named measure and its unit: no MD unit check on values of 0.1-0.5
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", "--measure", "naa_cr", "--unit",
                        "ratio", "--out", study, *maps(study, "FA")], capsys)
    assert code == 0, err
    assert json.loads((study / "roi_naa_cr.json").read_text())["naa_cr"][
        "Units"] == "ratio"
    # the MD check still holds for md
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", "--out", study / "x.tsv",
                        *maps(study, "FA")], capsys)
    assert code == 2 and "mm^2/s" in err


@pytest.mark.parametrize(("extra", "match"), [
    (["--measure", "1fa"], "letters, digits and underscores"),
    (["--measure", "roi"], "may not be 'roi'"),
    (["--unit", "um^2/s"], "MD maps are read in mm^2/s"),
])
def test_bad_measure_or_unit(study, capsys, extra, match):
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", *extra, "--out", study / "t.tsv",
                        *maps(study)], capsys)
    assert code == 2 and match in err


def test_visits_order_the_sessions(study, capsys):
    pd.DataFrame({"visit": ["week1", "pre"], "hours": [0, 168], "dose": ["", ""],
                  "primary": ["false", "true"]}).to_csv(
        study / "visits.tsv", sep="\t", index=False)
    code, out, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                          study / "names.tsv", "--out", study / "roi_md.tsv",
                          *maps(study)], capsys)
    assert code == 0, err
    assert "visits.tsv" in out
    df = pd.read_csv(study / "roi_md.tsv", sep="\t")
    assert df["session"].unique().tolist() == ["week1", "pre"]
    pd.DataFrame({"visit": ["pre", "week4"], "hours": [0, 672], "dose": ["", ""],
                  "primary": ["false", "true"]}).to_csv(study / "v1.tsv", sep="\t",
                                                        index=False)
    code, _, err = run(["extract", "--labels", study / "atlas.nii.gz", "--lut",
                        study / "names.tsv", "--visits", study / "v1.tsv",
                        "--out", study / "o.tsv", *maps(study)], capsys)
    assert code == 2 and "session 'week1'" in err


def test_simulated_tree_of_a_design_is_self_describing(tmp_path, capsys):
    design = drug_placebo(n=4)
    cohort = simulate_cohort(design, rng=5)
    tree = tmp_path / "images"
    index = write_cohort_images(cohort.participants, cohort.roi_md, tree, rng=5,
                                sessions=design.visit_names)
    lut = pd.read_csv(tree / LUT_FILENAME, sep="\t")
    assert lut["name"].tolist() == list(ROIS)
    paths = [tree / p for p in index["md_path"]]
    for extra in ([], ["--lut", tree / LUT_FILENAME]):
        out = tmp_path / f"roi_md{len(extra)}.tsv"
        code, said, err = run(["extract", "--labels", tree / ATLAS_FILENAME,
                               *extra, "--out", out, *paths], capsys)
        assert code == 0, err
        assert ("beside the atlas" in said) == (not extra)
        df = pd.read_csv(out, sep="\t")
        assert df["roi"].unique().tolist() == list(ROIS)
        assert df["session"].unique().tolist() == list(VISITS)
        merged = df.merge(cohort.roi_md, on=["participant_id", "session", "roi"])
        np.testing.assert_allclose(merged["md_x"], merged["md_y"], rtol=1e-5)
        text = out.read_text() + out.with_suffix(".json").read_text()
        assert not [n for n in DEFAULT_NAMES if n in text]
