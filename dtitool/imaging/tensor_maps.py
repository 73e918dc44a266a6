"""The maps a tensor fit writes: their names (FSL or BIDS), arrays and sidecars.

``dtitool fit-tensor`` writes every map of :data:`TENSOR_MAPS` as a float32
NIfTI with the DWI's affine and header, and beside each a JSON sidecar saying
what it holds, in which units and how it was computed (BIDS derivatives carry
one per map). Two naming schemes, one list:

- after an output prefix, as FSL ``dtifit`` names its outputs:
  ``PREFIX_MD.nii.gz``, ``PREFIX_L1.nii.gz``, ``PREFIX_V1.nii.gz``,
  ``PREFIX_S0.nii.gz``, ``PREFIX_sse.nii.gz`` ... (``dtifit`` has no AD and RD
  maps; they are named alike, ``PREFIX_AD.nii.gz``);
- after a DWI's BIDS entities, as ``dtitool fit-tensor --bids`` has named MD and
  FA: ``sub-01_ses-1_model-DTI_param-MD_dwimap.nii.gz``, ``param-L1``,
  ``param-V1``, ``param-SSE`` ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MASK_DESCRIPTION",
    "TENSOR_MAPS",
    "TensorMap",
    "bids_map_name",
    "fsl_map_name",
    "map_array",
    "map_sidecar",
    "mask_sidecar",
    "sidecar_name",
]


@dataclass(frozen=True, slots=True)
class TensorMap:
    """One map of a tensor fit.

    Parameters
    ----------
    key : str
        Its name after an output prefix, as FSL ``dtifit`` writes it (``"MD"``,
        ``"L1"``, ``"sse"``), and the ``param-`` label of its BIDS name in
        upper case.
    description : str
        What it holds.
    units : str
        Its units.
    computation : str
        How it is computed from the fitted tensor.
    """

    key: str
    description: str
    units: str
    computation: str

    @property
    def param(self) -> str:
        """The BIDS ``param-`` label (``MD``, ``L1``, ``V1``, ``SSE``)."""
        return self.key.upper()


_FLOORED = ("each eigenvalue raised to MinimumDiffusivity when below it (none "
            "when MinimumDiffusivity is null)")
_DIFFUSIVITY = "mm^2/s"

TENSOR_MAPS = (
    TensorMap("MD", "mean diffusivity", _DIFFUSIVITY,
              f"mean of the tensor's three eigenvalues, {_FLOORED}; the trace "
              "/ 3 when MinimumDiffusivity is null"),
    TensorMap("FA", "fractional anisotropy", "dimensionless, 0 to 1",
              "sqrt(1/2) sqrt((L1-L2)^2 + (L2-L3)^2 + (L3-L1)^2) / "
              f"sqrt(L1^2 + L2^2 + L3^2) (Basser and Pierpaoli 1996), {_FLOORED}; "
              "clipped to 1"),
    TensorMap("AD", "axial diffusivity", _DIFFUSIVITY,
              f"the largest eigenvalue, L1, {_FLOORED}"),
    TensorMap("RD", "radial diffusivity", _DIFFUSIVITY,
              f"(L2 + L3) / 2, {_FLOORED}"),
    *(TensorMap(f"L{i}", f"eigenvalue {i} of the tensor ({order})", _DIFFUSIVITY,
                f"eigenvalues of the fitted tensor in descending order, {_FLOORED}")
      for i, order in ((1, "the largest"), (2, "the middle"), (3, "the smallest"))),
    *(TensorMap(f"V{i}", f"eigenvector {i} of the tensor, belonging to L{i}: a "
                "unit vector, x, y, z along the 4th dimension",
                "dimensionless (unit vector; its sign is arbitrary)",
                "eigenvector of the fitted tensor, in the frame of the b-vectors "
                "(for FSL bvec files, the image's voxel axes, as dtifit writes V1)")
      for i in (1, 2, 3)),
    TensorMap("S0", "fitted signal without diffusion weighting",
              "signal units of the DWI", "exp of the fitted log S0"),
    TensorMap("sse", "sum of squared errors of the fit (FSL dtifit --sse)",
              "squared signal units of the DWI",
              "sum over every volume k of (S_k - S0 exp(-b_k g_k^T D g_k))^2, "
              "with D built from the eigenvalues and eigenvectors written (so "
              "with the floored eigenvalues) and S0 as written"),
)
"""Every map ``dtitool fit-tensor`` writes, in the order it writes them."""

MASK_DESCRIPTION = (
    "brain mask of the fit: the b0 volumes' mean (else the least "
    "diffusion-weighted volumes') smoothed by 4 passes of a 3D median filter of "
    "radius 4 voxels and thresholded at Otsu's threshold, as DIPY's median_otsu "
    "does with its defaults")
"""What a computed brain mask is (its sidecar's Description)."""

_METHODS = {
    "wls": "two-pass weighted linear least squares on the log signal, weights "
           "the squared signal an ordinary least-squares fit predicts (Chung et "
           "al. 2006; FSL dtifit --wls, DIPY's WLS)",
    "ols": "ordinary linear least squares on the log signal",
}


def fsl_map_name(stem: str, key: str) -> str:
    """Return ``stem_<key>.nii.gz``, as FSL ``dtifit`` names its outputs."""
    return f"{stem}_{key}.nii.gz"


def bids_map_name(prefix: str, key: str) -> str:
    """Return ``prefix_model-DTI_param-<KEY>_dwimap.nii.gz`` (BIDS derivatives)."""
    return f"{prefix}_model-DTI_param-{key.upper()}_dwimap.nii.gz"


def sidecar_name(nifti: str) -> str:
    """Return the JSON sidecar's name of a ``.nii.gz`` (or ``.nii``) file."""
    for ext in (".nii.gz", ".nii"):
        if nifti.endswith(ext):
            return nifti[: -len(ext)] + ".json"
    raise ValueError(f"{nifti!r} is not a NIfTI name (.nii or .nii.gz)")


def map_array(fit, key: str, sse: np.ndarray | None = None) -> np.ndarray:
    """Return the array of map ``key`` of a fit (float32).

    Parameters
    ----------
    fit : TensorFit
        From :func:`dtitool.imaging.tensor.fit_tensor`.
    key : str
        A :class:`TensorMap` key.
    sse : ndarray, optional
        ``fit.sse(data)``, needed for ``"sse"``.

    Returns
    -------
    ndarray of float32
        The fit's shape; ``(..., 3)`` for an eigenvector.
    """
    if key in ("MD", "FA", "AD", "RD"):
        arr = getattr(fit, key.lower())
    elif key in ("L1", "L2", "L3"):
        arr = fit.evals[..., int(key[1]) - 1]
    elif key in ("V1", "V2", "V3"):
        arr = fit.evecs[..., :, int(key[1]) - 1]
    elif key == "S0":
        arr = fit.s0
    elif key == "sse":
        if sse is None:
            raise ValueError("the sse map needs fit.sse(data)")
        arr = sse
    else:
        raise ValueError(f"unknown tensor map {key!r}; known: "
                         f"{', '.join(m.key for m in TENSOR_MAPS)}")
    return np.asarray(arr, dtype=np.float32)


def _fit_description(fit, *, mask: str, sources: Mapping[str, str],
                     b0_threshold: float) -> dict:
    from dtitool import __version__
    from dtitool.imaging.tensor import MIN_SIGNAL

    return {
        "Model": "DTI",
        "FitMethod": fit.method.upper(),
        "FitMethodDescription": _METHODS[fit.method],
        "MinimumDiffusivity": fit.min_diffusivity,
        "MinimumDiffusivityUnits": _DIFFUSIVITY,
        "MinimumSignal": MIN_SIGNAL,
        "B0Threshold": float(b0_threshold),
        "BrainMask": mask,
        "VoxelsFitted": int(fit.mask.sum()),
        "VoxelsWithFlooredEigenvalue": int(fit.n_clipped),
        "Sources": dict(sources),
        "GeneratedBy": {"Name": "dtitool", "Version": __version__},
    }


def map_sidecar(key: str, fit, *, mask: str, sources: Mapping[str, str],
                b0_threshold: float) -> bytes:
    """Return the JSON sidecar of map ``key`` of a fit.

    Parameters
    ----------
    key : str
        A :class:`TensorMap` key.
    fit : TensorFit
        The fit.
    mask : str
        Where the brain mask came from (``"given: mask.nii.gz"``,
        ``"median-otsu"``).
    sources : mapping of str to str
        The input files (``{"DWI": ..., "bval": ..., "bvec": ...}``).
    b0_threshold : float
        The b0 threshold of the fit (s/mm^2).

    Returns
    -------
    bytes
        UTF-8 JSON, keys in a fixed order (the same inputs give the same bytes).
    """
    spec = {m.key: m for m in TENSOR_MAPS}[key]
    body = {"Description": spec.description, "Units": spec.units,
            "Parameter": spec.param, "Computation": spec.computation,
            **_fit_description(fit, mask=mask, sources=sources,
                               b0_threshold=b0_threshold)}
    return (json.dumps(body, indent=2) + "\n").encode("utf-8")


def mask_sidecar(*, sources: Mapping[str, str], b0_threshold: float) -> bytes:
    """Return the JSON sidecar of a brain mask computed from the b0 volumes."""
    from dtitool import __version__

    body = {"Description": MASK_DESCRIPTION, "Units": "1 inside the mask, 0 outside",
            "Type": "Brain", "B0Threshold": float(b0_threshold),
            "Sources": dict(sources),
            "GeneratedBy": {"Name": "dtitool", "Version": __version__}}
    return (json.dumps(body, indent=2) + "\n").encode("utf-8")
