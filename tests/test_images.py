import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.imaging.extract import extract_roi_md
from dtitool.imaging.phantom import ATLAS_FILENAME, LUT_FILENAME, make_phantom
from dtitool.imaging.synthetic import (
    BACKGROUND_MD,
    MD_MAP_RTOL,
    image_seed_sequence,
    md_map_path,
    simulate_dwi,
    simulate_md_maps,
    write_cohort_images,
)

# The default preset's ROIs: the phantom places them as it always has.
ROI_NAMES = load_preset("ketamine-rct").roi_names


@pytest.fixture(scope="module")
def phantom():
    # 4 mm grid: 46 x 55 x 46, fast enough for many maps.
    return make_phantom(roi_names=ROI_NAMES, resolution=4.0)


def make_table(n=3, *, seed=0, drop_24h=()):
    rng = np.random.default_rng(seed)
    rows = [
        (f"sub-{i:03d}", ses, roi, 0.8e-3 + rng.normal(0, 4e-5))
        for i in range(1, n + 1)
        for ses in ("baseline", "24h")
        for roi in ROI_NAMES
        if not (ses == "24h" and i in drop_24h)
    ]
    return pd.DataFrame(rows, columns=["participant_id", "session", "roi", "md"])


def roi_means(md, phantom):
    return np.array(
        [md[phantom.labels == i].mean(dtype=np.float64) for i in range(1, 8)]
    )


def test_roi_means_equal_table(phantom):
    table = make_table(3)
    scans = list(simulate_md_maps(table, phantom=phantom, rng=1))
    assert [(s.participant_id, s.session) for s in scans] == [
        (f"sub-{i:03d}", ses) for i in (1, 2, 3) for ses in ("baseline", "24h")
    ]
    for s in scans:
        assert s.md.dtype == np.float32
        assert s.md.shape == phantom.shape
        want = (
            table[
                (table.participant_id == s.participant_id)
                & (table.session == s.session)
            ]
            .set_index("roi")
            .loc[list(ROI_NAMES), "md"]
            .to_numpy()
        )
        np.testing.assert_allclose(roi_means(s.md, phantom), want, rtol=MD_MAP_RTOL)


def test_background_md_by_tissue(phantom):
    table = make_table(1)
    md = next(simulate_md_maps(table, phantom=phantom, rng=2)).md
    assert np.all(md[phantom.tissue == 0] == 0)
    outside_rois = phantom.labels == 0
    for t, value in BACKGROUND_MD.items():
        vox = md[(phantom.tissue == t) & outside_rois]
        assert np.median(vox) == pytest.approx(value, rel=0.05)
    assert np.all(md[phantom.tissue > 0] > 0)


def test_noise_is_smooth_with_requested_sd():
    ph = make_phantom(roi_names=ROI_NAMES, resolution=2.0)
    table = make_table(1)
    wm = ph.tissue == 3
    # Interior WM voxels with a WM neighbour along x.
    pair = wm[:-1] & wm[1:]
    for fwhm, lo, hi in ((0.0, -0.05, 0.05), (6.0, 0.6, 0.95)):
        md = next(
            simulate_md_maps(
                table, phantom=ph, rng=3, smoothness_mm=fwhm, noise_sd=1e-4
            )
        ).md.astype(float)
        resid = md - BACKGROUND_MD[3]
        a, b = resid[:-1][pair], resid[1:][pair]
        r = np.corrcoef(a, b)[0, 1]
        assert lo < r < hi, (fwhm, r)
        # The voxel SD is noise_sd (up to the kernel's grid truncation).
        assert np.std(resid[wm]) == pytest.approx(1e-4, rel=0.1)


def test_same_seed_same_maps_and_streams_per_scan(phantom):
    a = list(simulate_md_maps(make_table(3), phantom=phantom, rng=5))
    b = list(simulate_md_maps(make_table(3), phantom=phantom, rng=5))
    c = list(simulate_md_maps(make_table(3), phantom=phantom, rng=6))
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x.md, y.md)
        assert not np.array_equal(x.md, z.md)
    # Dropping sub-002's 24 h scan leaves every other scan's map unchanged.
    table = make_table(3)
    table = table[~((table.participant_id == "sub-002") & (table.session == "24h"))]
    d = {
        (s.participant_id, s.session): s.md
        for s in simulate_md_maps(table, phantom=phantom, rng=5)
    }
    assert ("sub-002", "24h") not in d
    for s in a:
        if (s.participant_id, s.session) != ("sub-002", "24h"):
            np.testing.assert_array_equal(d[(s.participant_id, s.session)], s.md)
    # Sessions get independent noise, not the same field.
    assert not np.array_equal(a[0].md, a[1].md)


