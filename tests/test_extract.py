import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.imaging.extract import extract_roi_md, ids_from_path, read_lut

AFFINE = np.diag([-3.0, 3.0, 3.0, 1.0])
AFFINE[:3, 3] = [10, -20, -10]
SHAPE = (8, 7, 6)
# The default preset's seven ROIs name the test atlas's labels 1..7.
ROI_NAMES = load_preset("ketamine-rct").roi_names


@pytest.fixture
def atlas_array():
    """Tiny atlas: 7 blocks of labels, background 0, like a nilearn test atlas."""
    lab = np.zeros(SHAPE, dtype=np.int16)
    for n in range(7):
        lab[n, 1 + n % 3 : 4 + n % 3, 1 : 3 + n % 4] = n + 1
    return lab


@pytest.fixture
def atlas(tmp_path, atlas_array):
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(atlas_array, AFFINE), path)
    # its names, in the BIDS sidecar extract reads by default
    pd.DataFrame({"index": range(1, 8), "name": ROI_NAMES}).to_csv(
        tmp_path / "atlas.tsv", sep="\t", index=False)
    return path


def md_map(seed, *, scale=1.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.uniform(0.6e-3, 1.0e-3, SHAPE)).astype(np.float32)


def save(tmp_path, rel, data, affine=AFFINE):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def direct_means(data, lab):
    """Independent implementation: a boolean mask per ROI."""
    return np.array([data[lab == i].astype(float).mean() for i in range(1, 8)])


def test_known_answer_bids_names(tmp_path, atlas, atlas_array):
    data = {
        ("sub-01", "baseline"): md_map(1),
        ("sub-01", "24h"): md_map(2),
        ("sub-02", "baseline"): md_map(3),
    }
    paths = [
        save(
            tmp_path, f"{p}/ses-{s}/dwi/{p}_ses-{s}_model-DTI_param-MD_dwimap.nii.gz", d
        )
        for (p, s), d in data.items()
    ]
    df = extract_roi_md(paths[::-1], atlas)
    assert list(df.columns) == [
        "participant_id",
        "session",
        "roi",
        "md",
        "n_voxels",
        "n_excluded",
    ]
    assert len(df) == 21
    assert df["participant_id"].tolist()[::7] == ["sub-01", "sub-01", "sub-02"]
    assert df["session"].tolist()[::7] == ["baseline", "24h", "baseline"]
    for (p, s), d in data.items():
        sub = df[(df.participant_id == p) & (df.session == s)]
        assert sub["roi"].tolist() == list(ROI_NAMES)
        np.testing.assert_allclose(sub["md"], direct_means(d, atlas_array), rtol=1e-12)
        np.testing.assert_array_equal(
            sub["n_voxels"], [(atlas_array == i).sum() for i in range(1, 8)]
        )
        assert (sub["n_excluded"] == 0).all()


@pytest.mark.parametrize(
    ("rel", "want"),
    [
        ("sub-07/ses-24h/dti_MD.nii.gz", ("sub-07", "24h")),  # FSL dtifit
        ("sub-07/ses-baseline/dipy/md.nii.gz", ("sub-07", "baseline")),  # DIPY
        ("x/sub-A1_ses-24h_MD.nii", ("sub-A1", "24h")),
        ("sub-01/ses-24h/sub-02_ses-baseline_md.nii.gz", ("sub-02", "baseline")),
    ],
)
def test_ids_from_path(rel, want):
    assert ids_from_path(rel) == want


@pytest.mark.parametrize(
    ("rel", "match"),
    [("data/ses-24h/md.nii.gz", "no sub-"), ("sub-01/md.nii.gz", "no ses-")],
)
def test_ids_from_path_missing(rel, match):
    with pytest.raises(ValueError, match=match):
        ids_from_path(rel)


def test_fsl_and_dipy_layouts_and_4d_singleton(tmp_path, atlas, atlas_array):
    fsl = save(tmp_path, "sub-01/ses-baseline/dti_MD.nii.gz", md_map(1))
    dipy = save(tmp_path, "sub-01/ses-24h/md.nii.gz", md_map(2)[..., None])
    df = extract_roi_md([fsl, dipy], atlas)
    np.testing.assert_allclose(
        df["md"][7:], direct_means(md_map(2), atlas_array), rtol=1e-12
    )


