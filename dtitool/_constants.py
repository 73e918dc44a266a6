"""Names and units shared by every dtitool module.

Units are fixed: b-values in s/mm^2, mean diffusivity (MD) in mm^2/s.
"""

ROI_NAMES = (
    "L_BA10",
    "R_BA10",
    "L_amygdala",
    "R_amygdala",
    "L_hippocampus",
    "R_hippocampus",
    "vACC",
)
"""The seven gray-matter ROIs of the reference study, in canonical order."""

GROUPS = ("ketamine", "saline")
"""Arm labels: the treatment arm first, the reference (control) arm second."""

TREATMENT, CONTROL = GROUPS

SESSIONS = ("baseline", "24h")
"""Scan sessions: pre-infusion baseline and 24 h post-infusion."""

OUTCOMES = ("madrs", "qids")
"""Clinical outcomes: MADRS (clinician, 0-60) and QIDS-SR16 (self-report, 0-27)."""

SCALE_RANGES = {"madrs": (0, 60), "qids": (0, 27)}
"""Valid score range of each outcome scale, inclusive."""

MD_UNIT = "mm^2/s"
"""Unit of every MD value dtitool reads or writes."""

DMD_SCALE = 1e-5
"""Unit of MD change in reported model estimates: slopes are score points per
1e-5 mm^2/s of MD change (24 h minus baseline)."""

DMD_UNIT = "per 1e-5 mm^2/s dMD"
"""Human-readable statement of :data:`DMD_SCALE`, printed beside estimates."""

TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")
"""Model terms reported per ROI and outcome, in table order: the group x dMD
interaction (ketamine slope minus saline slope), the dMD slope in each arm, and
the pooled dMD slope of the additive model."""

CURVE_PARAMETERS = ("n", "ratio", "effect", "reliability", "cv")
"""Design parameters a power curve can vary (see
:func:`dtitool.stats.power.vary_design`)."""
