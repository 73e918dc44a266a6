"""Statistics: the models, their batched engine, power and the reported results.

- :mod:`~dtitool.stats.ols`: the batched least-squares engine (many small models
  at once, the same numbers as statsmodels).
- :mod:`~dtitool.stats.inference`: the inference options ``ols``, ``hc3`` and
  ``welch`` for every model of many replicates at once.
- :mod:`~dtitool.stats.models`: the per-ROI x outcome models of one dataset
  (statsmodels), under the same inference options: the complete-data analysis,
  its results and summary.
- :mod:`~dtitool.stats.imputation`: the multiple-imputation engine (Bayesian
  normal regressions within arm), Rubin's rules, power's imputed trials.
- :mod:`~dtitool.stats.missing`: missing data in one dataset: complete case,
  multiple imputation, the tipping-point analysis; imports ``imputation`` and
  ``models``.
- :mod:`~dtitool.stats.analysis`: ``fit_models`` and ``fit_changes``, the entry
  points, complete case or multiple imputation; imports both.
- :mod:`~dtitool.stats.permutation`: max-T family-wise p by Freedman-Lane
  permutation within arms.
- :mod:`~dtitool.stats.power`: Monte Carlo power with each test's size in the
  null counterpart, family-wise power (Holm, BH, max-T), curves, sample size,
  and the analytic (noncentral F) check.
- :mod:`~dtitool.stats.design_analysis`: true values, type S and exaggeration
  (Gelman and Carlin 2014), retrodesign's closed form.
- :mod:`~dtitool.stats.implied`: the effect a reported p-value implies.
- :mod:`~dtitool.stats.reference`: the reference study's reported findings.
- :mod:`~dtitool.stats.reproduce`: reported versus simulated, test by test.
- :mod:`~dtitool.stats.lmm`: the batched REML engine for linear mixed models,
  Satterthwaite and Kenward-Roger df (its small-matrix algebra in
  :mod:`~dtitool.stats.lmm_df`).
- :mod:`~dtitool.stats.mixed`: the mixed models of one longitudinal cohort
  (statsmodels MixedLM), their data from the tables in
  :mod:`~dtitool.stats.mixed_data`.
- :mod:`~dtitool.stats.mixed_power`: Monte Carlo power of a longitudinal
  design's mixed models, every replicate fitted at once.
- :mod:`~dtitool.stats.imaging_change`: the imaging change tests (does the
  measure itself change, and differently by arm?) on many simulated trials at
  once, their power and the noncentral-t check;
  :mod:`~dtitool.stats.imaging_fit` fits them to one cohort with scipy.
- :mod:`~dtitool.stats.discriminate`: which contrast between visits, and which
  n, tells two scenario designs apart.
- :mod:`~dtitool.stats.fit_quality`: what an MRS fit-quality rule removed, per
  model.
- :mod:`~dtitool.stats.plans`: analysis plans as data;
  :mod:`~dtitool.stats.plans_engine` runs every plan on many simulated trials
  at once and :mod:`~dtitool.stats.plans_run` compares them on the same draws.
- :mod:`~dtitool.stats.mixed_select`: per-arm variances and the choice of the
  random slope, shared by the mixed models of one cohort and their power.

Nothing here depends on :mod:`dtitool.imaging` or :mod:`dtitool.report`, and
nothing here imports matplotlib.
"""
