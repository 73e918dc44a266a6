import numpy as np
import pytest

from dtitool.imaging import brainmask
from dtitool.imaging.brainmask import median_otsu, otsu_threshold


def test_otsu_separates_two_classes():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(10, 1, 500), rng.normal(100, 5, 500)]
    thr = otsu_threshold(x)
    assert np.mean((x > thr) == (np.arange(1000) >= 500)) > 0.99


def _dipy_sample(name):
    """A b0 image that DIPY ships inside its wheel (no download)."""
    pytest.importorskip("dipy")
    from pathlib import Path

    import dipy.data
    import nibabel as nib

    from dtitool.imaging.gradients import read_bvals_bvecs

    if name in ("small_64D", "small_101D"):
        fimg, fbval, fbvec = dipy.data.get_fnames(name=name)
        data = np.asarray(nib.load(fimg).dataobj, dtype=float)
        bvals, _ = read_bvals_bvecs(fbval, fbvec)
        return data[..., bvals <= 50].mean(axis=-1)
    path = Path(dipy.data.__file__).parent / "files" / name
    return np.asarray(nib.load(path).dataobj, dtype=float).reshape(
        nib.load(path).shape[:3])


def _dipy_median_otsu(b0):
    """DIPY's median_otsu with DIPY's own Otsu (not scikit-image's, if installed)."""
    from dipy.segment.mask import multi_median
    from dipy.segment.threshold import otsu

    filtered = multi_median(b0, 4, 4)
    return filtered > otsu(filtered)


@pytest.mark.parametrize("name", ["small_64D", "small_101D"])
def test_small_images_filtered_exactly_as_dipy(name):
    from dipy.segment.mask import median_otsu as dipy_median_otsu

    b0 = _dipy_sample(name)
    ours = median_otsu(b0)  # small: the exact path by default
    np.testing.assert_array_equal(ours, _dipy_median_otsu(b0))
    # DIPY's own function (its threshold is scikit-image's when that is
    # installed): within 1 voxel in 1,000
    _, ref = dipy_median_otsu(b0[..., None], vol_idx=[0])
    assert np.count_nonzero(ours != ref) <= b0.size / 1000


@pytest.mark.parametrize("name", ["S0_10slices.nii.gz", "aniso_vox.nii.gz"])
def test_fast_path_within_1_in_1000_of_dipy(name):
    # DIPY's larger sample images (a real 128 x 128 x 10 b0 slab, an
    # anisotropic-voxel volume): the fast path, forced, against DIPY
    b0 = _dipy_sample(name)
    ours = median_otsu(b0, exact=False)
    ref = _dipy_median_otsu(b0)
    assert np.count_nonzero(ours != ref) <= b0.size / 1000
    assert ref.sum() > 0.1 * b0.size


def test_otsu_matches_dipy():
    pytest.importorskip("dipy")
    from dipy.segment.threshold import otsu as dipy_otsu

    x = np.random.default_rng(1).gamma(2.0, 3.0, 5000)
    assert otsu_threshold(x) == dipy_otsu(x)


def _exact_filtered(b0, radius, numpass):
    return brainmask._median_passes(np.asarray(b0, float), radius, numpass)


@pytest.mark.parametrize(("radius", "numpass", "shape"), [
    (1, 1, (7, 8, 9)), (1, 3, (9, 6, 5)), (2, 2, (12, 10, 3)), (4, 2, (5, 11, 13)),
])  # fmt: skip
def test_majority_vote_is_the_median_filter_thresholded(radius, numpass, shape):
    # threshold decomposition (Fitch et al. 1984), windows wider than the
    # image included (reflected at the edges, as scipy's median_filter)
    rng = np.random.default_rng(radius * 10 + numpass)
    b0 = rng.integers(0, 30, shape).astype(float)
    filtered = _exact_filtered(b0, radius, numpass)
    for t in (-1.0, 5.0, 14.5, 15.0, 22.0, 40.0):
        np.testing.assert_array_equal(
            brainmask._majority(b0 > t, radius, numpass), filtered > t)


def test_votes_in_a_crop_equal_votes_everywhere():
    rng = np.random.default_rng(3)
    b0 = rng.gamma(2.0, 50.0, (30, 28, 26))
    b0[10:16, 8:14, 12:20] += 400.0  # a bright spot
    full = brainmask._majority(b0 >= 200.0, 2, 3)
    region = brainmask._majority(b0 >= 150.0, 2, 3)  # holds every voxel of full
    assert 0 < full.sum() < region.sum() < b0.size / 4
    np.testing.assert_array_equal(
        brainmask._vote_in(b0, 200.0, 2, 3, region), full)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtered_extremes_found_exactly(seed):
    rng = np.random.default_rng(seed)
    b0 = rng.integers(0, 500, (24, 22, 20)).astype(float)
    b0[5:15, 6:16, 4:14] += 1000
    filtered = _exact_filtered(b0, 2, 2)
    step = (b0.max() - b0.min()) / 256
    for image, f in ((b0, filtered), (-b0, -filtered)):
        for guess in (f.max() - 37 * step, f.max(), f.max() + 5 * step):
            value, held = brainmask._filtered_max(image, 2, 2, guess=guess,
                                                  step=step, tol=0.5)
            assert value == f.max()
            np.testing.assert_array_equal(held, f == f.max())


