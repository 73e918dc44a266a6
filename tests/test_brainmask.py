import numpy as np
import pytest

from dtitool.imaging.brainmask import median_otsu, otsu_threshold


def test_otsu_separates_two_classes():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(10, 1, 500), rng.normal(100, 5, 500)]
    thr = otsu_threshold(x)
    assert np.mean((x > thr) == (np.arange(1000) >= 500)) > 0.99


def test_matches_dipy_median_otsu_on_real_dwi():
    pytest.importorskip("dipy")
    import nibabel as nib
    from dipy.data import get_fnames
    from dipy.segment.mask import median_otsu as dipy_median_otsu
    from dipy.segment.threshold import otsu as dipy_otsu

    from dtitool.imaging.gradients import read_bvals_bvecs

    fimg, fbval, fbvec = get_fnames(name="small_64D")
    data = np.asarray(nib.load(fimg).dataobj, dtype=float)
    bvals, _ = read_bvals_bvecs(fbval, fbvec)
    b0 = np.flatnonzero(bvals == 0)
    _, ref = dipy_median_otsu(data, vol_idx=b0)
    ours = median_otsu(data[..., b0].mean(axis=-1))
    np.testing.assert_array_equal(ours, ref)
    x = np.random.default_rng(1).gamma(2.0, 3.0, 5000)
    assert otsu_threshold(x) == dipy_otsu(x)


def test_rejects_non_3d():
    with pytest.raises(ValueError, match="expected a 3D image"):
        median_otsu(np.ones((4, 4)))