def test_row_order_does_not_matter(phantom):
    # With the schedule given, the maps do not depend on the table's row order;
    # without it, the sessions are in the order the table first lists them.
    table = make_table(2)
    visits = ["baseline", "24h"]
    a = list(simulate_md_maps(table, phantom=phantom, rng=9))
    shuffled = table.sample(frac=1, random_state=1)
    assert shuffled["session"].iloc[0] == "24h"
    b = list(simulate_md_maps(shuffled, phantom=phantom, sessions=visits, rng=9))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.md, y.md)
    c = list(simulate_md_maps(shuffled, phantom=phantom, rng=9))
    assert [s.session for s in c[:2]] == ["24h", "baseline"]
    ordered = table.assign(session=pd.Categorical(table["session"], visits))
    d = list(simulate_md_maps(ordered.sample(frac=1, random_state=1),
                              phantom=phantom, rng=9))
    for x, y in zip(a, d, strict=True):
        np.testing.assert_array_equal(x.md, y.md)


def test_sessions_and_rois_are_the_tables(tmp_path):
    """Any visit and ROI names: the phantom is the table's, its LUT beside it."""
    table = pd.DataFrame(
        [("sub-01", ses, roi, md) for ses in ("pre", "week1")
         for roi, md in (("thalamus", 0.75e-3), ("putamen", 0.8e-3))],
        columns=["participant_id", "session", "roi", "md"])
    index = write_cohort_images(None, table, tmp_path / "d", rng=3)
    assert index["session"].tolist() == ["pre", "week1"]
    lut = pd.read_csv(tmp_path / "d" / LUT_FILENAME, sep="\t")
    assert lut.to_dict("list") == {"index": [1, 2], "name": ["thalamus", "putamen"]}
    with pytest.raises(ValueError, match=r"session\(s\) \['week1'\]; valid: \['pre'\]"):
        simulate_md_maps(table, sessions=["pre"])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.drop(columns="md"), "lacks column"),
        (lambda t: t.assign(roi=t.roi.replace("vACC", "sgACC")), r"sgACC.*valid"),
        (lambda t: t.assign(md=t.md.where(t.index != 3, -1.0)), "<= 0"),
        (lambda t: t.assign(md=t.md.where(t.index != 3, np.nan)), "missing row"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "duplicated"),
        (lambda t: t.drop(index=4), r"no row for ROI.*L_hippocampus.*sub-001"),
        (lambda t: t.assign(replicate=np.arange(len(t)) % 2), "replicates"),
        (lambda t: t.assign(roi=t.roi.where(t.index != 0, "thalamus")),
         r"ROI name\(s\) \['thalamus'\] not in the atlas"),
    ],
)
def test_bad_table(phantom, edit, match):
    with pytest.raises(ValueError, match=match):
        simulate_md_maps(edit(make_table(1)), phantom=phantom)


def test_bad_options(phantom):
    with pytest.raises(ValueError, match="noise_sd"):
        simulate_md_maps(make_table(1), phantom=phantom, noise_sd=-1)
    with pytest.raises(ValueError, match="smoothness_mm"):
        simulate_md_maps(make_table(1), phantom=phantom, smoothness_mm="6")
    with pytest.raises(TypeError, match="DataFrame"):
        simulate_md_maps(make_table(1).to_dict(), phantom=phantom)
    with pytest.raises(ValueError, match="too large"):
        list(simulate_md_maps(make_table(1), phantom=phantom, noise_sd=5e-3))


