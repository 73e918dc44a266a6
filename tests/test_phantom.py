import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dtitool.design import load_preset
from dtitool.imaging.phantom import (
    ATLAS_FILENAME,
    LUT_FILENAME,
    TISSUE_FILENAME,
    make_lut,
    make_phantom,
    write_atlas,
)

MNI_2MM_AFFINE = np.array(
    [[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]], dtype=float
)

# The default preset's ROIs: the phantom places them as it always has.
ROI_NAMES = load_preset("ketamine-rct").roi_names


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(roi_names=ROI_NAMES)


def test_grid_is_mni152_2mm(phantom):
    assert phantom.shape == (91, 109, 91)
    np.testing.assert_array_equal(phantom.affine, MNI_2MM_AFFINE)
    assert phantom.voxel_volume == 8.0
    # Voxel (45, 63, 36) is the MNI origin in FSL's 2 mm template.
    np.testing.assert_allclose(phantom.affine @ [45, 63, 36, 1], [0, 0, 0, 1])


def test_coarse_grid_covers_same_field_of_view():
    ph = make_phantom(roi_names=ROI_NAMES, resolution=4.0)
    assert ph.shape == (46, 55, 46)
    np.testing.assert_allclose(ph.affine[:3, 3], [90, -126, -72])
    np.testing.assert_allclose(np.diag(ph.affine)[:3], [-4, 4, 4])


def test_deterministic(phantom):
    again = make_phantom(roi_names=ROI_NAMES)
    np.testing.assert_array_equal(again.tissue, phantom.tissue)
    np.testing.assert_array_equal(again.labels, phantom.labels)
    pd.testing.assert_frame_equal(again.lut, phantom.lut)


def test_arrays_are_read_only(phantom):
    with pytest.raises(ValueError, match="read-only"):
        phantom.labels[0, 0, 0] = 1


def test_lut_matches_roi_names(phantom):
    assert list(phantom.lut.columns) == ["index", "name"]
    assert phantom.lut["name"].tolist() == list(ROI_NAMES)
    assert phantom.lut["index"].tolist() == list(range(1, 8))
    pd.testing.assert_frame_equal(make_lut(ROI_NAMES), phantom.lut)
    assert set(np.unique(phantom.labels)) == set(range(8))


def test_tissue_classes_and_volumes(phantom):
    counts = np.bincount(phantom.tissue.ravel(), minlength=4) * 8 / 1000  # cm^3
    csf, gm, wm = counts[1:]
    assert 100 < csf < 500
    assert 300 < gm < 900
    assert 700 < wm < 1600
    # Brain (GM + WM) of adult size, 1.2-1.9 litres.
    assert 1200 < gm + wm < 1900


def test_rois_are_gray_matter(phantom):
    assert np.all(phantom.tissue[phantom.labels > 0] == 2)


@pytest.mark.parametrize(
    ("roi", "lo", "hi"),
    [
        ("amygdala", 1.3, 2.2),
        ("hippocampus", 2.8, 4.5),
        ("BA10", 3.0, 12.0),
    ],
)
def test_bilateral_roi_volumes(phantom, roi, lo, hi):
    vol = phantom.roi_volumes() / 1000  # cm^3
    for side in "LR":
        assert lo < vol[f"{side}_{roi}"] < hi
    assert vol[f"L_{roi}"] == pytest.approx(vol[f"R_{roi}"])


def test_vacc_volume(phantom):
    assert 1.0 < phantom.roi_volumes()["vACC"] / 1000 < 4.0


def test_left_is_negative_x(phantom):
    com = phantom.roi_centroids()
    for roi in ("BA10", "amygdala", "hippocampus"):
        assert com.loc[f"L_{roi}", "x"] < -5
        assert com.loc[f"R_{roi}", "x"] > 5
        # Mirror images of each other.
        assert com.loc[f"L_{roi}", "x"] == pytest.approx(-com.loc[f"R_{roi}", "x"])
    assert abs(com.loc["vACC", "x"]) < 1


@pytest.mark.parametrize(
    ("roi", "xyz", "tol"),
    [
        # Approximate MNI centroids (Harvard-Oxford / AAL), mm.
        ("R_amygdala", (24, -4, -18), 6),
        ("R_hippocampus", (28, -24, -10), 8),
        ("R_BA10", (16, 62, 6), 12),
        ("vACC", (0, 28, -8), 8),
    ],
)
def test_roi_positions(phantom, roi, xyz, tol):
    com = phantom.roi_centroids().loc[roi].to_numpy()
    assert np.linalg.norm(com - np.array(xyz)) < tol


def test_hippocampus_is_elongated_and_posterior_to_amygdala(phantom):
    m = phantom.labels == ROI_NAMES.index("L_hippocampus") + 1
    ijk = np.argwhere(m)
    extent_mm = (ijk.max(axis=0) - ijk.min(axis=0) + 1) * 2
    assert extent_mm[1] > 2 * extent_mm[0]  # long axis anterior-posterior
    com = phantom.roi_centroids()
    assert com.loc["L_hippocampus", "y"] < com.loc["L_amygdala", "y"]


def test_ventricles_are_csf(phantom):
    # Lateral ventricle centres at (+-12, -12, 16) mm.
    for x in (12, -12):
        ijk = np.linalg.solve(phantom.affine, [x, -12, 16, 1])[:3].round().astype(int)
        assert phantom.tissue[tuple(ijk)] == 1