def test_ids_sequence_mapping_and_images(tmp_path, atlas, atlas_array):
    imgs = [nib.Nifti1Image(md_map(i), AFFINE) for i in (1, 2)]
    with pytest.raises(ValueError, match=r"<in-memory image>.*nothing names"):
        extract_roi_md(imgs, nib.load(atlas), ids=[("sub-9", "24h")] * 2)
    df = extract_roi_md(
        imgs, nib.load(atlas), lut=atlas.with_suffix("").with_suffix(".tsv"),
        ids=[("sub-9", "24h"), ("sub-9", "baseline")],
        sessions=["baseline", "24h"],
    )
    assert df["session"].tolist()[::7] == ["baseline", "24h"]
    np.testing.assert_allclose(df["md"][:7], direct_means(md_map(2), atlas_array))
    with pytest.raises(ValueError, match="pass ids"):
        extract_roi_md(imgs, atlas)
    with pytest.raises(ValueError, match=r"one .* pair per map"):
        extract_roi_md(imgs, atlas, ids=[("sub-9", "24h")])
    p = save(tmp_path, "scan1.nii.gz", md_map(1))
    df = extract_roi_md([p], atlas, ids={p: ("sub-3", "baseline")})
    assert df["participant_id"].unique().tolist() == ["sub-3"]


def test_mapping_table(tmp_path, atlas, monkeypatch):
    p = save(tmp_path, "maps/a.nii.gz", md_map(1))
    q = save(tmp_path, "maps/b.nii.gz", md_map(2))
    mapping = pd.DataFrame(
        {
            "path": ["maps/a.nii.gz", str(q)],
            "participant_id": ["sub-x", "sub-x"],
            "session": ["baseline", "24h"],
        }
    )
    monkeypatch.chdir(tmp_path)
    df = extract_roi_md([p, q], atlas, ids=mapping)
    assert df["session"].tolist()[::7] == ["baseline", "24h"]
    with pytest.raises(ValueError, match="not listed in the mapping"):
        extract_roi_md([p, q], atlas, ids=mapping.iloc[:1])
    with pytest.raises(ValueError, match="lacks column"):
        extract_roi_md([p], atlas, ids=mapping.drop(columns="session"))


def test_excluded_voxels_warn_with_counts(tmp_path, atlas, atlas_array):
    d = md_map(1)
    roi1 = np.argwhere(atlas_array == 1)
    d[tuple(roi1[0])] = np.nan
    d[tuple(roi1[1])] = 0
    d[tuple(roi1[2])] = -1e-4
    d[tuple(np.argwhere(atlas_array == 3)[0])] = np.nan
    d[0, 0, 0] = np.nan  # outside every ROI: not counted
    d[tuple(roi1[3])] = np.inf  # +inf never enters a mean
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", d)
    with pytest.warns(UserWarning,
                      match=r"excluded 3 non-finite \(NaN or infinite\), 1 zero "
                      "and 1 negative"):
        df = extract_roi_md([p], atlas)
    assert df["n_excluded"].tolist() == [4, 0, 1, 0, 0, 0, 0]
    keep = np.isfinite(d) & (d > 0)
    want = [d[(atlas_array == i) & keep].astype(float).mean() for i in range(1, 8)]
    np.testing.assert_allclose(df["md"], want, rtol=1e-12)
    assert df["n_voxels"][0] == (atlas_array == 1).sum() - 4


def test_roi_with_no_usable_voxels(tmp_path, atlas, atlas_array):
    d = md_map(1)
    d[atlas_array == 5] = np.nan
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            ValueError, match=r"no usable .* ROI\(s\) \['L_hippocampus'\]"
        ):
            extract_roi_md([p], atlas)


def test_grid_mismatch_names_both(tmp_path, atlas):
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1)[:, :, :5])
    with pytest.raises(ValueError, match=r"\(8, 7, 5\).*atlas.*\(8, 7, 6\)"):
        extract_roi_md([p], atlas)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.5
    q = save(tmp_path, "sub-02_ses-baseline_MD.nii.gz", md_map(1), shifted)
    with pytest.raises(ValueError, match=r"sub-02_ses-baseline_MD.*affine.*11\.5.*10"):
        extract_roi_md([q], atlas)


