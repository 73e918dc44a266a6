import numpy as np
import pytest

from dtitool.imaging.gradients import (
    default_protocol,
    read_bvals_bvecs,
    write_bvals_bvecs,
)


def test_default_protocol_shape_and_b0_interleaved():
    bvals, bvecs = default_protocol()
    assert bvals.shape == (70,)
    assert bvecs.shape == (70, 3)
    b0 = np.flatnonzero(bvals == 0)
    assert b0.size == 6
    assert b0[0] == 0
    # interleaved through the series, not bunched at the start
    assert b0[-1] > 50
    assert np.all(np.diff(b0) >= 10)
    assert np.all(bvals[bvals > 0] == 1000.0)
    np.testing.assert_allclose(np.linalg.norm(bvecs[bvals > 0], axis=1), 1.0)
    np.testing.assert_array_equal(bvecs[bvals == 0], 0.0)


def test_default_protocol_deterministic_and_well_spread():
    b1, g1 = default_protocol()
    b2, g2 = default_protocol()
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(g1, g2)
    g = g1[b1 > 0]
    assert np.all(g[:, 2] >= 0)  # half sphere
    # angular separation, antipodal-symmetric: no two directions closer than 10 deg
    cos = np.abs(g @ g.T)
    np.fill_diagonal(cos, 0.0)
    assert np.degrees(np.arccos(cos.max())) > 10.0
    # near-isotropic coverage: the second moment is close to I/3
    np.testing.assert_allclose(g.T @ g / len(g), np.eye(3) / 3, atol=0.02)


@pytest.mark.parametrize(("n_b0", "n_dir"), [(1, 6), (3, 30), (10, 12)])
def test_default_protocol_counts(n_b0, n_dir):
    bvals, _ = default_protocol(n_b0=n_b0, n_directions=n_dir, bval=800.0)
    assert (bvals == 0).sum() == n_b0
    assert (bvals == 800.0).sum() == n_dir


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_b0": 0}, "n_b0 must be an integer >= 1"),
        ({"n_directions": 5}, "n_directions must be an integer >= 6"),
        ({"n_directions": 6.0}, "n_directions must be an integer"),
        ({"bval": -1}, "bval must be a finite number > 0"),
        ({"bval": float("nan")}, "bval must be a finite number > 0"),
    ],
)
def test_default_protocol_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        default_protocol(**kwargs)


def test_round_trip_fsl_layout(tmp_path):
    bvals, bvecs = default_protocol(n_b0=2, n_directions=10)
    fb, fg = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    write_bvals_bvecs(fb, fg, bvals, bvecs)
    # FSL layout: one row of K b-values, 3 rows of K numbers
    assert len(fb.read_text().split("\n")[0].split()) == 12
    rows = fg.read_text().strip().split("\n")
    assert len(rows) == 3
    assert all(len(r.split()) == 12 for r in rows)
    b2, g2 = read_bvals_bvecs(fb, fg)
    np.testing.assert_allclose(b2, bvals)
    np.testing.assert_allclose(g2, bvecs, atol=1e-10)


def test_read_accepts_k_by_3_and_column_bvals(tmp_path):
    bvals, bvecs = default_protocol(n_b0=1, n_directions=7)
    fb, fg = tmp_path / "b.txt", tmp_path / "g.txt"
    fb.write_text("\n".join(str(b) for b in bvals) + "\n")
    lines = [" ".join(repr(float(v)) for v in row) for row in bvecs]
    fg.write_text("\n".join(lines) + "\n")
    b2, g2 = read_bvals_bvecs(fb, fg)
    np.testing.assert_array_equal(b2, bvals)
    np.testing.assert_array_equal(g2, bvecs)


def _write(tmp_path, bval_text, bvec_text):
    fb, fg = tmp_path / "x.bval", tmp_path / "x.bvec"
    fb.write_text(bval_text)
    fg.write_text(bvec_text)
    return fb, fg


GOOD_BVEC = "0 1 0 0\n0 0 1 0\n0 0 0 1\n"


@pytest.mark.parametrize(
    ("bval_text", "bvec_text", "match"),
    [
        ("0 1000 1000\n", GOOD_BVEC, r"has 3 values but b-vector file .* 4 directions"),
        ("0 1000 -5 1000\n", GOOD_BVEC, r"x\.bval.*negative b-value -5 at volume 2"),
        ("0 1000 nan 1000\n", GOOD_BVEC, r"x\.bval.*NaN or infinite"),
        ("0 1000 abc 1000\n", GOOD_BVEC, r"x\.bval.*line 1.*not a number"),
        ("", GOOD_BVEC, r"x\.bval.*is empty"),
        ("0 1000\n1000 1000\n", GOOD_BVEC, r"x\.bval.*2 x 2 table"),
        ("0 1000 1000 1000\n", "0 1 0 0\n0 0 1\n0 0 0 1\n", r"x\.bvec.*unequal"),
        ("0 1000 1000 1000\n", "0 1 0 0\n0 0 1 0\n", r"x\.bvec.*2 x 4 table"),
        (
            "0 1000 1000 1000\n",
            "0 1 0 inf\n0 0 1 0\n0 0 0 1\n",
            r"x\.bvec.*NaN or infinite values at volume 3 \(b = 1000\)",
        ),
    ],
)
def test_read_bad_files(tmp_path, bval_text, bvec_text, match):
    fb, fg = _write(tmp_path, bval_text, bvec_text)
    with pytest.raises(ValueError, match=match):
        read_bvals_bvecs(fb, fg)


def test_read_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"b-value file .*nope\.bval.* does not exist"):
        read_bvals_bvecs(tmp_path / "nope.bval", tmp_path / "nope.bvec")


def test_write_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"bvecs has shape \(3, 2\)"):
        write_bvals_bvecs(tmp_path / "b", tmp_path / "g", [0, 1, 2], np.zeros((3, 2)))


def test_nan_direction_of_b0_read_as_zero(tmp_path):
    fb, fg = _write(tmp_path, "0 1000 1000 1000\n", "nan 1 0 0\nnan 0 1 0\nnan 0 0 1\n")
    _, bvecs = read_bvals_bvecs(fb, fg)
    np.testing.assert_array_equal(bvecs[0], 0.0)
    np.testing.assert_array_equal(bvecs[1:], np.eye(3))
