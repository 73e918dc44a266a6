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
from dtitool.design import (
    StudyDesign,
    available_presets,
    load_preset,
    read_design,
    write_design,
)
from dtitool.simulate import Cohort, CohortArrays, simulate_arrays, simulate_cohort

__all__ = [
    "DMD_SCALE",
    "GROUPS",
    "MD_UNIT",
    "OUTCOMES",
    "ROI_NAMES",
    "SESSIONS",
    "Cohort",
    "CohortArrays",
    "StudyDesign",
    "__version__",
    "available_presets",
    "load_preset",
    "read_design",
    "simulate_arrays",
    "simulate_cohort",
    "write_design",
]
