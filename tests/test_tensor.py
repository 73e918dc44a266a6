import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from dtitool.imaging.gradients import default_protocol
from dtitool.imaging.tensor import (
    TensorFit,
    design_matrix,
    fit_tensor,
    fractional_anisotropy,
    predict_signal,
    tensor_from_evals_evecs,
    tensor_to_matrix,
)

BVALS, BVECS = default_protocol()
WM_EVALS = np.array([1.7e-3, 0.35e-3, 0.25e-3])
GM_EVALS = np.array([0.9e-3, 0.8e-3, 0.75e-3])


def random_tensors(n, rng, wm_fraction=0.4):
    """Realistic GM/WM tensors with random orientations, shape (n, 6)."""
    rot = Rotation.random(n, random_state=rng).as_matrix()
    wm = rng.random(n) < wm_fraction
    evals = np.where(wm[:, None], WM_EVALS, GM_EVALS) * rng.uniform(0.9, 1.1, (n, 3))
    return tensor_from_evals_evecs(evals, rot)


def rician(signal, sigma, rng):
    return np.hypot(
        signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape)
    )


@pytest.fixture(scope="module")
def noiseless():
    rng = np.random.default_rng(1)
    t = random_tensors(500, rng)
    s0 = rng.uniform(500, 2000, 500)
    return t, s0, predict_signal(t, BVALS, BVECS, s0=s0)


# --- forward model and helpers ----------------------------------------------


def test_predict_signal_known_answer():
    d = np.array([1.7e-3, 0.3e-3, 0.2e-3, 0, 0, 0])
    s = predict_signal(d, [0, 1000, 1000, 1000], np.vstack([np.zeros(3), np.eye(3)]))
    np.testing.assert_allclose(s, np.exp([0, -1.7, -0.3, -0.2]), rtol=1e-14)
    # unnormalised b-vectors are directions only
    s2 = predict_signal(d, [1000], [[0, 0, 5.0]], s0=2.0)
    np.testing.assert_allclose(s2, [2.0 * np.exp(-0.2)], rtol=1e-14)


def test_predict_signal_off_diagonal():
    d = np.array([1e-3, 1e-3, 1e-3, 0.5e-3, 0, 0])
    g = np.array([[1, 1, 0]]) / np.sqrt(2)
    # g^T D g = (Dxx + Dyy)/2 + Dxy
    np.testing.assert_allclose(predict_signal(d, [1000], g), [np.exp(-1.5)], rtol=1e-14)


def test_tensor_from_evals_evecs_matches_matrix_product():
    rng = np.random.default_rng(2)
    rot = Rotation.random(20, random_state=rng).as_matrix()
    ev = rng.uniform(1e-4, 2e-3, (20, 3))
    t = tensor_from_evals_evecs(ev, rot)
    full = rot @ (ev[:, :, None] * np.swapaxes(rot, -1, -2))
    np.testing.assert_allclose(tensor_to_matrix(t), full, atol=1e-18)


