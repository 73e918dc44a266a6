"""Monte Carlo power of the per-ROI models, size, max-T, design analysis, curves.

:func:`power` simulates ``replicates`` trials of a :class:`~dtitool.design.StudyDesign`
(:mod:`dtitool.simulate`, keyed so replicate ``i`` depends only on the seed and
``i``), fits every model of the analysis (``docs/model.md``, "Analysis models"; per
ROI ``r`` and outcome ``k``)::

    d_score_k ~ treated + x_r + treated:x_r + <k>_baseline     (interaction model)
    d_score_k ~ treated + x_r + <k>_baseline                    (additive model)

with ``x_r = dMD_r / DMD_SCALE`` (score points per 1e-5 mm^2/s), under one of the
inference options ``ols``, ``hc3`` or ``welch`` (:mod:`dtitool.stats.inference`),
and counts rejections of the four reported terms: ``interaction``, the dMD slope
in each arm (``slope_<arm>``, e.g. ``slope_ketamine`` and ``slope_saline`` in the
default preset) and ``slope_pooled`` (:attr:`StudyDesign.names.terms`).

Beside each test's power it reports:

- its **size**: the rejection rate, at the same alpha and inference, in the
  design's null counterpart (:func:`null_counterpart`), simulated in the same run
  from its own child stream, with a flag when the size falls outside its 99 %
  binomial band (:func:`size_band`);
- **family-wise** power unadjusted, with Holm, Benjamini-Hochberg and max-T
  (Westfall-Young single step; its critical value is the alpha-quantile of the
  family's smallest p in the null counterpart), with each method's family-wise
  error in the null counterpart beside it;
- **design analysis** (Gelman and Carlin 2014): the term's true value, the type S
  error and the exaggeration ratio of significant results
  (:mod:`dtitool.stats.design_analysis`).

Reproducibility: chunks are replicate ranges aligned to the simulator's
:data:`~dtitool.simulate.BLOCK_SIZE`; per-replicate values depend only on the seed
and the replicate index, per-test counts are integers, estimates are summed per
fixed block of replicates and the blocks added in order, so the result is
bit-identical for any ``chunk_size`` and any ``n_jobs``. The null counterpart and
the reference sample of the true values draw from child streams of the run's
root ``SeedSequence`` (spawn keys :data:`NULL_STREAM` and :data:`TRUTH_STREAM`),
so one seed repeats everything.

Where each part lives (this module re-exports them all, so ``from
dtitool.stats.power import X`` keeps working for every name):

- :mod:`dtitool.stats.power_run`: :func:`power`, a run cut into tasks and
  folded into a :class:`PowerResult` (size, design analysis, max-T);
- :mod:`dtitool.stats.settings`: :class:`MonteCarlo`, the settings every
  function here takes as one ``settings=`` (replicates, alpha, inference, rng,
  workers, chunks, missing-data handling);
- :mod:`dtitool.stats.power_engine`: what one chunk of trials computes;
- :mod:`dtitool.stats.power_results`: :class:`PowerResult`,
  :class:`PowerCurve`, :class:`PowerGrid`, :class:`SampleSizeResult` and the
  reported findings read off a result;
- :mod:`dtitool.stats.curves`: :func:`power_curve` and :func:`power_grid`;
- :mod:`dtitool.stats.sample_size`: :func:`sample_size` (bisection over n);
- :mod:`dtitool.stats.design_variants`: :func:`vary_design`,
  :func:`design_parameter`, :func:`null_counterpart`;
- :mod:`dtitool.stats.binomial`: :func:`wilson_interval`, :func:`size_band`;
- :mod:`dtitool.stats.multiplicity`: Holm and Benjamini-Hochberg;
- :mod:`dtitool.stats.analytic`: :func:`analytic_power` (noncentral F);
- :mod:`dtitool.stats.power_summary`: the printed summary and warning lines.
"""

from __future__ import annotations

# The public API of Monte Carlo power, from the modules that define it.
from dtitool._constants import CURVE_PARAMETERS
from dtitool.stats import multiplicity as _multiplicity
from dtitool.stats import power_engine as _engine
from dtitool.stats import power_run as _run
from dtitool.stats.analytic import analytic_power
from dtitool.stats.binomial import SIZE_LEVEL, size_band, wilson_interval
from dtitool.stats.curves import (
    MAX_GRID_POINTS,
    check_grid_axes,
    power_curve,
    power_grid,
)
from dtitool.stats.design_variants import (
    design_parameter,
    null_counterpart,
    vary_design,
)
from dtitool.stats.inference import INFERENCE, BatchModels, batch_models
from dtitool.stats.power_engine import PERMUTATION_STREAM
from dtitool.stats.power_results import (
    ANY_OUTCOME,
    GRID_COLUMNS,
    METHODS,
    POWER_COLUMNS,
    PowerCurve,
    PowerGrid,
    PowerResult,
    SampleSizeResult,
    finding_p,
    finding_power,
    finding_size,
)
from dtitool.stats.power_run import (
    DEFAULT_CHUNK,
    MAXT_EXTRA_DRAWS,
    NULL_STREAM,
    TRUTH_STREAM,
    child_seed,
    power,
)
from dtitool.stats.power_summary import missing_line, power_summary, size_warning
from dtitool.stats.sample_size import sample_size
from dtitool.stats.settings import MonteCarlo

__all__ = [
    "ANY_OUTCOME",
    "CURVE_PARAMETERS",
    "DEFAULT_CHUNK",
    "GRID_COLUMNS",
    "INFERENCE",
    "MAXT_EXTRA_DRAWS",
    "MAX_GRID_POINTS",
    "METHODS",
    "NULL_STREAM",
    "PERMUTATION_STREAM",
    "POWER_COLUMNS",
    "SIZE_LEVEL",
    "TRUTH_STREAM",
    "BatchModels",
    "MonteCarlo",
    "PowerCurve",
    "PowerGrid",
    "PowerResult",
    "SampleSizeResult",
    "analytic_power",
    "batch_models",
    "check_grid_axes",
    "child_seed",
    "design_parameter",
    "finding_p",
    "finding_power",
    "finding_size",
    "missing_line",
    "null_counterpart",
    "power",
    "power_curve",
    "power_grid",
    "power_summary",
    "sample_size",
    "size_band",
    "size_warning",
    "vary_design",
    "wilson_interval",
]

# Internals that tests and benchmarks reach through this module; new code
# imports them from their own modules.
_rejections = _multiplicity.rejections
_Spec = _engine._Spec
_chunk = _engine._chunk
_family_minp = _engine._family_minp
_family_minp_of_t = _engine._family_minp_of_t
_normalise_families = _engine._normalise_families
_permutation_keys = _engine._permutation_keys
_chunk_replicates = _run._chunk_replicates