def test_4d_and_non_nifti_inputs(tmp_path, atlas):
    p = save(
        tmp_path, "sub-01_ses-baseline_dwi.nii.gz", np.ones((*SHAPE, 5), np.float32)
    )
    with pytest.raises(ValueError, match=r"shape \(8, 7, 6, 5\).*3D.*4D DWI"):
        extract_roi_md([p], atlas)
    txt = tmp_path / "sub-01_ses-baseline_MD.nii.gz"
    txt.write_text("not an image")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        extract_roi_md([txt], atlas)
    mgh = tmp_path / "sub-01_ses-24h_MD.mgz"
    nib.save(nib.MGHImage(md_map(1), AFFINE), mgh)
    with pytest.raises(ValueError, match="MGHImage, not NIfTI"):
        extract_roi_md([mgh], atlas)
    with pytest.raises(ValueError, match="does not exist"):
        extract_roi_md([tmp_path / "nope.nii.gz"], atlas)
    with pytest.raises(ValueError, match="no MD maps"):
        extract_roi_md([], atlas)


def test_bad_atlas(tmp_path, atlas, atlas_array):
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1))
    frac = save(tmp_path, "frac.nii.gz", atlas_array.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match="non-integer"):
        extract_roi_md([p], frac)
    extra = atlas_array.copy()
    extra[-1, -1, -1] = 9
    big = save(tmp_path, "big.nii.gz", extra)
    with pytest.raises(ValueError, match=r"nothing names them .*'big.tsv'.*--lut"):
        extract_roi_md([p], big)
    with pytest.raises(ValueError, match=r"label\(s\) \[9\] that the lookup table"):
        extract_roi_md([p], big, lut=tmp_path / "atlas.tsv")


def test_lut_checks(tmp_path, atlas, atlas_array):
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1))
    lut = pd.DataFrame({"index": range(1, 8), "name": list(ROI_NAMES)})
    # any names are ROI names; a name must be one, though
    other = lut.assign(name=lut.name.replace("vACC", "sgACC"))
    assert extract_roi_md([p], atlas, lut=other)["roi"].iloc[-1] == "sgACC"
    bad = lut.assign(name=lut.name.replace("vACC", "v\tACC"))
    with pytest.raises(ValueError, match=r"\['v\\tACC'\].*tabs"):
        extract_roi_md([p], atlas, lut=bad)
    with pytest.raises(ValueError, match="lacks column"):
        extract_roi_md([p], atlas, lut=lut.rename(columns={"name": "label"}))
    with pytest.raises(ValueError, match="repeats name"):
        read_lut(lut.assign(name="vACC"))
    with pytest.raises(ValueError, match="positive integers"):
        read_lut(lut.assign(index=lut["index"] - 1))
    # A LUT that lacks an atlas label, and a LUT ROI absent from the atlas.
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that the lookup"):
        extract_roi_md([p], atlas, lut=lut.iloc[:6])
    sub = atlas_array.copy()
    sub[sub == 7] = 0
    small = save(tmp_path, "small.nii.gz", sub)
    with pytest.raises(ValueError, match=r"\['vACC'\].*no voxels"):
        extract_roi_md([p], small, lut=lut)
    # A subset atlas with a matching LUT works; sidecar TSV is found.
    lut.iloc[:6].to_csv(tmp_path / "small.tsv", sep="\t", index=False)
    df = extract_roi_md([p], small)
    assert df["roi"].tolist() == list(ROI_NAMES[:6])


@pytest.mark.parametrize(
    ("scale", "match"), [(1e6, "um\\^2/s"), (1e3, "1e-3 mm"), (1e-6, "m\\^2/s")]
)
def test_unit_error(tmp_path, atlas, scale, match):
    # The README promises an error (values in another unit would enter the
    # models 1e3-1e6 times off), naming the unit assumed and the first map.
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1, scale=scale))
    with pytest.raises(ValueError,
                       match=f"sub-01_ses-baseline.*assumes mm\\^2/s.*{match}"):
        extract_roi_md([p], atlas)


def test_duplicate_and_bad_session(tmp_path, atlas):
    p = save(tmp_path, "a/sub-01_ses-baseline_MD.nii.gz", md_map(1))
    q = save(tmp_path, "b/sub-01_ses-baseline_MD.nii.gz", md_map(2))
    with pytest.raises(ValueError, match="both sub-01 session baseline"):
        extract_roi_md([p, q], atlas)
    r = save(tmp_path, "sub-01_ses-post_MD.nii.gz", md_map(2))
    with pytest.raises(ValueError,
                       match=r"session 'post'; the visits are \['baseline', '24h'\]"):
        extract_roi_md([r], atlas, sessions=["baseline", "24h"])
    assert extract_roi_md([r], atlas)["session"].unique().tolist() == ["post"]