def test_fractional_anisotropy_known_answers():
    assert fractional_anisotropy(GM_EVALS * 0 + 1e-3) == 0.0
    # cigar (prolate) tensor: FA = (l1 - l2) / sqrt(l1^2 + 2 l2^2)
    l1, l2 = 1.7e-3, 0.3e-3
    expected = (l1 - l2) / np.sqrt(l1**2 + 2 * l2**2)
    assert fractional_anisotropy([l1, l2, l2]) == pytest.approx(expected, rel=1e-14)
    assert fractional_anisotropy([1.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert fractional_anisotropy([0.0, 0.0, 0.0]) == 0.0


def test_design_matrix_columns():
    x = design_matrix([0, 1000], [[0, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(x[0], [0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(x[1], [-500, -500, 0, -1000, 0, 0, 1])


# --- recovery -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_noiseless_tensor_recovered(noiseless, method):
    t, s0, data = noiseless
    fit = fit_tensor(data, BVALS, BVECS, method=method)
    assert isinstance(fit, TensorFit)
    scale = np.abs(t).max(axis=1, keepdims=True)
    assert np.abs(fit.tensor - t).max() / scale.min() < 1e-10
    np.testing.assert_allclose(fit.s0, s0, rtol=1e-10)
    np.testing.assert_allclose(fit.md, t[:, :3].mean(axis=1), rtol=1e-10)


def test_ols_and_wls_agree_on_noiseless(noiseless):
    _, _, data = noiseless
    a = fit_tensor(data, BVALS, BVECS, method="ols")
    b = fit_tensor(data, BVALS, BVECS, method="wls")
    # relative to the tensor's scale (~1e-3 mm^2/s); off-diagonals can be ~0
    np.testing.assert_allclose(a.tensor, b.tensor, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.fa, b.fa, rtol=1e-9, atol=1e-12)


def test_known_answer_fa_and_evals():
    rot = Rotation.from_euler("zyx", [30, 40, 50], degrees=True).as_matrix()
    cigar = tensor_from_evals_evecs([1.7e-3, 0.3e-3, 0.3e-3], rot)
    iso = np.array([0.8e-3, 0.8e-3, 0.8e-3, 0, 0, 0])
    data = predict_signal(np.stack([cigar, iso]), BVALS, BVECS, s0=1000.0)
    fit = fit_tensor(data, BVALS, BVECS)
    l1, l2 = 1.7e-3, 0.3e-3
    fa_cigar = (l1 - l2) / np.sqrt(l1**2 + 2 * l2**2)
    np.testing.assert_allclose(fit.fa, [fa_cigar, 0.0], atol=1e-9)
    np.testing.assert_allclose(fit.evals[0], [l1, l2, l2], rtol=1e-9)
    np.testing.assert_allclose(fit.md, [(l1 + 2 * l2) / 3, 0.8e-3], rtol=1e-10)
    # principal eigenvector along the rotated x axis (sign free)
    assert abs(fit.evecs[0, :, 0] @ rot[:, 0]) == pytest.approx(1.0, abs=1e-9)
    # evals sorted descending; evecs consistent with evals
    assert np.all(np.diff(fit.evals, axis=-1) <= 0)
    np.testing.assert_allclose(
        tensor_from_evals_evecs(fit.evals, fit.evecs), fit.tensor, atol=1e-15
    )


@settings(max_examples=25, deadline=None)
@given(
    quat=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
        lambda q: np.linalg.norm(q) > 0.1
    ),
    evals=st.lists(st.floats(1e-5, 3e-3), min_size=3, max_size=3),
)
def test_md_invariant_to_rotation(quat, evals):
    rot = Rotation.from_quat(quat).as_matrix()
    t0 = tensor_from_evals_evecs(evals, np.eye(3))
    t1 = tensor_from_evals_evecs(evals, rot)
    data = predict_signal(np.stack([t0, t1]), BVALS, BVECS, s0=1000.0)
    fit = fit_tensor(data, BVALS, BVECS)
    assert fit.md[1] == pytest.approx(fit.md[0], rel=1e-10)
    assert fit.md[0] == pytest.approx(np.mean(evals), rel=1e-10)
    assert fit.fa[1] == pytest.approx(fit.fa[0], rel=1e-8, abs=1e-10)


def test_b0_anywhere_and_threshold(noiseless):
    t, s0, _ = noiseless
    rng = np.random.default_rng(3)
    order = rng.permutation(BVALS.size)
    bvals, bvecs = BVALS[order], BVECS[order]
    data = predict_signal(t, bvals, bvecs, s0=s0)
    ref = fit_tensor(data, bvals, bvecs)
    np.testing.assert_allclose(ref.tensor, t, rtol=1e-9, atol=1e-15)


def test_b0_volumes_enter_the_fit_at_their_actual_b(noiseless):
    # As FSL dtifit and DIPY: a "b0" acquired at b = 5..50 s/mm^2 with a
    # direction enters the design matrix at that b; the threshold only says
    # which volumes count as b0 (and may lack a direction).
    t, s0, _ = noiseless
    bv, bg = BVALS.copy(), BVECS.copy()
    b0 = BVALS == 0
    bv[b0] = np.linspace(5, 50, b0.sum())
    bg[b0] = [0.3, 0.1, 0.9]
    data = predict_signal(t, bv, bg, s0=s0)
    fit = fit_tensor(data, bv, bg, b0_threshold=50)
    np.testing.assert_allclose(fit.tensor, t, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(fit.s0, s0, rtol=1e-9)
    # the threshold decides nothing else: the design matrix is the same
    for thr in (0.0, 4.0, 100.0):
        np.testing.assert_array_equal(design_matrix(bv, bg, b0_threshold=thr),
                                      design_matrix(bv, bg, b0_threshold=50))
    # the old reading (b taken as 0 at or below the threshold) is biased here
    bz = np.where(b0, 0.0, bv)
    old = fit_tensor(data, bz, np.where(b0[:, None], 0.0, bg))
    assert np.max(np.abs(old.md / fit.md - 1)) > 1e-3


def test_nan_b0_direction_read_alike_by_api_and_file_reader(tmp_path):
    from dtitool.imaging.gradients import read_bvals_bvecs

    bv = np.where(BVALS == 0, 20.0, BVALS)
    bg = np.where((BVALS == 0)[:, None], np.nan, BVECS)
    (tmp_path / "x.bval").write_text(" ".join(f"{b:g}" for b in bv) + "\n")
    (tmp_path / "x.bvec").write_text(
        "\n".join(" ".join(repr(float(v)) for v in row) for row in bg.T) + "\n")
    data = predict_signal(random_tensors(5, np.random.default_rng(0)), BVALS,
                          BVECS, s0=1000.0)
    read_b, read_g = read_bvals_bvecs(tmp_path / "x.bval", tmp_path / "x.bvec")
    a = fit_tensor(data, bv, bg)  # NaN directions of b0 volumes: zero vectors
    b = fit_tensor(data, read_b, read_g)
    np.testing.assert_array_equal(a.tensor, b.tensor)
    # above the threshold both refuse, naming the volume
    for thr in (10.0,):
        with pytest.raises(ValueError, match="volume 0 \\(b = 20\\)"):
            fit_tensor(data, bv, bg, b0_threshold=thr)
        with pytest.raises(ValueError, match="volume 0 \\(b = 20\\)"):
            read_bvals_bvecs(tmp_path / "x.bval", tmp_path / "x.bvec",
                             b0_threshold=thr)


@pytest.mark.parametrize("scale", [1e6, 1e6 * 1.5])
def test_bvalues_in_si_units_refused_with_conversion(scale):
    with pytest.raises(ValueError, match=r"look like s/m\^2.*divide them by 1e6"):
        fit_tensor(np.ones((1, 70)), BVALS * scale, BVECS)


def test_unnormalised_bvecs(noiseless):
    t, _, data = noiseless
    lengths = np.linspace(0.5, 2.0, BVALS.size)[:, None]
    fit = fit_tensor(data, BVALS, BVECS * lengths)
    np.testing.assert_allclose(fit.tensor, t, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_zero_and_negative_signal_stays_finite(method):
    rng = np.random.default_rng(4)
    t = random_tensors(200, rng)
    data = rician(predict_signal(t, BVALS, BVECS, s0=300.0), 30.0, rng)
    data[:50, rng.integers(0, BVALS.size, 50)] = 0.0
    data[50:100, 5:40] = -20.0  # e.g. after a bias correction
    data[100:110] = 0.0  # all-zero voxels
    data[110:120, BVALS > 0] = 0.0  # signal only in b0
    data[120:130, BVALS == 0] = -1.0  # b0 lost
    fit = fit_tensor(data, BVALS, BVECS, method=method)
    for name in ("tensor", "s0", "md", "fa", "evals", "evecs"):
        assert np.all(np.isfinite(getattr(fit, name))), name
    # all-zero voxels have nothing to fit: left out, counted, 0 in every map
    assert fit.n_no_signal == 10 and not fit.mask[100:110].any()
    assert np.all(fit.fa[100:110] == 0) and np.all(fit.md[100:110] == 0)
    assert np.all(fit.s0[fit.mask] > 0)
    assert np.all((fit.fa >= 0) & (fit.fa <= 1))


def _with_negative_eigenvalue():
    data = np.zeros((3, BVALS.size))
    data[1] = predict_signal([1.7e-3, 0.3e-3, 0.3e-3, 0, 0, 0], BVALS, BVECS,
                             s0=1000.0)
    # a noise voxel whose fitted tensor has a negative eigenvalue: FA > 1 raw
    data[2] = predict_signal([2e-3, -0.6e-3, 0.1e-3, 0, 0, 0], BVALS, BVECS,
                             s0=1000.0)
    return data


def test_negative_eigenvalue_raised_to_the_minimum_diffusivity():
    fit = fit_tensor(_with_negative_eigenvalue(), BVALS, BVECS)
    # DIPY's: 1e-6 / the largest b-matrix element (b g_i g_j, 2 b g_i g_j)
    floor = 1e-6 / -design_matrix(BVALS, BVECS)[:, :6].min()
    assert fit.min_diffusivity == floor and 0.99e-9 < floor < 1.01e-9
    np.testing.assert_allclose(fit.evals[2], [2e-3, 0.1e-3, floor], rtol=1e-9)
    assert fit.md[2] == pytest.approx((2e-3 + 0.1e-3 + floor) / 3, rel=1e-9)
    assert fit.ad[2] == pytest.approx(2e-3, rel=1e-9)
    assert fit.rd[2] == pytest.approx((0.1e-3 + floor) / 2, rel=1e-9)
    assert fit.fa[2] == pytest.approx(fractional_anisotropy(fit.evals[2]))
    assert 0.9 < fit.fa[2] < 1 and fit.n_fa_clipped == 0
    assert fit.n_clipped == 1
    # the tensor as fitted is kept; the maps describe the clipped one
    np.testing.assert_allclose(fit.tensor[2], [2e-3, -0.6e-3, 0.1e-3, 0, 0, 0],
                               atol=1e-12)
    assert fit.fa[0] == 0 and fit.md[0] == 0 and fit.n_no_signal == 1
    assert np.all(fit.evals[0] == 0)  # not fitted: 0, not the floor


def test_min_diffusivity_none_keeps_eigenvalues_as_fitted():
    fit = fit_tensor(_with_negative_eigenvalue(), BVALS, BVECS, min_diffusivity=None)
    assert fit.fa[0] == 0 and fit.md[0] == 0 and fit.n_no_signal == 1
    assert 0 < fit.fa[1] < 1
    assert fit.fa[2] == 1.0 and fit.n_fa_clipped == 1 and fit.n_clipped == 0
    assert fractional_anisotropy(fit.evals[2]) > 1
    assert fit.evals[2, 2] == pytest.approx(-0.6e-3, rel=1e-9)
    t = fit.tensor
    np.testing.assert_array_equal(fit.md, (t[:, 0] + t[:, 1] + t[:, 2]) / 3.0)


def test_min_diffusivity_given_in_mm2_per_s():
    fit = fit_tensor(_with_negative_eigenvalue(), BVALS, BVECS, min_diffusivity=1e-4)
    np.testing.assert_allclose(fit.evals[2], [2e-3, 1e-4, 1e-4], rtol=1e-9)
    np.testing.assert_allclose(fit.evals[1], [1.7e-3, 3e-4, 3e-4], rtol=1e-9)
    zero = fit_tensor(_with_negative_eigenvalue(), BVALS, BVECS, min_diffusivity=0)
    assert zero.evals[2, 2] == 0.0 and zero.n_clipped == 1


def test_sse_is_the_sum_of_squared_errors_of_the_prediction():
    rng = np.random.default_rng(14)
    t = random_tensors(40, rng).reshape(5, 8, 6)
    data = rician(predict_signal(t, BVALS, BVECS, s0=800.0), 25.0, rng)
    mask = np.ones((5, 8), bool)
    mask[0, :3] = False
    fit = fit_tensor(data, BVALS, BVECS, mask=mask)
    sse = fit.sse(data)
    expected = ((data - fit.predict(BVALS, BVECS)) ** 2).sum(axis=-1)
    np.testing.assert_allclose(sse[mask], expected[mask], rtol=1e-12)
    assert np.all(sse[~mask] == 0)
    # Rician noise of sigma 25 over 70 volumes: about 70 * 25^2 per voxel
    assert 0.5 < np.median(sse[mask]) / (70 * 25.0**2) < 1.5
    np.testing.assert_array_equal(fit.sse(data.astype(np.float32), step=7),
                                  fit.sse(data.astype(np.float32)))
    noiseless = predict_signal(t, BVALS, BVECS, s0=800.0)
    assert fit_tensor(noiseless, BVALS, BVECS).sse(noiseless).max() < 1e-12


def test_sse_of_a_clipped_voxel_uses_the_reported_tensor():
    data = _with_negative_eigenvalue()
    fit = fit_tensor(data, BVALS, BVECS)
    raw = fit_tensor(data, BVALS, BVECS, min_diffusivity=None)
    # the fitted tensor reproduces the signal; the clipped one cannot
    assert raw.sse(data)[2] < 1e-12 < fit.sse(data)[2]
    np.testing.assert_allclose(fit.sse(data)[1], raw.sse(data)[1], atol=1e-12)


def test_sse_refuses_other_data():
    fit = fit_tensor(_with_negative_eigenvalue(), BVALS, BVECS)
    with pytest.raises(ValueError, match=r"data has shape \(2, 70\) but the fit "
                       r"has voxel shape \(3,\) and 70 volumes"):
        fit.sse(np.ones((2, 70)))
    with pytest.raises(ValueError, match="no design matrix"):
        TensorFit(fit.tensor, fit.s0, fit.mask, "wls").sse(np.ones((3, 70)))


def test_nonfinite_voxels_left_out_and_counted():
    data = predict_signal(random_tensors(6, np.random.default_rng(1)), BVALS, BVECS,
                          s0=1000.0)
    data[1, 3] = np.nan
    data[4, 0] = np.inf
    fit = fit_tensor(data, BVALS, BVECS)
    assert fit.n_nonfinite == 2
    assert fit.mask.tolist() == [True, False, True, True, False, True]
    assert fit.md[1] == 0 and fit.md[4] == 0


def test_mask_zeroes_outside_and_ignores_nan():
    rng = np.random.default_rng(5)
    t = random_tensors(24, rng).reshape(2, 3, 4, 6)
    data = predict_signal(t, BVALS, BVECS, s0=1000.0)
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[0, 1:, 1:3] = True
    mask[1, 0, 0] = True
    data[~mask] = np.nan  # never read outside the mask
    fit = fit_tensor(data, BVALS, BVECS, mask=mask.astype(np.uint8))
    np.testing.assert_allclose(fit.tensor[mask], t[mask], rtol=1e-9, atol=1e-15)
    for name in ("tensor", "s0", "md", "fa", "evals", "evecs"):
        arr = getattr(fit, name)
        assert np.all(arr[~mask] == 0), name
    np.testing.assert_array_equal(fit.mask, mask)


@pytest.mark.parametrize("shape", [(), (7,), (2, 3), (2, 3, 4), (1, 2, 1, 3)])
def test_any_leading_shape(shape):
    rng = np.random.default_rng(6)
    n = int(np.prod(shape))
    t = random_tensors(n, rng).reshape(*shape, 6)
    data = predict_signal(t, BVALS, BVECS, s0=1000.0)
    fit = fit_tensor(data, BVALS, BVECS)
    assert fit.tensor.shape == (*shape, 6)
    assert fit.md.shape == shape
    assert fit.fa.shape == shape
    assert fit.s0.shape == shape
    assert fit.evals.shape == (*shape, 3)
    assert fit.evecs.shape == (*shape, 3, 3)
    np.testing.assert_allclose(fit.tensor, t, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_step_invariance_exact(method):
    rng = np.random.default_rng(7)
    t = random_tensors(1000, rng)
    data = rician(predict_signal(t, BVALS, BVECS, s0=500.0), 25.0, rng)
    ref = fit_tensor(data, BVALS, BVECS, method=method, step=1000)
    for step in (1, 7, 333):
        fit = fit_tensor(data, BVALS, BVECS, method=method, step=step)
        np.testing.assert_array_equal(fit.tensor, ref.tensor)
        np.testing.assert_array_equal(fit.s0, ref.s0)


def test_refit_identical_and_integer_and_float32_input():
    rng = np.random.default_rng(8)
    t = random_tensors(100, rng)
    data = rician(predict_signal(t, BVALS, BVECS, s0=800.0), 20.0, rng)
    a = fit_tensor(data, BVALS, BVECS)
    b = fit_tensor(data, BVALS, BVECS)
    np.testing.assert_array_equal(a.tensor, b.tensor)
    c = fit_tensor(np.round(data).astype(np.int16), BVALS, BVECS)
    np.testing.assert_allclose(c.md, a.md, rtol=1e-2)
    d = fit_tensor(data.astype(np.float32), BVALS, BVECS)
    np.testing.assert_allclose(d.md, a.md, rtol=1e-5)


def test_wls_beats_ols_on_noisy_data():
    # WLS is the better estimator at moderate SNR: smaller MD error.
    rng = np.random.default_rng(9)
    t = random_tensors(4000, rng, wm_fraction=1.0)
    data = rician(predict_signal(t, BVALS, BVECS, s0=1000.0), 1000.0 / 10, rng)
    md_true = t[:, :3].mean(axis=1)
    err = {
        m: np.sqrt(
            np.mean((fit_tensor(data, BVALS, BVECS, method=m).md - md_true) ** 2)
        )
        for m in ("ols", "wls")
    }
    assert err["wls"] < err["ols"]


# --- bad inputs -------------------------------------------------------------------


def _good():
    return np.ones((2, BVALS.size)), BVALS, BVECS


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"data": np.ones((2, 69))}, r"data has shape \(2, 69\) but the gradient "),
        ({"data": np.ones(())}, r"data has shape \(\) but"),
        ({"data": np.array([["a"] * 70])}, "data must be an array of real numbers"),
        ({"bvals": BVALS[:-1]}, r"bvecs has shape \(70, 3\) but bvals has shape"),
        ({"bvals": np.where(BVALS > 0, -1.0, 0)}, "negative b-value -1 at volume 1"),
        ({"bvals": BVALS * np.nan}, "bvals contains NaN"),
        ({"bvecs": BVECS[:, :2]}, r"bvecs has shape \(70, 2\)"),
        (
            {"bvecs": np.where(BVECS > 0.5, np.inf, BVECS)},
            r"bvecs has NaN or infinite values at volume \d+ \(b = 1000\)",
        ),
        ({"bvecs": np.zeros((70, 3))}, "zero vector at volume 1"),
        ({"method": "nls"}, r"method must be one of \('wls', 'ols'\)"),
        ({"mask": np.ones(3, bool)}, r"mask has shape \(3,\) but data has shape"),
        ({"mask": np.array([0.5, 1])}, "mask must be boolean"),
        ({"b0_threshold": -1}, "b0_threshold must be a finite number >= 0"),
        ({"b0_threshold": "50"}, "b0_threshold must be a number"),
        ({"step": 0}, "step must be an integer >= 1"),
        ({"step": 10.5}, "step must be an integer >= 1"),
        ({"min_signal": 0}, "min_signal must be a finite number > 0"),
        ({"min_diffusivity": -1e-9}, "min_diffusivity must be 'auto' .* got -1e-09"),
        ({"min_diffusivity": "dipy"}, "min_diffusivity must be 'auto'"),
        ({"min_diffusivity": np.inf}, "a finite number >= 0 in mm\\^2/s, got inf"),
        ({"min_diffusivity": True}, "min_diffusivity must be 'auto'"),
    ],
)
def test_bad_input_raises(change, match):
    data, bvals, bvecs = _good()
    kwargs = {"data": data, "bvals": bvals, "bvecs": bvecs}
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        fit_tensor(**kwargs)


def test_too_few_directions():
    bvals = np.array([0, 1000, 1000, 1000, 1000, 1000, 1000])
    g = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    g = np.vstack([g, [[0, 0, 1]]])  # 6 DW volumes, only 3 distinct directions
    with pytest.raises(ValueError, match="at least 6 non-collinear gradient"):
        fit_tensor(np.ones((1, 7)), bvals, g)
    with pytest.raises(ValueError, match="at least 6 non-collinear gradient"):
        fit_tensor(np.ones((1, 5)), bvals[:5], g[:5])


def test_no_b0_single_shell_is_an_error():
    bvals, bvecs = BVALS[BVALS > 0], BVECS[BVALS > 0]
    with pytest.raises(ValueError, match="no b0 volume and a single b-value"):
        fit_tensor(np.ones((1, bvals.size)), bvals, bvecs)


def test_b0_threshold_applies_before_rank_check():
    bv = np.where(BVALS > 0, 40.0, 0.0)  # every volume is a b0 at threshold 50
    with pytest.raises(ValueError, match="spanning only 0"):
        fit_tensor(np.ones((1, 70)), bv, BVECS)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.ones(5), BVALS, BVECS), r"tensor has shape \(5,\)"),
        ((np.ones(6), BVALS, BVECS[:3]), r"bvecs has shape \(3, 3\)"),
        ((np.ones((2, 6)), BVALS, BVECS, np.ones(3)), "s0 has shape"),
    ],
)
def test_predict_signal_bad_input(args, match):
    kwargs = {"s0": args[3]} if len(args) == 4 else {}
    with pytest.raises(ValueError, match=match):
        predict_signal(*args[:3], **kwargs)


def test_tensor_from_evals_evecs_bad_shapes():
    with pytest.raises(ValueError, match=r"evals has shape \(2,\)"):
        tensor_from_evals_evecs([1, 2], np.eye(3))
    with pytest.raises(ValueError, match=r"evecs has shape \(3, 3\) but evals"):
        tensor_from_evals_evecs(np.ones((2, 3)), np.eye(3))


# --- cross-check against DIPY (optional; benchmark extra) ---------------------


def _dipy_fit(data, bvals, bvecs, method):
    dti = pytest.importorskip("dipy.reconst.dti")
    from dipy.core.gradients import gradient_table

    gtab = gradient_table(bvals, bvecs=bvecs)
    return dti.TensorModel(gtab, fit_method=method.upper()).fit(data)


def _assert_matches_dipy(ours, ref, where=...):
    # every voxel, those whose eigenvalues both fits raise to the minimum
    # diffusivity included
    np.testing.assert_allclose(ours.md[where], ref.md[where], rtol=1e-6)
    np.testing.assert_allclose(ours.fa[where], ref.fa[where], rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(ours.evals[where], ref.evals[where], rtol=1e-6)
    np.testing.assert_allclose(ours.ad[where], ref.ad[where], rtol=1e-6)
    np.testing.assert_allclose(ours.rd[where], ref.rd[where], rtol=1e-6)


@pytest.mark.parametrize("method", ["ols", "wls"])
def test_matches_dipy_on_noisy_simulated_dwi(method):
    pytest.importorskip("dipy")
    rng = np.random.default_rng(10)
    n = 3000
    t = random_tensors(n, rng)
    s0 = rng.uniform(800, 1200, n)
    data = rician(predict_signal(t, BVALS, BVECS, s0=s0), 1000.0 / 15, rng)
    data[:30, :8] = 0.0  # some zero signal, floored identically by both
    ours = fit_tensor(data, BVALS, BVECS, method=method)
    ref = _dipy_fit(data, BVALS, BVECS, method)
    _assert_matches_dipy(ours, ref)


def _dipy_dwi(name):
    """DIPY's small real DWI regions, shipped inside its wheel (no download)."""
    pytest.importorskip("dipy")
    import nibabel as nib
    from dipy.data import get_fnames

    from dtitool.imaging.gradients import read_bvals_bvecs

    fimg, fbval, fbvec = get_fnames(name=name)
    data = np.asarray(nib.load(fimg).dataobj, dtype=float)
    bvals, bvecs = read_bvals_bvecs(fbval, fbvec)  # b0 direction is "nan" on disk
    return data, bvals, bvecs


@pytest.mark.parametrize("method", ["ols", "wls"])
@pytest.mark.parametrize("name", ["small_64D", "small_101D"])
def test_md_equals_dipy_in_every_voxel_of_its_real_dwi(method, name):
    # small_64D: 10 x 10 x 10, 64 directions at b ~ 1000, scanner int16 data,
    # 28 voxels with a negative fitted eigenvalue; small_101D: 6 x 10 x 10,
    # 101 directions on shells up to b ~ 3000
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import design_matrix as dipy_design_matrix

    data, bvals, bvecs = _dipy_dwi(name)
    ours = fit_tensor(data, bvals, bvecs, method=method)
    ref = _dipy_fit(data, bvals, bvecs, method)
    gtab = gradient_table(bvals, bvecs=bvecs)
    assert ours.min_diffusivity == pytest.approx(
        1e-6 / -dipy_design_matrix(gtab).min(), rel=1e-6)
    _assert_matches_dipy(ours, ref)
    assert np.max(np.abs(ours.md / ref.md - 1)) < 1e-6
    if name == "small_64D":
        assert ours.n_clipped > 20
        # as fitted, the same voxels are off by up to 5e5 relative
        raw = fit_tensor(data, bvals, bvecs, method=method, min_diffusivity=None)
        assert np.max(np.abs(raw.md / ref.md - 1)) > 1e3


@pytest.mark.parametrize("b0_bval", [5.0, 20.0, 50.0])
def test_matches_dipy_wls_with_b0_at_small_nonzero_b(b0_bval):
    # The b0 of DIPY's real small_64D acquired at b = 5..50 s/mm^2 (with a
    # direction, as some scanners record it): both fits put that b in the
    # design matrix and count the volume as b0 (threshold 50).
    pytest.importorskip("dipy")
    import nibabel as nib
    from dipy.data import get_fnames

    from dtitool.imaging.gradients import read_bvals_bvecs

    fimg, fbval, fbvec = get_fnames(name="small_64D")
    data = np.asarray(nib.load(fimg).dataobj, dtype=float)
    bvals, bvecs = read_bvals_bvecs(fbval, fbvec)
    b0 = bvals == 0
    bvals[b0] = b0_bval
    bvecs[b0] = [0.48, 0.6, 0.64]
    ours = fit_tensor(data, bvals, bvecs, method="wls", b0_threshold=50)
    dti = pytest.importorskip("dipy.reconst.dti")
    from dipy.core.gradients import gradient_table

    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=50)
    assert gtab.b0s_mask[b0].all()
    ref = dti.TensorModel(gtab, fit_method="WLS").fit(data)
    b0_mean = data[..., b0].mean(axis=-1)
    brain = b0_mean > np.percentile(b0_mean, 20)
    # in every voxel, noise-dominated ones (a negative eigenvalue, raised to
    # the minimum diffusivity by both) included
    assert np.max(np.abs(ours.md / ref.md - 1)) < 1e-6
    # zeroing the small b (the old reading) is off by far more than that
    zeroed = fit_tensor(data, np.where(b0, 0.0, bvals), bvecs, method="wls")
    assert np.percentile(np.abs(zeroed.md[brain] / ref.md[brain] - 1), 99) > 1e-3


# --- command line ---------------------------------------------------------------


@pytest.fixture
def dwi_files(tmp_path):
    import nibabel as nib

    from dtitool.imaging.gradients import write_bvals_bvecs

    rng = np.random.default_rng(11)
    shape = (4, 5, 3)
    t = random_tensors(int(np.prod(shape)), rng).reshape(*shape, 6)
    data = predict_signal(t, BVALS, BVECS, s0=1000.0)
    affine = np.array(
        [[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]]
    )
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "dwi.nii.gz")
    write_bvals_bvecs(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", BVALS, BVECS)
    mask = np.zeros(shape, np.uint8)
    mask[1:3, 1:4, :] = 1
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    return tmp_path, t, affine, mask.astype(bool)


def _cli_args(d, *extra, out="dti/sub-01"):
    return [
        "fit-tensor",
        str(d / "dwi.nii.gz"),
        "--bval",
        str(d / "dwi.bval"),
        "--bvec",
        str(d / "dwi.bvec"),
        "--out",
        str(d / out),
        *extra,
    ]


@pytest.mark.parametrize("method", ["wls", "ols"])
def test_cli_round_trip(dwi_files, method, capsys):
    import nibabel as nib

    from dtitool.cli import main

    d, t, affine, mask = dwi_files
    args = _cli_args(d, "--mask", str(d / "mask.nii.gz"), "--method", method)
    assert main(args) == 0
    assert "sub-01_MD.nii.gz" in capsys.readouterr().out
    md_img = nib.load(d / "dti" / "sub-01_MD.nii.gz")
    fa_img = nib.load(d / "dti" / "sub-01_FA.nii.gz")
    for img in (md_img, fa_img):
        assert img.shape == (4, 5, 3)
        assert img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, affine)
        assert img.header.get_xyzt_units() == ("mm", "sec")
    md = md_img.get_fdata()
    # float32 input data: agreement to float32 precision
    np.testing.assert_allclose(md[mask], t[mask][:, :3].mean(axis=1), rtol=1e-5)
    assert np.all(md[~mask] == 0)
    expected_fa = fit_tensor(predict_signal(t, BVALS, BVECS), BVALS, BVECS).fa
    np.testing.assert_allclose(fa_img.get_fdata()[mask], expected_fa[mask], atol=1e-5)
    # existing outputs: refused without --force, replaced with it
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_cli_without_mask_computes_and_writes_a_brain_mask(tmp_path, capsys):
    import nibabel as nib

    from dtitool.cli import main
    from dtitool.imaging.gradients import write_bvals_bvecs

    # a brain (tensors, S0 = 1000) in a background of Rician noise
    rng = np.random.default_rng(12)
    shape = (32, 32, 28)
    xyz = np.indices(shape) - np.array([16, 16, 14])[:, None, None, None]
    brain = (xyz**2).sum(axis=0) < 12**2  # a ball
    t = np.zeros((*shape, 6))
    t[brain] = random_tensors(int(brain.sum()), rng)
    data = predict_signal(t, BVALS, BVECS, s0=np.where(brain, 1000.0, 0.0))
    data = rician(data, 20.0, rng)
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)),
             tmp_path / "dwi.nii.gz")
    write_bvals_bvecs(tmp_path / "dwi.bval", tmp_path / "dwi.bvec", BVALS, BVECS)
    args = ["fit-tensor", str(tmp_path / "dwi.nii.gz"), "--bval",
            str(tmp_path / "dwi.bval"), "--bvec", str(tmp_path / "dwi.bvec"),
            "--out", str(tmp_path / "fit")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "median-Otsu brain mask" in out
    mask = nib.load(tmp_path / "fit_mask.nii.gz").get_fdata() > 0
    # median filter and Otsu, as DIPY's median_otsu with its defaults
    from dtitool.imaging.brainmask import median_otsu

    np.testing.assert_array_equal(mask, median_otsu(data[..., BVALS == 0].mean(-1)))
    # never background; the core of the ball (4 passes of a radius-4 median
    # filter erode a small ball's surface, as DIPY's do)
    core = (xyz**2).sum(axis=0) < 8**2
    assert not (mask & ~brain).any() and mask[core].all()
    fa = nib.load(tmp_path / "fit_FA.nii.gz").get_fdata()
    md = nib.load(tmp_path / "fit_MD.nii.gz").get_fdata()
    assert np.all(fa[~mask] == 0) and np.all(md[~mask] == 0)
    assert fa.max() <= 1 and md[mask].min() > 0


MAPS = ("MD", "FA", "AD", "RD", "L1", "L2", "L3", "V1", "V2", "V3", "S0", "sse")


def _noisy_dwi_files(d, seed=15):
    """A 6 x 5 x 4 DWI of noisy tensors (some noise-dominated) with a mask."""
    import nibabel as nib

    from dtitool.imaging.gradients import write_bvals_bvecs

    rng = np.random.default_rng(seed)
    shape = (6, 5, 4)
    t = random_tensors(int(np.prod(shape)), rng).reshape(*shape, 6)
    s0 = np.where(rng.random(shape) < 0.3, 40.0, 1000.0)  # 30 % low signal
    data = rician(predict_signal(t, BVALS, BVECS, s0=s0), 20.0, rng)
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, d / "dwi.nii.gz")
    write_bvals_bvecs(d / "dwi.bval", d / "dwi.bvec", BVALS, BVECS)
    mask = np.ones(shape, np.uint8)
    mask[0] = 0
    nib.save(nib.Nifti1Image(mask, affine), d / "mask.nii.gz")
    return data.astype(np.float32), mask.astype(bool), affine


