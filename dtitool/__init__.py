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
from dtitool.extract import extract_roi_md, read_lut
from dtitool.gradients import default_protocol, read_bvals_bvecs, write_bvals_bvecs
from dtitool.images import (
    MD_MAP_RTOL,
    SimulatedScan,
    simulate_dwi,
    simulate_md_maps,
    write_cohort_images,
)
from dtitool.phantom import Phantom, make_phantom, write_atlas
from dtitool.reference import compare_to_reported, reported_findings
from dtitool.simulate import Cohort, CohortArrays, simulate_arrays, simulate_cohort
from dtitool.tables import MD_UNITS, check_tables, compute_changes, read_tables
from dtitool.tensor import (
    TensorFit,
    design_matrix,
    fit_tensor,
    fractional_anisotropy,
    predict_signal,
    tensor_from_evals_evecs,
)

__all__ = [
    "DMD_SCALE",
    "GROUPS",
    "MD_MAP_RTOL",
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
    "Phantom",
    "SimulatedScan",
    "StudyDesign",
    "TensorFit",
    "__version__",
    "available_presets",
    "check_tables",
    "compare_to_reported",
    "compute_changes",
    "default_formula",
    "default_protocol",
    "design_matrix",
    "extract_roi_md",
    "fit_changes",
    "fit_models",
    "fit_tensor",
    "fractional_anisotropy",
    "load_preset",
    "make_phantom",
    "predict_signal",
    "read_bvals_bvecs",
    "read_design",
    "read_lut",
    "read_tables",
    "reported_findings",
    "simulate_arrays",
    "simulate_cohort",
    "simulate_dwi",
    "simulate_md_maps",
    "tensor_from_evals_evecs",
    "write_atlas",
    "write_bvals_bvecs",
    "write_cohort_images",
    "write_design",
]
