"""Units and fixed scales shared by every dtitool module.

Units are fixed: b-values in s/mm^2, mean diffusivity (MD) in mm^2/s. The
names of a trial (arms, visits, outcomes, ROIs, model terms) are never
constants: they come from its design (:class:`dtitool.design.StudyDesign`,
:class:`dtitool.design.TrialNames`) or from the tables being read.
"""

MD_UNIT = "mm^2/s"
"""Unit of every MD value dtitool reads or writes."""

DMD_SCALE = 1e-5
"""Unit of MD change in reported model estimates: slopes are score points per
1e-5 mm^2/s of MD change (follow-up minus baseline)."""

DMD_UNIT = "per 1e-5 mm^2/s dMD"
"""Human-readable statement of :data:`DMD_SCALE`, printed beside estimates."""

CURVE_PARAMETERS = ("n", "ratio", "effect", "reliability", "cv")
"""Design parameters a power curve can vary (see
:func:`dtitool.stats.power.vary_design`)."""

MRS_UNITS = {"i.u.": "water", "mM": "water", "ratio to tCr": "tcr", "a.u.": "raw"}
"""Units of MRS values as the quantification tools print them (the ``unit``
column of ``dtitool mrs-import``'s tables, and a voxel measure's ``unit`` in a
design), and the quantification scale of each (:data:`dtitool.mrs.names.
SCALES`): water-scaled institutional units or mM, the ratio to total creatine,
arbitrary units."""

MRS_QUALITY_LIMITS = {"crlb": 20.0, "fit_error": 12.0}
"""The fit-quality limits (%) above which a spectrum is excluded, by default, in
analysis and in power (:data:`dtitool.mrs.quality.DEFAULT_LIMITS` explains
them)."""