def test_cli_writes_every_map_as_fsl_names_it_with_sidecars(tmp_path, capsys):
    import json

    import nibabel as nib

    from dtitool.cli import main

    data, mask, affine = _noisy_dwi_files(tmp_path)
    assert main(_cli_args(tmp_path, "--mask", str(tmp_path / "mask.nii.gz"))) == 0
    out = capsys.readouterr().out
    assert "with an eigenvalue raised to" in out
    fit = fit_tensor(data, BVALS, BVECS, mask=mask)
    assert fit.n_clipped > 0
    expected = {
        "MD": fit.md, "FA": fit.fa, "AD": fit.ad, "RD": fit.rd,
        "L1": fit.evals[..., 0], "L2": fit.evals[..., 1], "L3": fit.evals[..., 2],
        "V1": fit.evecs[..., 0], "V2": fit.evecs[..., 1], "V3": fit.evecs[..., 2],
        "S0": fit.s0, "sse": fit.sse(data),
    }
    folder = tmp_path / "dti"
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(
        [f"sub-01_{m}.{ext}" for m in MAPS for ext in ("nii.gz", "json")]
        + ["dtitool-run.json"])
    for m in MAPS:
        img = nib.load(folder / f"sub-01_{m}.nii.gz")
        assert img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, affine)
        assert img.header.get_xyzt_units() == ("mm", "sec")
        arr = img.get_fdata()
        assert arr.shape == ((6, 5, 4, 3) if m.startswith("V") else (6, 5, 4))
        np.testing.assert_allclose(arr, expected[m], rtol=2e-6,
                                   atol=1e-12 if m != "sse" else 1e-3)
        side = json.loads((folder / f"sub-01_{m}.json").read_text())
        assert side["Parameter"] == m.upper() and side["Model"] == "DTI"
        assert side["FitMethod"] == "WLS" and side["BrainMask"] == "given"
        assert side["MinimumDiffusivity"] == pytest.approx(fit.min_diffusivity)
        assert side["Sources"] == {"DWI": "dwi.nii.gz", "bval": "dwi.bval",
                                   "bvec": "dwi.bvec", "mask": "mask.nii.gz"}
        assert side["VoxelsWithFlooredEigenvalue"] == fit.n_clipped
        assert side["Description"] and side["Computation"]
    units = {m: json.loads((folder / f"sub-01_{m}.json").read_text())["Units"]
             for m in MAPS}
    assert units["MD"] == units["L3"] == units["RD"] == "mm^2/s"
    # eigenvectors: unit length where fitted
    v1 = nib.load(folder / "sub-01_V1.nii.gz").get_fdata()
    np.testing.assert_allclose(np.linalg.norm(v1[mask], axis=-1), 1, rtol=1e-6)


