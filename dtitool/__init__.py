"""dtitool: rehearse DTI mean-diffusivity trial analyses on simulated cohorts.

Simulate a cohort that looks like a planned (or published) two-arm trial, push it
through the imaging and statistics pipeline the real data will go through, and see
what the analysis can and cannot detect.

The public API is re-exported here (see ``__all__``). Names are loaded on first
use (PEP 562), so ``import dtitool`` and every command line call stay fast and
statsmodels is imported only when a model is fitted.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dtitool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "dtitool._constants": (
        "DMD_SCALE", "GROUPS", "MD_UNIT", "OUTCOMES", "ROI_NAMES", "SESSIONS",
    ),
    "dtitool.design": (
        "StudyDesign", "available_presets", "load_preset", "read_design",
        "write_design",
    ),
    "dtitool.simulate": (
        "Cohort", "CohortArrays", "simulate_arrays", "simulate_cohort",
    ),
    "dtitool.tables": ("MD_UNITS", "check_tables", "compute_changes", "read_tables"),
    "dtitool.analysis": (
        "RESULT_COLUMNS", "TERMS", "AnalysisResults", "default_formula",
        "fit_changes", "fit_models",
    ),
    "dtitool.reference": ("compare_to_reported", "reported_findings"),
    "dtitool.ols": ("ContrastResult", "OLSBatch", "ols_batch"),
    "dtitool.power": (
        "PowerCurve", "PowerResult", "SampleSizeResult", "analytic_power", "power",
        "power_curve", "sample_size", "vary_design", "wilson_interval",
    ),
    "dtitool.implied": ("ImpliedEffect", "implied_effect", "n_for_power"),
    "dtitool.phantom": ("Phantom", "make_phantom", "write_atlas"),
    "dtitool.images": (
        "MD_MAP_RTOL", "SimulatedScan", "simulate_dwi", "simulate_md_maps",
        "write_cohort_images",
    ),
    "dtitool.gradients": ("default_protocol", "read_bvals_bvecs", "write_bvals_bvecs"),
    "dtitool.tensor": (
        "TensorFit", "design_matrix", "fit_tensor", "fractional_anisotropy",
        "predict_signal", "tensor_from_evals_evecs",
    ),
    "dtitool.extract": ("extract_roi_md", "read_lut"),
    "dtitool.demo": ("DemoSettings", "run_demo"),
}  # fmt: skip
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_MODULE_OF)]


def __getattr__(name: str):
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module 'dtitool' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