def _head(shape=(60, 64, 48), seed=4):
    """A bright ellipsoid with tissue texture in a Rician-noise background."""
    rng = np.random.default_rng(seed)
    xyz = (np.indices(shape) - (np.array(shape) / 2)[:, None, None, None])
    inside = ((xyz / (np.array(shape) * 0.38)[:, None, None, None]) ** 2).sum(0) < 1
    signal = np.where(inside, 900 + 300 * rng.random(shape), 0.0)
    noise = 40.0
    return np.hypot(signal + rng.normal(0, noise, shape), rng.normal(0, noise, shape))


def test_fast_path_agrees_with_exact_on_a_simulated_head():
    b0 = _head()
    fast = median_otsu(b0, exact=False)
    exact = median_otsu(b0, exact=True)
    assert np.count_nonzero(fast != exact) <= b0.size / 1000
    assert 0.1 < exact.mean() < 0.3  # the ellipsoid: 23 % of the box


def test_fast_path_on_a_thin_slab_sees_every_slice():
    # two slices, the brain in the second only: sampling every other slice
    # would see none of it
    rng = np.random.default_rng(6)
    shape = (200, 200, 2)
    xy = np.indices(shape[:2]) - 100
    brain = np.zeros(shape, bool)
    brain[..., 1] = (xy**2).sum(axis=0) < 70**2
    signal = np.where(brain, 800 + 400 * rng.random(shape), 0.0)
    b0 = np.hypot(signal + rng.normal(0, 50, shape), rng.normal(0, 50, shape))
    fast = median_otsu(b0, exact=False)
    exact = median_otsu(b0, exact=True)
    assert np.count_nonzero(fast != exact) <= b0.size / 1000
    assert exact[..., 1].mean() > 0.1 and not exact[..., 0].any()


def test_default_is_exact_only_for_small_images(monkeypatch):
    calls = []
    monkeypatch.setattr(brainmask, "_estimate_threshold",
                        lambda *a: calls.append(a) or 500.0)
    median_otsu(_head((20, 20, 20)))
    assert calls == []
    median_otsu(_head((60, 50, 40)))  # 120,000 voxels x 729 x 4 > the budget
    assert len(calls) == 1


def test_same_mask_twice_and_for_integer_input():
    b0 = np.round(_head())
    a = median_otsu(b0, exact=False)
    np.testing.assert_array_equal(a, median_otsu(b0, exact=False))
    np.testing.assert_array_equal(a, median_otsu(b0.astype(np.int16), exact=False))


@pytest.mark.parametrize("exact", [True, False])
def test_constant_image_is_all_brain_as_in_dipy(exact):
    # np.histogram spans [v - 0.5, v + 0.5]; Otsu's threshold is its lower edge
    assert median_otsu(np.full((30, 30, 30), 7.0), exact=exact).all()


def test_nonfinite_values_count_as_zero():
    b0 = _head((20, 20, 20))
    with_nan = b0.copy()
    with_nan[0, 0, :3] = [np.nan, np.inf, -np.inf]
    b0[0, 0, :3] = 0.0
    np.testing.assert_array_equal(median_otsu(with_nan), median_otsu(b0))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"b0": np.ones((4, 4))}, r"b0 has shape \(4, 4\); expected a 3D image"),
    ({"b0": np.full((3, 3, 3), "a")}, "b0 must hold numbers"),
    ({"median_radius": -1}, "median_radius must be an integer >= 0, got -1"),
    ({"median_radius": 2.5}, "median_radius must be an integer >= 0, got 2.5"),
    ({"numpass": True}, "numpass must be an integer >= 0, got True"),
    ({"exact": "yes"}, "exact must be True, False or None, got 'yes'"),
])  # fmt: skip
def test_bad_input_raises(kwargs, match):
    args = {"b0": np.ones((4, 4, 4)), **kwargs}
    with pytest.raises(ValueError, match=match):
        median_otsu(args.pop("b0"), **args)


def test_zero_radius_or_passes_is_otsu_of_the_image():
    b0 = _head((12, 12, 12))
    for kw in ({"median_radius": 0}, {"numpass": 0}):
        np.testing.assert_array_equal(median_otsu(b0, **kw), b0 > otsu_threshold(b0))