def test_cli_min_diffusivity_none_keeps_todays_maps(tmp_path, capsys):
    import json

    import nibabel as nib

    from dtitool.cli import main

    data, mask, _ = _noisy_dwi_files(tmp_path)
    args = _cli_args(tmp_path, "--mask", str(tmp_path / "mask.nii.gz"),
                     "--min-diffusivity", "none")
    assert main(args) == 0
    assert "with an eigenvalue raised" not in capsys.readouterr().out
    raw = fit_tensor(data, BVALS, BVECS, mask=mask, min_diffusivity=None)
    md = nib.load(tmp_path / "dti" / "sub-01_MD.nii.gz").get_fdata()
    np.testing.assert_allclose(md, raw.md, rtol=1e-6, atol=1e-12)
    l3 = nib.load(tmp_path / "dti" / "sub-01_L3.nii.gz").get_fdata()
    assert l3[mask].min() < 0  # noise-dominated voxels, kept as fitted
    side = json.loads((tmp_path / "dti" / "sub-01_MD.json").read_text())
    assert side["MinimumDiffusivity"] is None
    assert main([*args[:-2], "--min-diffusivity", "1e-4", "--quiet", "--out",
                 str(tmp_path / "floor" / "s")]) == 0
    l3 = nib.load(tmp_path / "floor" / "s_L3.nii.gz").get_fdata()
    assert l3[mask].min() == pytest.approx(1e-4)


