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

Nothing here depends on :mod:`dtitool.imaging` or :mod:`dtitool.report`, and
nothing here imports matplotlib.
"""
