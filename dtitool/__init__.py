"""dtitool: rehearse DTI mean-diffusivity trial analyses on simulated cohorts.

Simulate a cohort that looks like a planned (or published) two-arm trial, push it
through the imaging and statistics pipeline the real data will go through, and see
what the analysis can and cannot detect.

The package follows the data flow (``docs/architecture.md``)::

    design/    the study design: spec, validation, TOML, presets
    simulate   cohort simulation at ROI level;  tables: tidy tables, read and checked
    imaging/   phantom, synthetic images, gradients, tensor fit, ROI extraction
    stats/     batched OLS engine, the models, power, implied effects, reported results
    pipeline   the demo: every step run, one results object
    report/    figures, the HTML report (the demo's rendered from its results)
    cli/       the ``dtitool`` command line

The public API is re-exported here (see ``__all__``). Names are loaded on first
use (PEP 562), so ``import dtitool`` and every command line call stay fast:
statsmodels, matplotlib and scipy.stats are imported only where they are used.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dtitool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "dtitool._constants": ("DMD_SCALE", "MD_UNIT"),
    "dtitool.design": (
        "StudyDesign", "available_presets", "load_preset", "read_design",
        "write_design",
    ),
    "dtitool.simulate": (
        "Cohort", "CohortArrays", "describe_design", "score_summary",
        "simulate_arrays", "simulate_cohort",
    ),
    "dtitool.tables": ("MD_UNITS", "check_tables", "compute_changes", "read_tables"),
    "dtitool.imaging.phantom": ("Phantom", "make_phantom", "write_atlas"),
    "dtitool.imaging.synthetic": (
        "MD_MAP_RTOL", "SimulatedScan", "simulate_dwi", "simulate_md_maps",
        "write_cohort_images",
    ),
    "dtitool.imaging.gradients": (
        "default_protocol", "read_bvals_bvecs", "write_bvals_bvecs",
    ),
    "dtitool.imaging.tensor": (
        "TensorFit", "design_matrix", "fit_tensor", "fractional_anisotropy",
        "predict_signal", "tensor_from_evals_evecs",
    ),
    "dtitool.imaging.extract": ("extract_roi_md", "read_lut"),
    "dtitool.stats.models": ("RESULT_COLUMNS", "AnalysisResults", "default_formula"),
    "dtitool.stats.analysis": ("fit_changes", "fit_models"),
    "dtitool.stats.imputation": ("impute", "rubin"),
    "dtitool.stats.missing": ("TippingPoint", "tipping_point"),
    "dtitool.stats.ols": ("ContrastResult", "OLSBatch", "ols_batch"),
    "dtitool.stats.power": (
        "MonteCarlo", "PowerCurve", "PowerGrid", "PowerResult", "SampleSizeResult",
        "analytic_power", "null_counterpart", "power", "power_curve", "power_grid",
        "sample_size", "vary_design", "wilson_interval",
    ),
    "dtitool.stats.design_analysis": ("retrodesign", "true_values"),
    "dtitool.design.course": ("CourseComponent",),
    "dtitool.design.voxels": ("VoxelSpec",),
    "dtitool.stats.lmm": ("LMMFit", "fit_lmm", "kenward_roger", "satterthwaite"),
    "dtitool.stats.mixed": ("MixedResults", "fit_mixed"),
    "dtitool.stats.mixed_power": ("mixed_power",),
    "dtitool.stats.imaging_change": ("analytic_imaging_power", "change_tests",
                                     "imaging_power"),
    "dtitool.stats.imaging_fit": ("ImagingResults", "fit_imaging"),
    "dtitool.stats.modalities": ("modality_power",),
    "dtitool.stats.discriminate": ("best_designs", "discriminate"),
    "dtitool.stats.plans": ("Plan", "parse_plan"),
    "dtitool.stats.plans_engine": ("plan_tests",),
    "dtitool.stats.plans_run": ("plans_power",),
    "dtitool.mrs": (
        "apply_quality", "mrs_tables", "read_gannet", "read_lcmodel", "read_osprey",
    ),
    "dtitool.mrs.export": ("write_tool_files",),
    "dtitool.stats.implied": ("ImpliedEffect", "implied_effect", "n_for_power"),
    "dtitool.stats.reference": ("compare_to_reported", "reported_findings"),
    "dtitool.stats.reproduce": (
        "add_needed", "compare_worlds", "interpretation_notes", "reproduce_report",
        "reproduce_table", "world_summary",
    ),
    "dtitool.report.plots": (
        "plot_forest", "plot_md_sessions", "plot_power_curve", "plot_roi_slices",
        "plot_scatter_grid",
    ),
    "dtitool.pipeline": ("DemoSettings", "run_demo"),
    "dtitool.report.explorer": ("explorer_html",),
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