@pytest.mark.parametrize("value", ["-1e-9", "dipy", "nan", ""])
def test_cli_bad_min_diffusivity_exit_2(dwi_files, value, capsys):
    from dtitool.cli import main

    d = dwi_files[0]
    assert main(_cli_args(d, f"--min-diffusivity={value}")) == 2
    err = capsys.readouterr().err
    assert "--min-diffusivity" in err and "auto, none or a number >= 0" in err
    assert not (d / "dti").exists()


def test_cli_refuses_before_writing_if_any_map_exists(dwi_files, capsys):
    from dtitool.cli import main

    d = dwi_files[0]
    (d / "dti").mkdir()
    (d / "dti" / "sub-01_V2.nii.gz").write_bytes(b"mine")
    assert main(_cli_args(d, "--mask", str(d / "mask.nii.gz"))) == 2
    assert "sub-01_V2.nii.gz" in capsys.readouterr().err
    assert sorted(p.name for p in (d / "dti").iterdir()) == ["sub-01_V2.nii.gz"]


def test_cli_bids_writes_param_maps_with_sidecars(tmp_path, capsys):
    import json

    import nibabel as nib

    from dtitool.cli import main

    src = tmp_path / "src"
    src.mkdir()
    _noisy_dwi_files(src)
    dwi = tmp_path / "study" / "sub-01" / "ses-1" / "dwi"
    dwi.mkdir(parents=True)
    for ext in ("nii.gz", "bval", "bvec"):
        (src / f"dwi.{ext}").rename(dwi / f"sub-01_ses-1_dwi.{ext}")
    out = tmp_path / "deriv"
    assert main(["fit-tensor", "--bids", str(tmp_path / "study"), "--out", str(out),
                 "--n-jobs", "1", "--quiet"]) == 0
    base = out / "sub-01" / "ses-1" / "dwi" / "sub-01_ses-1"
    for m in MAPS:
        name = f"{base}_model-DTI_param-{m.upper()}_dwimap"
        img = nib.load(f"{name}.nii.gz")
        assert img.shape == ((6, 5, 4, 3) if m.startswith("V") else (6, 5, 4))
        side = json.loads(Path(f"{name}.json").read_text())
        assert side["Sources"]["DWI"] == "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz"
        assert side["BrainMask"] == "median-otsu"
    mask_side = json.loads(Path(f"{base}_desc-brain_mask.json").read_text())
    assert "median filter" in mask_side["Description"]
    table = (out / "tensor_fits.tsv").read_text().splitlines()
    assert "floored_eigenvalue_voxels" in table[0].split("\t")


