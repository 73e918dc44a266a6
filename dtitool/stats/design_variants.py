"""Designs derived from a design: one curve parameter set, or the null counterpart.

:func:`vary_design` sets one of :data:`~dtitool._constants.CURVE_PARAMETERS`
(``n``, ``ratio``, ``effect``, ``reliability``, ``cv``) to a value, the step of
every power curve and grid; :func:`design_parameter` reads the design's own
value of one; :func:`null_counterpart` is the design with every ROI-outcome
correlation 0, in which each test's rejection rate is its size.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from dtitool._constants import CURVE_PARAMETERS
from dtitool.design import PerArm, StudyDesign

__all__ = ["design_parameter", "null_counterpart", "vary_design"]


def vary_design(design: StudyDesign, parameter: str, value) -> StudyDesign:
    """Return ``design`` with one curve parameter set to ``value``.

    Parameters
    ----------
    design : StudyDesign
    parameter : {"n", "ratio", "effect", "reliability", "cv"}
        ``n``: total sample size. ``ratio``: allocation treatment:control as a
        number (2 means 2:1, 1.5 means 3:2). ``effect``: multiply every ROI-outcome
        correlation of true change (every arm, and those of the ROIs' other
        measures) by ``value`` (1 = the design).
        ``reliability``: set each ROI's scan-rescan CV so that the reliability of
        observed dMD in the treatment arm equals ``value``. ``cv``: set every ROI's
        scan-rescan CV to ``value`` (fraction).
    value : float

    Returns
    -------
    StudyDesign
    """
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{parameter} must be a finite number, got {value!r}")
    if parameter == "n":
        if v != int(v):
            raise ValueError(f"n must be an integer, got {value!r}")
        return dataclasses.replace(design, n=int(v))
    if parameter == "ratio":
        _two_arms(design)
        if not v > 0:
            raise ValueError(f"ratio must be > 0, got {value!r}")
        fr = Fraction(v).limit_denominator(12)
        a = PerArm({design.treatment: fr.numerator, design.control: fr.denominator})
        s = sum(a.values())
        return dataclasses.replace(design, allocation=a,
                                   block_size=s * max(1, math.ceil(6 / s)))
    if parameter == "effect":
        c = design.correlations
        ro = {arm: tuple(tuple(float(x) * v for x in row) for row in m)
              for arm, m in c.roi_outcome.items()}
        # the ROIs' other measures' correlations with the outcomes scale too
        rois = tuple(dataclasses.replace(r, measures=tuple(
            dataclasses.replace(m, outcome_correlation={
                arm: {o: float(x) * v for o, x in per.items()}
                for arm, per in m.outcome_correlation.items()})
            for m in r.measures)) if r.measures else r for r in design.rois)
        return dataclasses.replace(
            design, rois=rois,
            correlations=dataclasses.replace(c, roi_outcome=ro))
    if parameter == "reliability":
        if not 0 < v <= 1:
            raise ValueError(f"reliability must be in (0, 1], got {value!r}")
        rois = []
        for r in design.rois:
            vt = r.change_sd[design.treatment] ** 2
            cv = math.sqrt(vt * (1 - v) / v / 2) / r.md_mean
            rois.append(dataclasses.replace(r, cv=cv))
        return dataclasses.replace(design, rois=tuple(rois))
    if parameter == "cv":
        return dataclasses.replace(
            design, rois=tuple(dataclasses.replace(r, cv=v) for r in design.rois))
    raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                     f"{list(CURVE_PARAMETERS)}")


def design_parameter(design: StudyDesign, parameter: str) -> float:
    """Return the design's own value of a curve parameter (:func:`vary_design`).

    ``effect`` is 1 (the design's correlations); ``reliability`` is the median
    over ROIs of the treatment arm's dMD reliability; ``cv`` the median CV.
    """
    if parameter == "n":
        return float(design.n)
    if parameter == "ratio":
        _two_arms(design)
        return (design.allocation[design.treatment]
                / design.allocation[design.control])
    if parameter == "effect":
        return 1.0
    if parameter == "reliability":
        return float(np.median(list(design.reliability(design.treatment).values())))
    if parameter == "cv":
        return float(np.median([r.cv for r in design.rois]))
    raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                     f"{list(CURVE_PARAMETERS)}")


def null_counterpart(design: StudyDesign) -> StudyDesign:
    """Return the same design with every ROI-outcome correlation set to 0.

    The other measures' correlations with the outcomes too: a measure whose
    change goes with MD change and with an outcome's would make MD a non-null
    test through it.

    Everything else (arm sizes, score-change means and SDs per arm, MD change,
    reliability, missing scans) is kept, so every test of the four terms is a
    test of a true null hypothesis here, under the design's own
    heteroscedasticity: its rejection rate is the test's actual size.

    Parameters
    ----------
    design : StudyDesign

    Returns
    -------
    StudyDesign
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    return vary_design(design, "effect", 0.0)


def _two_arms(design: StudyDesign) -> None:
    if len(design.arms) != 2:
        raise ValueError(
            f"the ratio curve varies a treatment:control allocation; design "
            f"{design.name!r} has {len(design.arms)} arms ({', '.join(design.arms)}): "
            "vary n or effect instead")
