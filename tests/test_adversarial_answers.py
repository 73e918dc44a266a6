"""Hostile inputs whose right answer is a correct result, not a refusal.

Each of these once ended in a traceback or a silently wrong number. Built from
the command line and nibabel only, like tests/test_adversarial.py, so that they
run against any checkout.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _adversarial_world import (
    AFFINE,
    DWI_SHAPE,
    atlas_array,
    dwi_data,
    extract_args,
    fit_args,
    md_map,
    protocol,
    quiet_main,
    save_nifti,
    write_gradients,
)


def _tables(w, edit):
    d = w / "bad" / "t"
    d.mkdir(parents=True)
    p = pd.read_csv(w / "cohort" / "participants.tsv", sep="\t",
                    dtype={"participant_id": str})
    r = pd.read_csv(w / "cohort" / "roi_md.tsv", sep="\t",
                    dtype={"participant_id": str})
    p, r = edit(p, r)
    p.to_csv(d / "participants.tsv", sep="\t", index=False)
    r.to_csv(d / "roi_md.tsv", sep="\t", index=False)
    for f in ("design.toml", "visits.tsv"):  # the trial's names travel along
        (d / f).write_bytes((w / "cohort" / f).read_bytes())
    return d


def _ok(argv):
    code, out, err = quiet_main(argv)
    assert code == 0, err
    assert "Traceback" not in err
    return out, err


def _results(w):
    return pd.read_csv(w / "res.tsv", sep="\t")


@pytest.mark.parametrize("name", ["lambda", "class", "C"])
def test_columns_named_like_python_or_patsy_work(world, name):
    w = world
    rng = np.random.default_rng(0)

    def edit(p, r):
        return p.assign(**{name: rng.normal(40, 10, len(p))}), r

    d = _tables(w, edit)
    covs = ["--covariates", "baseline", name] if name != "C" else []
    _ok(["analyze", d, "--out", w / "res.tsv", *covs])
    assert np.isfinite(_results(w)["p"]).all()


@pytest.mark.parametrize("inference", [
    pytest.param("ols", marks=pytest.mark.slow),
    pytest.param("hc3", marks=pytest.mark.slow), "welch"])
def test_singular_model_is_not_estimable_not_p_1(world, inference):
    w = world
    def edit(p, r):
        # every subject's MD the same at both sessions: no dMD variation
        r = r.copy()
        r["md"] = np.where(r["session"] == "24h", 8e-4, 8e-4)
        return p, r

    d = _tables(w, edit)
    out, err = _ok(["analyze", d, "--out", w / "res.tsv", "--compare", "--figures",
                    w / "figs", "--inference", inference])
    t = _results(w)
    assert t["p"].isna().all() and t["se"].isna().all()
    assert "not estimable" in err and "d_md does not vary" in err
    assert "not estimable" in out  # the comparison with the reported findings


def test_ids_are_text(world):
    w = world
    def edit(p, r):
        # numeric-looking IDs: "001" is not "1", "1.10" is not "1.1"
        ids = p["participant_id"].tolist()
        names = ["001", "1", "1.1", "1.10"] + [str(100 + i) for i in range(16)]
        new = dict(zip(ids, names, strict=True))
        return (p.replace({"participant_id": new}),
                r.replace({"participant_id": new}))

    d = _tables(w, edit)
    _ok(["analyze", d, "--out", w / "res.tsv"])
    assert _results(w)["n"].max() == 20


def test_inf_voxels_are_excluded_and_counted(world):
    w = world
    lab = atlas_array()
    data = md_map(3)
    data[np.argwhere(lab == 1)[0][0], np.argwhere(lab == 1)[0][1],
         np.argwhere(lab == 1)[0][2]] = np.inf
    m = save_nifti(w / "bad" / "sub-02_ses-baseline_MD.nii.gz", data)
    _, err = _ok(extract_args(w, m))
    t = pd.read_csv(w / "ex" / "roi_md.tsv", sep="\t", dtype={"participant_id": str})
    row = t[(t.participant_id == "sub-02") & (t.roi == "L_BA10")].iloc[0]
    assert np.isfinite(row["md"]) and row["n_excluded"] == 1
    assert "excluded" in err


def test_huge_label_named_in_the_lookup_table(world):
    w = world
    lab = atlas_array().astype(np.int64)
    lab[lab == 7] = 2**40
    a = save_nifti(w / "bad" / "a.nii.gz", lab)
    lut = w / "bad" / "lut.tsv"
    lut.write_text((w / "img" / "lut.tsv").read_text().replace("7\tvACC",
                                                                f"{2**40}\tvACC"))
    _ok(extract_args(w, labels=a, lut=lut))
    t = pd.read_csv(w / "ex" / "roi_md.tsv", sep="\t")
    assert (t["roi"] == "vACC").sum() == 2


def test_zero_voxel_has_fa_0(world):
    w = world
    data = dwi_data()
    data[1, 1, 1] = 0.0  # a voxel of zeros inside the mask
    dwi = save_nifti(w / "bad" / "z.nii.gz", data)
    _ok(fit_args(w, dwi=dwi))
    fa = nib.load(w / "fit" / "sub-01_FA.nii.gz").get_fdata()
    assert fa[1, 1, 1] == 0 and fa.max() <= 1


def test_fit_without_mask_keeps_the_background_out(world):
    w = world
    rng = np.random.default_rng(3)
    shape = (24, 24, 20)
    xyz = np.indices(shape) - np.array([12, 12, 10])[:, None, None, None]
    brain = (xyz**2).sum(axis=0) < 9**2
    bvals, bvecs = protocol()
    signal = np.zeros((*shape, 70))
    signal[brain] = dwi_data()[0, 0, 0]
    noise = rng.normal(0, 15, (2, *shape, 70))
    data = np.hypot(signal + noise[0], noise[1]).astype(np.float32)
    save_nifti(w / "bad" / "dwi.nii.gz", data, AFFINE)
    write_gradients(w / "bad", bvals, bvecs, "dwi")
    _ok(["fit-tensor", w / "bad" / "dwi.nii.gz", "--bval", w / "bad" / "dwi.bval",
         "--bvec", w / "bad" / "dwi.bvec", "--out", w / "fit" / "s"])
    fa = nib.load(w / "fit" / "s_FA.nii.gz").get_fdata()
    md = nib.load(w / "fit" / "s_MD.nii.gz").get_fdata()
    assert fa.max() <= 1 and md.min() >= 0
    assert fa[~brain].max() == 0
    assert (w / "fit" / "s_mask.nii.gz").is_file()


def test_b0_at_small_b_enters_at_its_b(world):
    w = world
    # one b0 at b = 20 with a direction, data acquired at that b
    bvals, bvecs = protocol()
    b0 = np.flatnonzero(bvals == 0)
    bvals[b0[1]] = 20.0
    bvecs[b0[1]] = [0.6, 0.0, 0.8]
    md_true = 0.8e-3
    data = 1000.0 * np.exp(-bvals * md_true) * np.ones((*DWI_SHAPE, 1))
    dwi = save_nifti(w / "bad" / "b.nii.gz", data.astype(np.float64))
    bval, bvec = w / "bad" / "g.bval", w / "bad" / "g.bvec"
    write_gradients(w / "bad", bvals, bvecs, "g")
    _ok(fit_args(w, dwi=dwi, bval=bval, bvec=bvec))
    md = nib.load(w / "fit" / "sub-01_MD.nii.gz").get_fdata()
    mask = nib.load(w / "dwi" / "mask.nii.gz").get_fdata() > 0
    np.testing.assert_allclose(md[mask], md_true, rtol=1e-5)


def test_formula_is_documented_to_run_python_code():
    from pathlib import Path

    import dtitool

    doc = " ".join(dtitool.fit_models.__doc__.split())
    assert "The formula is Python code" in doc and "eval" in doc
    docs = Path(__file__).resolve().parents[1] / "docs" / "model.md"
    assert "runs any Python code it contains" in " ".join(docs.read_text().split())
