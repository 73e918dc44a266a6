"""dtitool: rehearse DTI mean-diffusivity trial analyses on simulated cohorts.

Simulate a cohort that looks like a planned (or published) two-arm trial, push it
through the imaging and statistics pipeline the real data will go through, and see
what the analysis can and cannot detect.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dtitool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

from dtitool._constants import (
    DMD_SCALE,
    GROUPS,
    MD_UNIT,
    OUTCOMES,
    ROI_NAMES,
    SESSIONS,
)
from dtitool.analysis import (
    RESULT_COLUMNS,
    TERMS,
    AnalysisResults,
    default_formula,
    fit_changes,
    fit_models,
)
from dtitool.design import (
    StudyDesign,
    available_presets,
    load_preset,
    read_design,
    write_design,
)
from dtitool.reference import compare_to_reported, reported_findings
from dtitool.simulate import Cohort, CohortArrays, simulate_arrays, simulate_cohort
from dtitool.tables import MD_UNITS, check_tables, compute_changes, read_tables

__all__ = [
    "DMD_SCALE",
    "GROUPS",
    "MD_UNIT",
    "MD_UNITS",
    "OUTCOMES",
    "RESULT_COLUMNS",
    "ROI_NAMES",
    "SESSIONS",
    "TERMS",
    "AnalysisResults",
    "Cohort",
    "CohortArrays",
    "StudyDesign",
    "__version__",
    "available_presets",
    "check_tables",
    "compare_to_reported",
    "compute_changes",
    "default_formula",
    "fit_changes",
    "fit_models",
    "load_preset",
    "read_design",
    "read_tables",
    "reported_findings",
    "simulate_arrays",
    "simulate_cohort",
    "write_design",
]
