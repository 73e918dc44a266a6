"""Power per imaging modality, and for the modalities together.

A trial that scans DTI and MRS (``ketamine-rct-mrs``) asks three questions of
its imaging: does MD show the treatment, does MRS, and do both? Each modality's
tests form one family: its rows (MD per ROI; the metabolites of the MRS
voxels; any other measure, such as volume, is a modality of its own) and,
with two arms or more, the arm comparisons at every follow-up visit
(``<arm>:<v>``, the randomised contrasts), or in a one-arm design the change
at every follow-up visit (``<v>``). A modality detects the treatment in a trial
when its family rejects after Holm's procedure; :func:`modality_power` counts,
on the same simulated trials,

- each modality's power to detect (and its size in the null counterpart);
- ``all``: every modality detects in the same trial;
- ``any``: Holm over every modality's tests rejects at least once.

The p-values are the imaging change tests' (:mod:`dtitool.stats.imaging_change`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dtitool.design import StudyDesign
from dtitool.stats.binomial import size_band, wilson_interval
from dtitool.stats.multiplicity import rejections

__all__ = ["MODALITY_COLUMNS", "modality_of", "modality_power"]

MODALITY_COLUMNS = ("modality", "tests", "method", "power", "power_ci_low",
                    "power_ci_high", "size", "size_ci_low", "size_ci_high",
                    "size_ok", "replicates")
"""Columns of :func:`modality_power`'s table (``modalities.tsv``)."""


def modality_of(design: StudyDesign, row: dict) -> str:
    """Return an imaging row's modality: ``MD``, ``MRS`` or the measure's name."""
    if row["kind"] == "md":
        return "MD"
    m = design.measures[row["index"]]
    return "MRS" if m.voxel else m.name


def _families(design: StudyDesign, rows, terms) -> dict[str, np.ndarray]:
    """Flat test indices (row * T + term) of each modality's family."""
    contrast = [j for j, t in enumerate(terms) if ":" in t]
    cols = contrast if len(design.arms) > 1 else list(range(len(terms)))
    out: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        out.setdefault(modality_of(design, row), []).extend(
            i * len(terms) + j for j in cols)
    return {k: np.array(v) for k, v in out.items()}


def _detected(p: np.ndarray, families, alpha: float) -> dict[str, np.ndarray]:
    """Per family and per trial, whether Holm rejects at least once."""
    flat = p.reshape(p.shape[0], -1)
    out = {k: rejections(flat[:, idx], "holm", alpha).any(axis=1)
           for k, idx in families.items()}
    out["all"] = np.logical_and.reduce([out[k] for k in families])
    every = np.concatenate(list(families.values()))
    out["any"] = rejections(flat[:, every], "holm", alpha).any(axis=1)
    return out


def modality_power(design: StudyDesign, rows, terms, p: np.ndarray,
                   null_p: np.ndarray | None = None, *, alpha: float = 0.05
                   ) -> pd.DataFrame:
    """Return the power of each modality's family, of all and of any.

    Parameters
    ----------
    design : StudyDesign
    rows : list of dict
        The imaging rows (:func:`dtitool.stats.imaging_change.imaging_rows`).
    terms : list of str
        The tested terms (:func:`dtitool.stats.imaging_change.imaging_terms`).
    p, null_p : ndarray, shape (R, rows, terms)
        Each trial's p-values, and the null counterpart's (None: no size).
    alpha : float
        Family-wise level of each family.

    Returns
    -------
    pandas.DataFrame
        :data:`MODALITY_COLUMNS`: one row per modality, then ``all`` and
        ``any`` (two modalities or more); ``tests`` is the family's size.
    """
    if p.shape[1:] != (len(rows), len(terms)):
        raise ValueError(f"p must have shape (replicates, {len(rows)}, "
                         f"{len(terms)}); got {p.shape}")
    fam = _families(design, rows, terms)
    got = _detected(p, fam, alpha)
    null = None if null_p is None else _detected(null_p, fam, alpha)
    names = list(fam) + (["all", "any"] if len(fam) > 1 else [])
    sizes = {k: len(v) for k, v in fam.items()}
    sizes["all"] = sizes["any"] = sum(len(v) for v in fam.values())
    R = p.shape[0]
    out = []
    for k in names:
        hits = int(got[k].sum())
        lo, hi = wilson_interval(hits, R)
        rec = {"modality": k, "tests": sizes[k],
               "method": "holm, each modality" if k == "all" else "holm",
               "power": hits / R, "power_ci_low": float(lo),
               "power_ci_high": float(hi),
               "replicates": R}
        if null is None:
            rec.update(size=np.nan, size_ci_low=np.nan, size_ci_high=np.nan,
                       size_ok=None)
        else:
            kq, nq = int(null[k].sum()), null_p.shape[0]
            slo, shi = wilson_interval(kq, nq)
            band = size_band(nq, alpha, 1)
            # "all" is not a test at level alpha: its size is only reported
            rec.update(size=kq / nq, size_ci_low=float(slo), size_ci_high=float(shi),
                       size_ok=None if k == "all" else bool(kq <= band[1]))
        out.append(rec)
    return pd.DataFrame(out, columns=MODALITY_COLUMNS)
