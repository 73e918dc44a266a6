"""The diffusion tensor: forward model and (vectorised) least-squares fit.

Axis conventions: a tensor is stored as its 6 unique elements in the order
``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)`` along the last axis (mm^2/s); diffusion
signals have the ``K`` volumes along the last axis; any leading shape (voxels,
subjects, ...) is batched. b-values are in s/mm^2, ``bvecs`` has shape ``(K, 3)``.

Eigenvalues below a minimum diffusivity are raised to it before MD, FA, AD and
RD are computed, as DIPY's ``TensorModel`` does by default (``min_diffusivity=
"auto"``: 1e-6 divided by the largest element of the b-matrix, about 1e-9
mm^2/s at b = 1000 s/mm^2); ``min_diffusivity=None`` keeps every eigenvalue as
fitted (MD = trace / 3, as FSL ``dtifit`` reports it).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from functools import cached_property

import numpy as np

from dtitool.imaging.gradients import B0_THRESHOLD, check_bvals, clean_bvecs

__all__ = [
    "MIN_DIFFUSIVITY_TOL",
    "TENSOR_ORDER",
    "TensorFit",
    "design_matrix",
    "fit_tensor",
    "fractional_anisotropy",
    "predict_signal",
    "tensor_from_evals_evecs",
    "tensor_to_matrix",
]

METHODS = ("wls", "ols")
"""Fitting methods accepted by :func:`fit_tensor`."""

MIN_SIGNAL = 1e-4
"""Default floor for the signal before the log (DIPY's ``MIN_POSITIVE_SIGNAL``)."""

DEFAULT_STEP = 16384
"""Default number of voxels fitted per chunk (about 40 MB of temporaries at K=70)."""

MIN_DIFFUSIVITY_TOL = 1e-6
"""DIPY's ``tol``: the default minimum diffusivity is this divided by the largest
element of the b-matrix (s/mm^2), so that ``b * D_min`` is at most 1e-6."""

_BLOCK = 1024  # voxels per matrix product; chunks are whole multiples of it

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


def _check_gradient_arrays(bvals, bvecs, b0_threshold=None
                           ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Validate shapes/values of a gradient table; return float arrays.

    With ``b0_threshold``, a non-finite direction of a b0 volume is read as a
    zero vector, exactly as :func:`dtitool.imaging.gradients.read_bvals_bvecs`
    reads it from a file.
    """
    bvals = _as_float_array(bvals, "bvals")
    bvecs = _as_float_array(bvecs, "bvecs")
    if bvals.ndim != 1 or bvals.shape[0] == 0:
        raise ValueError(f"bvals has shape {bvals.shape}; expected (K,) with K >= 1")
    if bvecs.shape != (bvals.shape[0], 3):
        raise ValueError(
            f"bvecs has shape {bvecs.shape} but bvals has shape {bvals.shape}; "
            f"expected bvecs of shape ({bvals.shape[0]}, 3)"
        )
    check_bvals(bvals, "bvals")
    if b0_threshold is None:
        if not np.all(np.isfinite(bvecs)):
            raise ValueError("bvecs contains NaN or infinite values")
    else:
        bvecs = clean_bvecs(bvals, bvecs, b0_threshold, "bvecs")
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


def tensor_to_matrix(tensor) -> np.ndarray:
    """Return the symmetric 3 x 3 matrices of tensors.

    Parameters
    ----------
    tensor : array_like, shape (..., 6)
        ``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)``.

    Returns
    -------
    ndarray, shape (..., 3, 3)
    """
    tensor = _as_float_array(tensor, "tensor")
    if tensor.ndim < 1 or tensor.shape[-1] != 6:
        raise ValueError(f"tensor has shape {tensor.shape}; expected (..., 6)")
    # index of the element at (r, c) in the 6-vector
    idx = np.array([[0, 3, 4], [3, 1, 5], [4, 5, 2]])
    return tensor[..., idx]


def fractional_anisotropy(evals) -> np.ndarray:
    r"""Return the fractional anisotropy of eigenvalues.

    Parameters
    ----------
    evals : array_like, shape (..., 3)
        Tensor eigenvalues.

    Returns
    -------
    ndarray, shape (...)
        FA in [0, 1] for non-negative eigenvalues; 0 where all eigenvalues are 0.

    Notes
    -----
    .. math::

        FA = \sqrt{\tfrac12}\,
        \frac{\sqrt{(\lambda_1-\lambda_2)^2 + (\lambda_2-\lambda_3)^2
        + (\lambda_3-\lambda_1)^2}}{\sqrt{\lambda_1^2+\lambda_2^2+\lambda_3^2}}

    (Basser and Pierpaoli 1996, J Magn Reson B 111:209.)

    Examples
    --------
    >>> float(fractional_anisotropy([1e-3, 1e-3, 1e-3]))
    0.0
    >>> round(float(fractional_anisotropy([1.0, 0.0, 0.0])), 12)
    1.0
    """
    ev = _as_float_array(evals, "evals")
    if ev.ndim < 1 or ev.shape[-1] != 3:
        raise ValueError(f"evals has shape {ev.shape}; expected (..., 3)")
    l1, l2, l3 = ev[..., 0], ev[..., 1], ev[..., 2]
    num = (l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2
    den = l1 * l1 + l2 * l2 + l3 * l3
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = np.sqrt(0.5 * num / den)
    return np.where(den > 0, fa, 0.0)


def _gradient_table(bvals, bvecs, b0_threshold
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Validate a gradient table for fitting: (actual b, unit vectors, is_b0)."""
    if isinstance(b0_threshold, bool) or not isinstance(b0_threshold, numbers.Real):
        raise ValueError(f"b0_threshold must be a number, got {b0_threshold!r}")
    b0_threshold = float(b0_threshold)
    if not math.isfinite(b0_threshold) or b0_threshold < 0:
        raise ValueError(
            f"b0_threshold must be a finite number >= 0 s/mm^2, got {b0_threshold!r}"
        )
    bvals, bvecs = _check_gradient_arrays(bvals, bvecs, b0_threshold)
    is_b0 = bvals <= b0_threshold
    g = _unit_bvecs(bvecs, is_b0)
    return bvals, g, is_b0


def design_matrix(bvals, bvecs, *, b0_threshold=B0_THRESHOLD) -> np.ndarray:
    r"""Return the log-linear design matrix of the tensor model.

    Parameters
    ----------
    bvals : array_like, shape (K,)
        b-values in s/mm^2, each entering at its actual value (a "b0" volume
        acquired at b = 5 enters at b = 5), as in FSL ``dtifit`` and DIPY.
    bvecs : array_like, shape (K, 3)
        Gradient directions (normalised here; zero or NaN only for b0 volumes,
        which then contribute no diffusion weighting).
    b0_threshold : float
        b-values at or below this count as b0 (s/mm^2): it decides which
        volumes may lack a direction, never the b-values in the matrix.

    Returns
    -------
    ndarray, shape (K, 7)
        ``X`` such that ``log S = X @ (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz, log S0)``.

    Notes
    -----
    Row k is :math:`(-b g_x^2, -b g_y^2, -b g_z^2, -2b g_x g_y, -2b g_x g_z,
    -2b g_y g_z, 1)`.
    """
    bvals, g, _ = _gradient_table(bvals, bvecs, b0_threshold)
    return np.column_stack([-_bmatrix_columns(bvals, g), np.ones(bvals.shape[0])])


def _check_design_rank(x: np.ndarray, is_b0: np.ndarray, bvals: np.ndarray) -> None:
    n_dw = int((~is_b0).sum())
    rank_d = np.linalg.matrix_rank(x[~is_b0, :6]) if n_dw else 0
    if rank_d < 6:
        hint = ""
        if n_dw == 0 and 0 < bvals.max() <= 10:
            hint = (" (every b-value is <= 10: in ms/um^2? dtitool expects s/mm^2, "
                    "1 ms/um^2 = 1000 s/mm^2)")
        raise ValueError(
            f"the gradient table has {n_dw} diffusion-weighted volumes spanning only "
            f"{rank_d} independent tensor directions; a tensor fit needs at least 6 "
            f"non-collinear gradient directions{hint}"
        )
    if np.linalg.matrix_rank(x) < 7:
        raise ValueError(
            "the gradient table has no b0 volume and a single b-value, so S0 and "
            "the tensor trace cannot be separated; add a b0 volume (or a second "
            "b-value)"
        )


class TensorFit:
    """Result of :func:`fit_tensor`; the derived maps are computed on first use.

    Parameters
    ----------
    tensor : ndarray, shape (..., 6)
        Fitted ``(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz)`` in mm^2/s (0 outside the mask).
    s0 : ndarray, shape (...)
        Fitted non-diffusion-weighted signal (0 outside the mask).
    mask : ndarray of bool, shape (...)
        Voxels that were fitted.
    method : str
        ``"wls"`` or ``"ols"``.
    min_diffusivity : float or None
        Eigenvalues below this (mm^2/s) are raised to it; None keeps them as
        fitted.
    design : ndarray, shape (K, 7), optional
        The design matrix of the fit (:func:`design_matrix`), for :meth:`sse`.
    n_nonfinite, n_no_signal : int
        As below.

    Attributes
    ----------
    tensor, s0, mask, method, min_diffusivity, design
        As given. ``tensor`` is the least-squares solution; with a minimum
        diffusivity, the maps describe ``V diag(evals) V^T`` instead (the same
        tensor unless an eigenvalue was raised).
    evals : ndarray, shape (..., 3)
        Eigenvalues in descending order (mm^2/s), raised to
        ``min_diffusivity`` where below it (0 outside the mask).
    evecs : ndarray, shape (..., 3, 3)
        Eigenvectors as columns, ``evecs[..., :, j]`` for ``evals[..., j]``.
    md : ndarray, shape (...)
        Mean diffusivity, the mean of :attr:`evals` (trace / 3 without a
        minimum diffusivity), mm^2/s.
    ad, rd : ndarray, shape (...)
        Axial (the largest eigenvalue) and radial (the mean of the other two)
        diffusivity, mm^2/s.
    fa : ndarray, shape (...)
        Fractional anisotropy from :attr:`evals`, in [0, 1].
    n_nonfinite : int
        Voxels (of the mask) left out because their signal had NaN or
        infinite values.
    n_no_signal : int
        Voxels (of the mask) left out because every volume's signal was <= 0
        (nothing to fit; their maps are 0).
    n_clipped : int
        Fitted voxels with an eigenvalue raised to ``min_diffusivity``
        (noise-dominated fits, whose tensor is not positive definite).
    n_fa_clipped : int
        Fitted voxels whose FA came out above 1 (a tensor with a negative
        eigenvalue, kept with ``min_diffusivity=None``) and was clipped to 1.

    Notes
    -----
    A noisy fit can have a negative eigenvalue, which no tissue has. DIPY
    raises every eigenvalue to a minimum diffusivity before computing MD and
    FA (Garyfallidis et al. 2014, ``dipy.reconst.dti``); with the default
    ``"auto"`` :func:`fit_tensor` does the same, so MD equals DIPY's in every
    voxel. FSL ``dtifit`` keeps the eigenvalues as fitted: ``min_diffusivity
    =None`` does too, MD is then trace / 3, FA is clipped to [0, 1] and
    :attr:`n_fa_clipped` counts the voxels. The two differ only in voxels
    whose fitted tensor is not positive definite (:attr:`n_clipped`).

    References
    ----------
    Garyfallidis E, et al. Dipy, a library for the analysis of diffusion MRI
    data. Front Neuroinform 2014;8:8.
    """

    def __init__(self, tensor, s0, mask, method, *, min_diffusivity=None,
                 design=None, n_nonfinite=0, n_no_signal=0):
        self.tensor = tensor
        self.s0 = s0
        self.mask = mask
        self.method = method
        self.min_diffusivity = min_diffusivity
        self.design = design
        self.n_nonfinite = int(n_nonfinite)
        self.n_no_signal = int(n_no_signal)

    def __repr__(self) -> str:
        return (
            f"TensorFit(method={self.method!r}, shape={self.tensor.shape[:-1]}, "
            f"n_fitted={int(self.mask.sum())}, "
            f"min_diffusivity={self.min_diffusivity!r})"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading (voxel) shape of the fit."""
        return self.tensor.shape[:-1]

    @cached_property
    def md(self) -> np.ndarray:
        """Mean diffusivity in mm^2/s (0 outside the mask)."""
        if self.min_diffusivity is None:
            t = self.tensor
            return (t[..., 0] + t[..., 1] + t[..., 2]) / 3.0
        return self.evals.mean(axis=-1)

    @cached_property
    def ad(self) -> np.ndarray:
        """Axial diffusivity, the largest eigenvalue, in mm^2/s."""
        return self.evals[..., 0].copy()

    @cached_property
    def rd(self) -> np.ndarray:
        """Radial diffusivity, the mean of the two smaller eigenvalues, mm^2/s."""
        return (self.evals[..., 1] + self.evals[..., 2]) / 2.0

    @cached_property
    def _raw_evals(self) -> np.ndarray:
        if "_eig" in self.__dict__:
            return self._eig[0]
        evals = np.zeros((*self.shape, 3))
        evals[self.mask] = np.linalg.eigvalsh(self._matrices_in_mask())[:, ::-1]
        return evals

    @cached_property
    def evals(self) -> np.ndarray:
        """Eigenvalues in descending order, shape (..., 3) (0 outside the mask)."""
        if self.min_diffusivity is None:
            return self._raw_evals
        evals = self._raw_evals.copy()
        evals[self.mask] = np.maximum(evals[self.mask], self.min_diffusivity)
        return evals

    @cached_property
    def n_clipped(self) -> int:
        """Number of fitted voxels with an eigenvalue raised to the minimum."""
        if self.min_diffusivity is None:
            return 0
        low = self._raw_evals[self.mask] < self.min_diffusivity
        return int(np.count_nonzero(low.any(axis=-1)))

    def _matrices_in_mask(self) -> np.ndarray:
        return tensor_to_matrix(self.tensor[self.mask])

    @cached_property
    def _eig(self) -> tuple[np.ndarray, np.ndarray]:
        evals = np.zeros((*self.shape, 3))
        evecs = np.zeros((*self.shape, 3, 3))
        w, v = np.linalg.eigh(self._matrices_in_mask())
        evals[self.mask] = w[:, ::-1]
        evecs[self.mask] = v[:, :, ::-1]
        return evals, evecs

    @cached_property
    def evecs(self) -> np.ndarray:
        """Eigenvectors as columns, shape (..., 3, 3), matching :attr:`evals`."""
        return self._eig[1]

    @cached_property
    def _fa_raw(self) -> np.ndarray:
        return fractional_anisotropy(self.evals)

    @cached_property
    def fa(self) -> np.ndarray:
        """Fractional anisotropy in [0, 1] (0 outside the mask, for a zero tensor).

        Without a minimum diffusivity, a tensor with a negative eigenvalue
        (noise-dominated voxel) has FA above 1 by the formula; it is clipped
        to 1 and counted in :attr:`n_fa_clipped`.
        """
        return np.clip(self._fa_raw, 0.0, 1.0)

    @cached_property
    def n_fa_clipped(self) -> int:
        """Number of voxels whose FA was clipped to [0, 1]."""
        raw = self._fa_raw
        return int(np.count_nonzero((raw > 1.0) | (raw < 0.0)))

    def _reported_tensor(self) -> np.ndarray:
        """Return the tensor of :attr:`evals` and :attr:`evecs` (fitted if None)."""
        if self.min_diffusivity is None or self.n_clipped == 0:
            return self.tensor
        return tensor_from_evals_evecs(self.evals, self.evecs)

    def predict(self, bvals, bvecs) -> np.ndarray:
        """Return the signal the reported tensors predict, shape (..., K).

        The tensor is ``V diag(evals) V^T`` (eigenvalues raised to the minimum
        diffusivity, if any) and the signal ``s0 * exp(-b g^T D g)``.
        """
        return predict_signal(self._reported_tensor(), bvals, bvecs, s0=self.s0)

    def sse(self, data, *, step: int = DEFAULT_STEP) -> np.ndarray:
        r"""Return the sum of squared errors of the fit, per voxel.

        Parameters
        ----------
        data : array_like, shape (..., K)
            The signal that was fitted (same shape as given to
            :func:`fit_tensor`).
        step : int
            Voxels per chunk (bounds memory; the result does not depend on it).

        Returns
        -------
        ndarray, shape (...)
            :math:`\sum_k (S_k - \hat S_k)^2` in squared signal units, with
            :math:`\hat S` the signal the reported tensor and ``s0`` predict
            (:meth:`predict`), over every volume; 0 outside the mask. (FSL
            ``dtifit --sse`` names its map of the sum of squared errors so.)

        Raises
        ------
        ValueError
            If the fit holds no design matrix or ``data`` has another shape.
        """
        if self.design is None:
            raise ValueError("this TensorFit has no design matrix; sse needs a fit "
                             "made by fit_tensor")
        k = self.design.shape[0]
        data = np.asarray(data)
        if data.shape != (*self.shape, k):
            raise ValueError(f"data has shape {data.shape} but the fit has voxel "
                             f"shape {self.shape} and {k} volumes; expected "
                             f"{(*self.shape, k)}")
        # the voxels of the mask only (as the fit reads them): a reshape of the
        # whole array would copy it when it is not C-ordered (NIfTI data are not)
        signal = data[self.mask]
        tensor = self._reported_tensor()[self.mask]
        s0 = self.s0[self.mask]
        bmat_t = -self.design[:, :6].T  # (6, K): b g_i g_j, off-diagonals x2
        sse = np.empty(signal.shape[0])
        step = max(1, int(step))
        for start in range(0, sse.size, step):
            part = slice(start, start + step)
            resid = signal[part].astype(float)
            resid -= s0[part, None] * np.exp(-(tensor[part] @ bmat_t))
            sse[part] = np.einsum("ij,ij->i", resid, resid)
        out = np.zeros(self.shape)
        out[self.mask] = sse
        return out


def fit_tensor(
    data,
    bvals,
    bvecs,
    *,
    method: str = "wls",
    mask=None,
    b0_threshold: float = B0_THRESHOLD,
    min_signal: float = MIN_SIGNAL,
    min_diffusivity: float | str | None = "auto",
    step: int = DEFAULT_STEP,
) -> TensorFit:
    r"""Fit the diffusion tensor by (weighted) linear least squares on log signal.

    Parameters
    ----------
    data : array_like, shape (..., K)
        Diffusion signal, volumes along the last axis; any leading shape.
    bvals : array_like, shape (K,)
        b-values in s/mm^2.
    bvecs : array_like, shape (K, 3)
        Gradient directions; normalised here. A zero vector is allowed only for
        b0 volumes.
    method : {"wls", "ols"}
        ``"ols"``: ordinary least squares on log signal. ``"wls"``: the standard
        two-pass weighted fit, weights = (OLS-predicted signal)^2.
    mask : array_like of bool, shape data.shape[:-1], optional
        Voxels to fit (default: every voxel). Outside the mask every output
        (tensor, s0, md, fa, evals, evecs) is 0. Data outside the mask are not
        read (they may be NaN). Voxels of the mask whose signal has NaN or
        infinite values, or is <= 0 in every volume, are left out too (0 in
        every map) and counted (``n_nonfinite``, ``n_no_signal``).
    b0_threshold : float
        Volumes with b <= ``b0_threshold`` are b0 volumes, wherever they are in
        the series: they may have an undefined (zero or NaN) direction. Every
        volume enters the design matrix at its actual b-value, as in FSL
        ``dtifit`` and DIPY (a b0 acquired at b = 5 s/mm^2 enters at 5).
    min_signal : float
        Signal below this (zero, negative) is raised to it before the log
        (DIPY's convention and default).
    min_diffusivity : "auto", float or None
        Eigenvalues below this (mm^2/s) are raised to it before MD, FA, AD and
        RD. ``"auto"`` (default): DIPY's ``TensorModel`` default,
        :data:`MIN_DIFFUSIVITY_TOL` divided by the largest element of the
        b-matrix (about 1e-9 mm^2/s at b = 1000 s/mm^2). None: eigenvalues
        as fitted, MD = trace / 3 (FSL ``dtifit``, and dtitool before this
        option).
    step : int
        Number of voxels fitted per chunk, to bound memory (rounded up to a
        multiple of 1024). The result is bitwise independent of it.

    Returns
    -------
    TensorFit
        With ``tensor``, ``s0``, and on demand ``md``, ``fa``, ``ad``, ``rd``,
        ``evals``, ``evecs`` and the sum of squared errors (``sse(data)``).

    Raises
    ------
    ValueError
        If shapes do not match, the gradient table has non-finite values (other
        than a b0 volume's direction) or b-values in s/m^2, a parameter is out
        of range, or the gradient table cannot determine a tensor (fewer than
        6 non-collinear directions, or no b0 and a single shell).

    Notes
    -----
    With design matrix :math:`X` (see :func:`design_matrix`) and
    :math:`y = \log \max(S, s_\min)`, OLS is
    :math:`\hat\beta = X^+ y`, applied to all voxels as one matrix product.
    WLS (Chung et al. 2006, NeuroImage 33:531; as DIPY's ``wls_fit_tensor`` and
    FSL ``dtifit --wls``) solves
    :math:`(X^T W X)\beta = X^T W y` with
    :math:`W = \mathrm{diag}(\exp(2 X \hat\beta_{OLS}))`. The normal
    equations of all voxels in a chunk are formed by two matrix products
    (weights times the precomputed column products of :math:`X`) and solved
    by a batched 7 x 7 Cholesky factorisation on column-scaled :math:`X`;
    voxels whose system is numerically singular fall back to the
    pseudo-inverse of :math:`W^{1/2} X`.

    The default minimum diffusivity is DIPY's: :math:`10^{-6} / \max(1,
    \max_{k,ij} B_{k,ij})` with :math:`B` the b-matrix columns of :math:`X`
    (``tol / -design_matrix.min()`` in ``dipy.reconst.dti``), so that no
    eigenvalue times any b-value falls below :math:`10^{-6}`.

    Examples
    --------
    >>> import numpy as np
    >>> from dtitool.imaging.gradients import default_protocol
    >>> bvals, bvecs = default_protocol()
    >>> d = [1.7e-3, 0.3e-3, 0.3e-3, 0, 0, 0]
    >>> fit = fit_tensor(predict_signal(d, bvals, bvecs, s0=1000), bvals, bvecs)
    >>> round(float(fit.md), 10), round(float(fit.fa), 4)
    (0.0007666667, 0.799)
    """
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    method = method.lower()
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    step = int(step)
    if isinstance(min_signal, bool) or not isinstance(min_signal, numbers.Real):
        raise ValueError(f"min_signal must be a number > 0, got {min_signal!r}")
    if not (math.isfinite(min_signal) and min_signal > 0):
        raise ValueError(f"min_signal must be a finite number > 0, got {min_signal!r}")
    _check_min_diffusivity(min_diffusivity)
    bvals, g, is_b0 = _gradient_table(bvals, bvecs, b0_threshold)
    k = bvals.shape[0]
    data = np.asarray(data)
    if data.dtype == object or not (
        np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)
    ):
        raise ValueError(
            f"data must be an array of real numbers, got dtype {data.dtype}"
        )
    if data.ndim < 1 or data.shape[-1] != k:
        raise ValueError(
            f"data has shape {data.shape} but the gradient table has {k} volumes; "
            f"expected data of shape (..., {k})"
        )
    shape = data.shape[:-1]
    if mask is None:
        mask_arr = np.ones(shape, dtype=bool)
    else:
        mask_arr = np.asarray(mask)
        if mask_arr.shape != shape:
            raise ValueError(
                f"mask has shape {mask_arr.shape} but data has shape {data.shape}; "
                f"expected a mask of shape {shape}"
            )
        if mask_arr.dtype != bool:
            if not np.issubdtype(mask_arr.dtype, np.number) or not np.all(
                np.isin(mask_arr, (0, 1))
            ):
                raise ValueError("mask must be boolean (or hold only 0 and 1)")
            mask_arr = mask_arr.astype(bool)
        else:
            mask_arr = mask_arr.copy()

    x = np.column_stack([-_bmatrix_columns(bvals, g), np.ones(k)])
    _check_design_rank(x, is_b0, bvals)

    # Leave out (and count) voxels that cannot be fitted: non-finite signal,
    # or no signal at all (every volume <= 0; the log would see only the floor).
    flat = data.reshape(-1, k) if mask is None else data[mask_arr]
    n_nonfinite = n_no_signal = 0
    if flat.shape[0]:
        keep = np.ones(flat.shape[0], dtype=bool)
        if np.issubdtype(flat.dtype, np.floating):
            finite = np.isfinite(flat).all(axis=-1)
            n_nonfinite = int(np.count_nonzero(~finite))
            keep &= finite
        with np.errstate(invalid="ignore"):
            signal = (flat > 0).any(axis=-1)
        n_no_signal = int(np.count_nonzero(keep & ~signal))
        keep &= signal
        if not keep.all():
            idx = np.flatnonzero(mask_arr.reshape(-1))
            mask_arr.reshape(-1)[idx[~keep]] = False
            flat = flat[keep]
    params = _fit_flat(flat, x, method=method, min_signal=float(min_signal), step=step)

    tensor = np.zeros((*shape, 6))
    s0 = np.zeros(shape)
    tensor[mask_arr] = params[:, :6]
    s0[mask_arr] = np.exp(params[:, 6])
    return TensorFit(tensor, s0, mask_arr, method,
                     min_diffusivity=_resolve_min_diffusivity(min_diffusivity, x),
                     design=x, n_nonfinite=n_nonfinite, n_no_signal=n_no_signal)


def _check_min_diffusivity(value) -> None:
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0):
        raise ValueError(
            "min_diffusivity must be 'auto' (DIPY's default), None (eigenvalues "
            f"as fitted) or a finite number >= 0 in mm^2/s, got {value!r}"
        )


def _resolve_min_diffusivity(value, x: np.ndarray) -> float | None:
    """Return the eigenvalue floor (``"auto"``: as DIPY computes it from ``x``)."""
    if value is None:
        return None
    if isinstance(value, str):
        # DIPY's design matrix is -[B | 1]: -min() is the largest of B and 1
        return MIN_DIFFUSIVITY_TOL / max(1.0, float(-x[:, :6].min()))
    return float(value)


class _Solver:
    """Precomputed matrices for fitting log signal against a fixed design ``x``."""

    def __init__(self, x: np.ndarray):
        # Column scaling (Jacobi preconditioning) keeps the normal equations
        # well conditioned: b ~ 1000 columns next to the constant column.
        self.scale = np.abs(x).max(axis=0)
        xs = x / self.scale
        self.xs = xs
        self.x = x
        pinv = np.linalg.pinv(x)  # (7, K)
        self.pinv_t = pinv.T.copy()
        self.x_t = x.T.copy()
        iu, ju = np.triu_indices(7)
        self.iu, self.ju = iu, ju
        # column products for X^T W X = W @ prods (upper triangle, row-major)
        self.prods = xs[:, iu] * xs[:, ju]  # (K, 28)
        self.pos = {(i, j): n for n, (i, j) in enumerate(zip(iu, ju, strict=True))}


def _fit_flat(
    flat: np.ndarray, x: np.ndarray, *, method: str, min_signal: float, step: int
) -> np.ndarray:
    """Fit every row of ``flat`` (N, K); return (N, 7) parameters.

    Every matrix product runs on blocks of exactly ``_BLOCK`` voxels aligned to
    the global voxel index (the last block padded), so each voxel's arithmetic
    is the same whatever ``step`` is: results are bitwise independent of it.
    """
    n = flat.shape[0]
    out = np.empty((n, 7))
    solver = _Solver(x)
    chunk = -(-step // _BLOCK) * _BLOCK
    with _single_threaded_blas():
        _fit_chunks(flat, out, solver, method, min_signal, chunk)
    return out


def _single_threaded_blas():
    """Return a context keeping BLAS on one thread (if threadpoolctl is there).

    The products here are many small (1024 x K x 7..28) GEMMs; a multi-threaded
    BLAS gains nothing on them and, on a busy machine, loses several-fold to
    thread synchronisation (measured: 0.2 s vs 1-2 s for 200k voxels).
    """
    global _THREADPOOL_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its own setting
        return contextlib.nullcontext()
    if _THREADPOOL_CONTROLLER is None:
        _THREADPOOL_CONTROLLER = ThreadpoolController()
    return _THREADPOOL_CONTROLLER.limit(limits=1, user_api="blas")


_THREADPOOL_CONTROLLER = None


def _fit_chunks(flat, out, solver, method, min_signal, chunk) -> None:
    n, k = flat.shape
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        m = -(-(stop - start) // _BLOCK) * _BLOCK
        y = np.ones((m, k))  # padding rows: signal 1, log 0
        y[: stop - start] = flat[start:stop]
        np.maximum(y, min_signal, out=y)
        np.log(y, out=y)
        if method == "ols":
            beta = _blocked_matmul(y, solver.pinv_t)
        else:
            beta = _wls_chunk(y, solver)
        out[start:stop] = beta[: stop - start]


def _blocked_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multiply ``a @ b`` as a stack of (_BLOCK, K) products (len(a) a multiple)."""
    return (a.reshape(-1, _BLOCK, a.shape[1]) @ b).reshape(a.shape[0], b.shape[1])


def _wls_chunk(logy: np.ndarray, solver: _Solver) -> np.ndarray:
    """Two-pass WLS for a chunk of log signals (n, K); return (n, 7)."""
    # OLS-predicted log signal, through the 7 parameters (cheaper than K x K hat)
    w = _blocked_matmul(_blocked_matmul(logy, solver.pinv_t), solver.x_t)
    # weights exp(2 * log S_hat), scaled per voxel by a constant (no overflow,
    # same solution)
    w -= w.max(axis=1, keepdims=True)
    w *= 2.0
    np.exp(w, out=w)
    gram = _blocked_matmul(w, solver.prods).T  # (28, n): upper triangle of Xs^T W Xs
    w *= logy
    rhs = _blocked_matmul(w, solver.xs).T  # (7, n)
    beta, bad = _cholesky_solve_batched(gram, rhs, solver.pos)
    beta = beta.T / solver.scale
    if np.any(bad):
        beta[bad] = _wls_pinv(logy[bad], solver)
    return beta


def _wls_pinv(logy: np.ndarray, solver: _Solver) -> np.ndarray:
    """WLS by the pseudo-inverse of W^(1/2) X, for ill-conditioned voxels."""
    # predicted signal = sqrt(weights), scaled per voxel (same solution)
    sw = (logy @ solver.pinv_t) @ solver.x_t
    sw = np.exp(sw - sw.max(axis=1, keepdims=True))
    xw = solver.x[None, :, :] * sw[:, :, None]
    return np.einsum("nij,nj->ni", np.linalg.pinv(xw), sw * logy)


def _cholesky_solve_batched(
    gram: np.ndarray, rhs: np.ndarray, pos: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Solve many small SPD systems at once, vectorised over the last axis.

    ``gram`` holds the upper triangle of each m x m matrix (row-major, shape
    (m(m+1)/2, n)); ``rhs`` has shape (m, n). Returns the solutions (m, n) and a
    boolean (n,) flag for systems whose pivots were not safely positive.
    """
    m = rhs.shape[0]
    n = rhs.shape[1]
    low = [[None] * m for _ in range(m)]  # low[i][j], j <= i: Cholesky factor
    inv_diag = [None] * m
    bad = np.zeros(n, dtype=bool)
    for j in range(m):
        a_jj = gram[pos[(j, j)]]
        s = a_jj.copy()
        for k in range(j):
            s -= low[j][k] * low[j][k]
        # a pivot that lost nearly all of its diagonal: numerically singular
        bad |= ~(s > 1e-12 * a_jj)
        d = np.sqrt(np.where(s > 0, s, 1.0))
        inv_diag[j] = 1.0 / d
        for i in range(j + 1, m):
            t = gram[pos[(j, i)]].copy()
            for k in range(j):
                t -= low[i][k] * low[j][k]
            t *= inv_diag[j]
            low[i][j] = t
    # forward substitution L z = rhs
    z = [None] * m
    for i in range(m):
        t = rhs[i].copy()
        for k in range(i):
            t -= low[i][k] * z[k]
        z[i] = t * inv_diag[i]
    # back substitution L^T x = z
    sol = np.empty((m, n))
    for i in range(m - 1, -1, -1):
        t = z[i]
        for k in range(i + 1, m):
            t = t - low[k][i] * sol[k]
        sol[i] = t * inv_diag[i]
    return sol, bad
