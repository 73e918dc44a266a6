"""The diffusion tensor: forward model and (vectorised) least-squares fit.

Axis conventions: a tensor is stored as its 6 unique elements in the order
``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)`` along the last axis (mm^2/s); diffusion
signals have the ``K`` volumes along the last axis; any leading shape (voxels,
subjects, ...) is batched. b-values are in s/mm^2, ``bvecs`` has shape ``(K, 3)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TENSOR_ORDER",
    "predict_signal",
    "tensor_from_evals_evecs",
]

TENSOR_ORDER = ("xx", "yy", "zz", "xy", "xz", "yz")
"""Order of the 6 unique tensor elements along the last axis."""

# (row, column) of each tensor element in the 3 x 3 matrix.
_ROWS = np.array([0, 1, 2, 0, 0, 1])
_COLS = np.array([0, 1, 2, 1, 2, 2])


def _as_float_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers") from None
    return arr


def _check_gradient_arrays(bvals, bvecs) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes/values of a gradient table; return float arrays."""
    bvals = _as_float_array(bvals, "bvals")
    bvecs = _as_float_array(bvecs, "bvecs")
    if bvals.ndim != 1 or bvals.shape[0] == 0:
        raise ValueError(f"bvals has shape {bvals.shape}; expected (K,) with K >= 1")
    if bvecs.shape != (bvals.shape[0], 3):
        raise ValueError(
            f"bvecs has shape {bvecs.shape} but bvals has shape {bvals.shape}; "
            f"expected bvecs of shape ({bvals.shape[0]}, 3)"
        )
    if not np.all(np.isfinite(bvals)):
        raise ValueError("bvals contains NaN or infinite values")
    if not np.all(np.isfinite(bvecs)):
        raise ValueError("bvecs contains NaN or infinite values")
    if np.any(bvals < 0):
        i = int(np.flatnonzero(bvals < 0)[0])
        raise ValueError(
            f"bvals has a negative value {bvals[i]:g} at volume {i}; b-values "
            "must be >= 0 s/mm^2"
        )
    return bvals, bvecs


def _unit_bvecs(bvecs: np.ndarray, is_b0: np.ndarray) -> np.ndarray:
    """Normalise diffusion-weighted directions; a zero vector only for b0."""
    norms = np.linalg.norm(bvecs, axis=1)
    zero = norms < 1e-8
    bad = zero & ~is_b0
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"bvecs has a zero vector at volume {i} whose b-value is "
            "diffusion-weighted; a zero direction is allowed only for b0 volumes"
        )
    out = np.zeros_like(bvecs)
    out[~zero] = bvecs[~zero] / norms[~zero, None]
    return out


def _bmatrix_columns(bvals: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Return b g_i g_j for the 6 tensor elements, shape (K, 6) (off-diagonals x2)."""
    gg = g[:, _ROWS] * g[:, _COLS]
    gg[:, 3:] *= 2.0
    return bvals[:, None] * gg


def predict_signal(tensor, bvals, bvecs, *, s0=1.0) -> np.ndarray:
    r"""Return the diffusion signal of a tensor: ``s0 * exp(-b g^T D g)``.

    Parameters
    ----------
    tensor : array_like, shape (..., 6)
        Tensor elements ``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)`` in mm^2/s.
    bvals : array_like, shape (K,)
        b-values in s/mm^2 (used as given, no b0 threshold).
    bvecs : array_like, shape (K, 3)
        Gradient directions; normalised to unit length (zero vectors are
        allowed where b = 0).
    s0 : float or array_like broadcastable to ``tensor.shape[:-1]``
        Non-diffusion-weighted signal.

    Returns
    -------
    ndarray, shape (..., K)
        Predicted signal.

    Raises
    ------
    ValueError
        If the shapes do not match or values are not finite.

    Notes
    -----
    .. math:: S_k = S_0 \exp\left(-b_k \, \mathbf g_k^T \mathbf D \, \mathbf g_k\right)

    Examples
    --------
    >>> import numpy as np
    >>> md = 0.8e-3
    >>> s = predict_signal([md, md, md, 0, 0, 0], [0, 1000], [[0, 0, 0], [1, 0, 0]])
    >>> np.allclose(s, [1.0, np.exp(-0.8)])
    True
    """
    tensor = _as_float_array(tensor, "tensor")
    if tensor.ndim < 1 or tensor.shape[-1] != 6:
        raise ValueError(
            f"tensor has shape {tensor.shape}; expected (..., 6) with elements "
            "(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)"
        )
    bvals, bvecs = _check_gradient_arrays(bvals, bvecs)
    g = _unit_bvecs(bvecs, bvals == 0)
    s0 = _as_float_array(s0, "s0")
    try:
        np.broadcast_shapes(s0.shape, tensor.shape[:-1])
    except ValueError:
        raise ValueError(
            f"s0 has shape {s0.shape}, which does not broadcast to the tensor's "
            f"leading shape {tensor.shape[:-1]}"
        ) from None
    bmat = _bmatrix_columns(bvals, g)  # (K, 6)
    return s0[..., None] * np.exp(-(tensor @ bmat.T))


def tensor_from_evals_evecs(evals, evecs) -> np.ndarray:
    """Build tensors from eigenvalues and eigenvectors.

    Parameters
    ----------
    evals : array_like, shape (..., 3)
        Eigenvalues in mm^2/s.
    evecs : array_like, shape (..., 3, 3)
        Eigenvectors as columns: ``evecs[..., :, j]`` belongs to ``evals[..., j]``
        (DIPY's convention).

    Returns
    -------
    ndarray, shape (..., 6)
        ``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)`` of ``V diag(evals) V^T``.

    Raises
    ------
    ValueError
        If the shapes do not match.

    Examples
    --------
    >>> import numpy as np
    >>> tensor_from_evals_evecs([1.7e-3, 0.3e-3, 0.3e-3], np.eye(3)).tolist()
    [0.0017, 0.0003, 0.0003, 0.0, 0.0, 0.0]
    """
    evals = _as_float_array(evals, "evals")
    evecs = _as_float_array(evecs, "evecs")
    if evals.ndim < 1 or evals.shape[-1] != 3:
        raise ValueError(f"evals has shape {evals.shape}; expected (..., 3)")
    if evecs.shape[-2:] != (3, 3) or evecs.shape[:-2] != evals.shape[:-1]:
        raise ValueError(
            f"evecs has shape {evecs.shape} but evals has shape {evals.shape}; "
            f"expected evecs of shape {(*evals.shape[:-1], 3, 3)}"
        )
    # D_rc = sum_j V_rj lambda_j V_cj, only for the 6 unique (r, c).
    return np.einsum(
        "...kj,...j,...kj->...k", evecs[..., _ROWS, :], evals, evecs[..., _COLS, :]
    )