def _write_bad(d, case, affine):
    import nibabel as nib

    def save(arr, aff, name):
        nib.save(nib.Nifti1Image(arr, aff), d / name)
        return str(d / name)

    if case == "3d":
        x = save(np.ones((4, 5, 3), np.float32), affine, "x.nii.gz")
        return {"--dwi": x}, "expected a 4D image"
    if case == "bvals":
        (d / "dwi.bval").write_text(" ".join(["0"] + ["1000"] * 68) + "\n")
        (d / "dwi.bvec").write_text("\n".join([" ".join(["1"] * 69)] * 3) + "\n")
        return {}, r"has 70 volumes but .*dwi\.bval' has 69 b-values"
    if case == "mask_shape":
        m = save(np.ones((4, 5, 4), np.uint8), affine, "m.nii.gz")
        return {"--mask": m}, r"has shape \(4, 5, 4\) but DWI .* grid"
    if case == "mask_affine":
        m = save(np.ones((4, 5, 3), np.uint8), np.eye(4), "m.nii.gz")
        return {"--mask": m}, "has affine .* but DWI"
    if case == "mask_empty":
        m = save(np.zeros((4, 5, 3), np.uint8), affine, "m.nii.gz")
        return {"--mask": m}, "no nonzero voxel"
    if case == "nan_data":  # fails inside the fit, after outputs are reserved
        x = save(np.full((4, 5, 3, 70), np.nan, np.float32), affine, "x.nii.gz")
        return {"--dwi": x}, "no voxel with finite, positive signal"
    if case == "not_nifti":
        (d / "x.nii.gz").write_text("hello")
        return {"--dwi": str(d / "x.nii.gz")}, "cannot read DWI .*not a readable NIfTI"
    if case == "missing":
        return {"--dwi": str(d / "nope.nii.gz")}, "does not exist"
    if case == "prefix_is_folder":
        return {"--out": str(d) + "/"}, "is a folder; give a prefix"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "3d",
        "bvals",
        "mask_shape",
        "mask_affine",
        "mask_empty",
        "nan_data",
        "not_nifti",
        "missing",
        "prefix_is_folder",
    ],
)
def test_cli_bad_input_exit_2_nothing_written(dwi_files, case, capsys):
    from dtitool.cli import main

    d, _, affine, _ = dwi_files
    opts, match = _write_bad(d, case, affine)
    args = _cli_args(d)
    if "--dwi" in opts:
        args[1] = opts.pop("--dwi")
    if "--out" in opts:
        args[args.index("--out") + 1] = opts.pop("--out")
    for k, v in opts.items():
        args += [k, v]
    before = sorted(p.name for p in d.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("dtitool fit-tensor: error:")
    assert re.search(match, err), err
    assert sorted(p.name for p in d.rglob("*")) == before


# --- internals: batched solver and its fallback ----------------------------------


def test_cholesky_solve_batched_matches_numpy_and_flags_singular():
    from dtitool.imaging.tensor import _cholesky_solve_batched

    rng = np.random.default_rng(12)
    a = rng.normal(size=(50, 7, 7))
    spd = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(7)
    spd[0] = np.diag([1, 1, 1, 1, 1, 1, 0.0])  # singular
    rhs = rng.normal(size=(50, 7))
    iu, ju = np.triu_indices(7)
    pos = {(i, j): n for n, (i, j) in enumerate(zip(iu, ju, strict=True))}
    sol, bad = _cholesky_solve_batched(spd[:, iu, ju].T.copy(), rhs.T.copy(), pos)
    assert bad[0]
    assert not bad[1:].any()
    expected = np.linalg.solve(spd[1:], rhs[1:, :, None])[..., 0]
    np.testing.assert_allclose(sol.T[1:], expected, rtol=1e-9, atol=1e-12)


def test_wls_pseudo_inverse_fallback_matches_cholesky_path():
    from dtitool.imaging.tensor import _Solver, _wls_chunk, _wls_pinv

    rng = np.random.default_rng(13)
    t = random_tensors(1024, rng)
    data = rician(predict_signal(t, BVALS, BVECS, s0=900.0), 40.0, rng)
    solver = _Solver(design_matrix(BVALS, BVECS))
    logy = np.log(data)
    np.testing.assert_allclose(
        _wls_pinv(logy, solver), _wls_chunk(logy, solver), rtol=1e-8, atol=1e-13
    )