def test_cli_extract(tmp_path, atlas, atlas_array, capsys):
    p = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1))
    q = save(tmp_path, "sub-01_ses-24h_MD.nii.gz", md_map(2))
    out = tmp_path / "res" / "roi_md.tsv"
    rc = main(["extract", "--labels", str(atlas), "--out", str(out), str(p), str(q)])
    assert rc == 0
    assert "2 map(s) x 7 ROIs" in capsys.readouterr().out
    df = pd.read_csv(out, sep="\t")
    np.testing.assert_allclose(
        df["md"][:7], direct_means(md_map(1), atlas_array), rtol=1e-9
    )
    # Refuses to overwrite; --force replaces.
    rc = main(["extract", "--labels", str(atlas), "--out", str(out), str(p)])
    assert rc == 2
    assert "already exists" in capsys.readouterr().err
    rc = main(["extract", "--labels", str(atlas), "--out", str(out), "--force", str(p)])
    assert rc == 0
    assert len(pd.read_csv(out, sep="\t")) == 7


def test_cli_extract_mapping_and_lut(tmp_path, atlas, capsys):
    save(tmp_path, "m/scanA.nii.gz", md_map(1))
    save(tmp_path, "m/scanB.nii.gz", md_map(2))
    mapping = tmp_path / "map.tsv"
    pd.DataFrame(
        {
            "path": ["m/scanA.nii.gz", "m/scanB.nii.gz"],
            "participant_id": ["sub-5", "sub-5"],
            "session": ["24h", "baseline"],
        }
    ).to_csv(mapping, sep="\t", index=False)
    # the schedule: visits.tsv beside the output table
    pd.DataFrame({"visit": ["baseline", "24h"], "hours": [0, 24], "dose": ["", ""],
                  "primary": ["false", "true"]}).to_csv(
        tmp_path / "visits.tsv", sep="\t", index=False)
    lut = tmp_path / "lut.tsv"
    pd.DataFrame({"index": range(1, 8), "name": list(ROI_NAMES)}).to_csv(
        lut, sep="\t", index=False
    )
    out = tmp_path / "roi_md.tsv"
    rc = main(
        [
            "extract",
            "--labels",
            str(atlas),
            "--lut",
            str(lut),
            "--mapping",
            str(mapping),
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    df = pd.read_csv(out, sep="\t")
    assert df["session"].tolist()[::7] == ["baseline", "24h"]


@pytest.mark.parametrize(
    "kind", ["4d", "grid", "unknown-lut", "no-ids", "missing-file", "no-labels"]
)
def test_cli_extract_failure_writes_nothing(tmp_path, atlas, capsys, kind):
    good = save(tmp_path, "sub-01_ses-baseline_MD.nii.gz", md_map(1))
    args = ["extract", "--labels", str(atlas)]
    maps = [str(good)]
    if kind == "4d":
        maps.append(
            str(
                save(
                    tmp_path,
                    "sub-01_ses-24h_MD.nii.gz",
                    np.ones((*SHAPE, 3), np.float32),
                )
            )
        )
    elif kind == "grid":
        maps.append(
            str(
                save(
                    tmp_path, "sub-01_ses-24h_MD.nii.gz", np.ones((4, 4, 4), np.float32)
                )
            )
        )
    elif kind == "unknown-lut":
        lut = tmp_path / "lut.tsv"
        pd.DataFrame({"index": range(1, 7), "name": list("abcdef")}).to_csv(
            lut, sep="\t", index=False
        )
        args += ["--lut", str(lut)]
    elif kind == "no-ids":
        maps = [str(save(tmp_path, "scan.nii.gz", md_map(1)))]
    elif kind == "missing-file":
        maps.append(str(tmp_path / "sub-02_ses-baseline_MD.nii.gz"))
    elif kind == "no-labels":
        args = ["extract"]
    out = tmp_path / "out" / "roi_md.tsv"
    rc = main([*args, "--out", str(out), *maps])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not out.parent.exists()