def test_write_atlas_round_trip(tmp_path, phantom):
    paths = write_atlas(tmp_path / "atlas", phantom=phantom)
    assert paths["atlas"].name == ATLAS_FILENAME
    img = nib.load(paths["atlas"])
    np.testing.assert_array_equal(np.asarray(img.dataobj), phantom.labels)
    np.testing.assert_allclose(img.affine, phantom.affine)
    assert img.header.get_sform(coded=True)[1] == 4  # MNI152
    lut = pd.read_csv(tmp_path / "atlas" / LUT_FILENAME, sep="\t")
    pd.testing.assert_frame_equal(lut, phantom.lut)
    tissue = nib.load(tmp_path / "atlas" / TISSUE_FILENAME)
    np.testing.assert_array_equal(np.asarray(tissue.dataobj), phantom.tissue)


def test_write_atlas_refuses_overwrite(tmp_path):
    ph = make_phantom(roi_names=ROI_NAMES, resolution=8.0)
    write_atlas(tmp_path, phantom=ph)
    with pytest.raises(ValueError, match="already exists"):
        write_atlas(tmp_path, phantom=ph)
    write_atlas(tmp_path, phantom=ph, force=True)


@pytest.mark.parametrize("bad", [0.1, 20, "2mm", None, True])
def test_bad_resolution(bad):
    with pytest.raises(ValueError, match="resolution"):
        make_phantom(roi_names=ROI_NAMES, resolution=bad)


@pytest.mark.parametrize("resolution", [2.0, 3.3, 4.0])
def test_distances_in_the_brains_box_are_the_whole_grids(resolution):
    """make_phantom computes its two distance maps only around the brain: the
    depth of brain voxels is the whole grid's everywhere, and the distance to
    the brain is the whole grid's up to the CSF shell (beyond it, inf)."""
    from scipy import ndimage

    from dtitool.imaging import phantom as ph

    shape, _ = ph._grid(resolution)
    rng = np.random.default_rng(0)
    brain = np.zeros(shape, bool)
    c = np.array(shape) // 2
    r = (np.array(shape) * 0.3).astype(int)
    brain[tuple(slice(a - b, a + b) for a, b in zip(c, r, strict=True))] = True
    brain &= rng.random(shape) > 0.02  # holes: background inside the brain too
    s = (resolution,) * 3
    depth = ph._distance_in_box(brain, brain, 1, 0.0, s)
    whole = ndimage.distance_transform_edt(brain, sampling=s)
    np.testing.assert_array_equal(depth, whole)
    shell = int(np.ceil(ph._CSF_SHELL_MM / resolution)) + 1
    out = ph._distance_in_box(~brain, brain, shell, np.inf, s)
    full = ndimage.distance_transform_edt(~brain, sampling=s)
    near = full <= ph._CSF_SHELL_MM
    np.testing.assert_array_equal(out[near], full[near])
    assert np.all(out[~near] > ph._CSF_SHELL_MM)


def test_other_roi_names_are_placed_by_rule():
    """Known structures at their MNI place, unknown names as cortical blobs."""
    names = ["thalamus", "L_putamen", "Right-Caudate", "dlPFC", "L_precuneus",
             "foo"]
    ph = make_phantom(roi_names=names, resolution=4.0)
    assert ph.lut.to_dict("list") == {"index": [1, 2, 3, 4, 5, 6], "name": names}
    assert set(np.unique(ph.labels)) == set(range(7))
    assert (ph.tissue[ph.labels > 0] == 2).all()
    xyz = ph.roi_centroids()
    # the bilateral thalamus straddles the midline, one ellipsoid per side
    assert abs(xyz.loc["thalamus", "x"]) < 1
    lab = ph.labels == 1
    ijk = np.argwhere(lab)
    x = ijk[:, 0] * ph.affine[0, 0] + ph.affine[0, 3]
    assert 6 < np.abs(x).mean() < 16 and (x < 0).any() and (x > 0).any()
    assert xyz.loc["L_putamen", "x"] < -18 and xyz.loc["Right-Caudate", "x"] > 8
    assert xyz.loc["L_precuneus", "x"] < 0
    # same names, same atlas
    again = make_phantom(roi_names=names, resolution=4.0)
    np.testing.assert_array_equal(again.labels, ph.labels)
    # the default preset's names are placed as they always were (the centroids
    # the tests above check), whatever else is in the atlas
    mixed = make_phantom(roi_names=["thalamus", "L_amygdala"], resolution=4.0)
    np.testing.assert_array_equal(
        mixed.labels == 2,
        make_phantom(roi_names=ROI_NAMES, resolution=4.0).labels == 3)


@pytest.mark.parametrize(("names", "err", "match"), [
    (["a", "a"], ValueError, r"repeats \['a'\]"),
    ([], ValueError, "empty"),
    ("thalamus", TypeError, "sequence of ROI names"),
    (["L_thalamus", "thalamus_L"], ValueError, r"\[.L_thalamus.\] lost every voxel"),
    (["x\ty"], ValueError, "tabs"),
])
def test_bad_roi_names(names, err, match):
    with pytest.raises(err, match=match):
        make_phantom(roi_names=names, resolution=4.0)