def test_write_tree_and_image_path_agrees_with_table(tmp_path, phantom):
    table = make_table(3, drop_24h=(2,))
    parts = pd.DataFrame({"participant_id": ["sub-003", "sub-001", "sub-002"]})
    out = tmp_path / "deriv"
    index = write_cohort_images(parts, table, out, rng=11, phantom=phantom)
    assert len(index) == 5
    for name in (ATLAS_FILENAME, LUT_FILENAME, "dataset_description.json"):
        assert (out / name).is_file()
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["dtitool"]["seed"] == 11
    path = (
        out
        / "sub-001/ses-baseline/dwi"
        / "sub-001_ses-baseline_model-DTI_param-MD_dwimap.nii.gz"
    )
    assert path.is_file()
    assert md_map_path("sub-001", "baseline") == str(path.relative_to(out))
    assert not (out / md_map_path("sub-002", "24h")).exists()
    img = nib.load(path)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, phantom.affine)
    # The image path (write, then extract) reproduces the ROI-level table.
    maps = [out / p for p in index["md_path"]]
    got = extract_roi_md(maps, out / ATLAS_FILENAME)
    merged = got.merge(table, on=["participant_id", "session", "roi"])
    assert len(merged) == len(table) == len(got)
    np.testing.assert_allclose(merged["md_x"], merged["md_y"], rtol=MD_MAP_RTOL)
    # Files are byte-identical for the same seed, and equal to the in-memory maps.
    again = write_cohort_images(
        parts, table, tmp_path / "again", rng=11, phantom=phantom, n_jobs=2
    )
    for p in again["md_path"]:
        assert (out / p).read_bytes() == (tmp_path / "again" / p).read_bytes()
    first = next(simulate_md_maps(table, phantom=phantom, rng=11))
    np.testing.assert_array_equal(np.asarray(img.dataobj), first.md)


def test_write_refuses_overwrite_and_writes_nothing_on_error(tmp_path, phantom):
    table = make_table(1)
    write_cohort_images(None, table, tmp_path / "d", rng=1, phantom=phantom)
    before = sorted(p.name for p in (tmp_path / "d").rglob("*"))
    with pytest.raises(ValueError, match="already exists"):
        write_cohort_images(None, table, tmp_path / "d", rng=1, phantom=phantom)
    assert sorted(p.name for p in (tmp_path / "d").rglob("*")) == before
    with pytest.raises(ValueError, match="not in the participants"):
        write_cohort_images(
            pd.DataFrame({"participant_id": ["sub-009"]}),
            table,
            tmp_path / "e",
            phantom=phantom,
        )
    with pytest.raises(ValueError, match="dwi_subjects"):
        write_cohort_images(
            None, table, tmp_path / "e", phantom=phantom, dwi_subjects=-1
        )
    with pytest.raises(ValueError, match="snr"):
        write_cohort_images(None, table, tmp_path / "e", phantom=phantom, snr=0)
    assert not (tmp_path / "e").exists()


def test_dwi_fit_recovers_roi_md(tmp_path, phantom):
    from dtitool.imaging import tensor
    from dtitool.imaging.gradients import read_bvals_bvecs

    table = make_table(2)
    index = write_cohort_images(
        None, table, tmp_path, rng=4, phantom=phantom, dwi_subjects=1, snr=30
    )
    assert (index["dwi_path"] != "").tolist() == [True, True, False, False]
    row = index.iloc[0]
    img = nib.load(tmp_path / row["dwi_path"])
    assert img.shape == (*phantom.shape, 70)
    stem = str(tmp_path / row["dwi_path"]).removesuffix(".nii")
    bvals, bvecs = read_bvals_bvecs(stem + ".bval", stem + ".bvec")
    assert int((bvals == 0).sum()) == 6
    assert np.all(bvals[bvals > 0] == 1000)
    fit = tensor.fit_tensor(
        np.asarray(img.dataobj, dtype=float), bvals, bvecs, mask=phantom.tissue > 0
    )
    md_map = nib.load(tmp_path / row["md_path"]).get_fdata()
    for i in range(1, 8):
        m = phantom.labels == i
        rel = fit.md[m] / md_map[m] - 1
        # Voxel errors are independent (white Rician noise): a 4.5-SE band on
        # the ROI mean, plus 0.5 % for the Rician / log-fit bias at SNR 30.
        se = rel.std() / np.sqrt(m.sum())
        assert abs(rel.mean()) < 4.5 * se + 0.005, (ROI_NAMES[i - 1], rel.mean(), se)
    wm_fa = np.median(fit.fa[phantom.tissue == 3])
    gm_fa = np.median(fit.fa[(phantom.tissue == 2) & (phantom.labels == 0)])
    assert 0.5 < wm_fa < 0.75
    assert gm_fa < 0.2
    csf = phantom.tissue == 1
    assert np.median(fit.md[csf]) == pytest.approx(3.0e-3, rel=0.1)


def test_simulate_dwi_is_seeded_and_checks_shape(phantom):
    from dtitool.imaging.gradients import default_protocol

    bvals, bvecs = default_protocol(n_b0=1, n_directions=6)
    md = np.full(phantom.shape, 0.8e-3)
    a = simulate_dwi(md, phantom=phantom, bvals=bvals, bvecs=bvecs, rng=1)
    b = simulate_dwi(md, phantom=phantom, bvals=bvals, bvecs=bvecs, rng=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (*phantom.shape, 7)
    # Background is pure Rayleigh noise: mean sigma * sqrt(pi / 2).
    sigma = 1000.0 / 30
    bg = a[phantom.tissue == 0]
    assert bg.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)
    with pytest.raises(ValueError, match="shape"):
        simulate_dwi(md[:-1], phantom=phantom, bvals=bvals, bvecs=bvecs)


def test_int16_dwi_is_the_rounded_float_series(phantom):
    """simulate_dwi(dtype=int16), what simulate --images --dwi writes, holds the
    float32 series rounded and capped, value for value (also where a bright
    voxel exceeds the int16 range), from the same stream."""
    from dtitool.imaging.gradients import default_protocol

    bvals, bvecs = default_protocol(n_b0=2, n_directions=6)
    md = np.random.default_rng(5).uniform(0.6e-3, 1.0e-3, phantom.shape)
    f = simulate_dwi(md, phantom=phantom, bvals=bvals, bvecs=bvecs, rng=3, snr=0.02)
    i = simulate_dwi(md, phantom=phantom, bvals=bvals, bvecs=bvecs, rng=3, snr=0.02,
                     dtype=np.int16)
    assert i.dtype == np.int16 and i.flags.f_contiguous and i.shape == f.shape
    assert f.max() > 32767  # snr 0.02: noise SD 50,000, the cap is reached
    expected = np.minimum(np.rint(f), 32767).astype(np.int16)
    np.testing.assert_array_equal(i, expected)
    with pytest.raises(ValueError, match="dtype must be float32 or int16"):
        simulate_dwi(md, phantom=phantom, bvals=bvals, bvecs=bvecs, dtype=np.uint8)


@pytest.mark.parametrize(("shape", "dtype", "description"), [
    ((91, 109, 91, 70), np.int16, "dtitool simulated DWI"),
    ((46, 55, 46), np.float32, "dtitool MD (mm^2/s)"),
])
def test_header_without_the_data_is_nibabels(shape, dtype, description):
    """The header written before the DWI data, made without the data, is the one
    nibabel writes with the full image."""
    import nibabel as nib

    from dtitool.imaging.synthetic import _nifti_header

    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [90, -126, -72]
    data = np.zeros(shape, dtype, order="F")
    data.flat[-1] = 3  # not all zeros
    # nibabel writing the whole image, set up as dtitool's files are
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    img.header["descrip"] = description.encode()
    full = img.to_bytes()
    head = _nifti_header(shape, dtype, affine, description=description)
    assert full[: len(head)] == head and len(full) == len(head) + data.nbytes


def test_image_seed_is_disjoint_from_cohort_streams():
    ss = image_seed_sequence(7)
    assert ss.entropy == 7
    assert ss.spawn_key != (0,)
    a = np.random.default_rng(ss).random(4)
    b = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(0,))).random(4)
    assert not np.allclose(a, b)


def test_cli_simulate_images(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--n", "6", "--seed", "3", "--images", "--out", str(out)])
    assert rc == 0
    assert "derivatives/dtitool" in capsys.readouterr().out
    deriv = out / "derivatives" / "dtitool"
    maps = sorted(deriv.glob("sub-*/ses-*/dwi/*_param-MD_dwimap.nii.gz"))
    table = pd.read_csv(out / "roi_md.tsv", sep="\t")
    assert len(maps) == len(table) // 7
    got = extract_roi_md(maps, deriv / ATLAS_FILENAME)
    merged = got.merge(table, on=["participant_id", "session", "roi"])
    assert len(merged) == len(table)
    # roi_md.tsv stores 10 significant digits.
    np.testing.assert_allclose(merged["md_x"], merged["md_y"], rtol=2e-6)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--dwi"], "need --images"),
        (["--images", "--replicates", "2"], "--replicates 1"),
        (["--images", "--dwi-subjects", "-1"], ">= 0"),
    ],
)
def test_cli_simulate_images_bad_options(tmp_path, capsys, args, match):
    out = tmp_path / "run"
    rc = main(["simulate", "--n", "6", "--seed", "3", *args, "--out", str(out)])
    assert rc == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
