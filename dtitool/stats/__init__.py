"""Statistics: the models, their batched engine, power and the reported results.

- :mod:`~dtitool.stats.ols`: the batched least-squares engine (many small models
  at once, the same numbers as statsmodels).
- :mod:`~dtitool.stats.analysis`: the per-ROI x outcome models of one dataset
  (statsmodels).
- :mod:`~dtitool.stats.power`: Monte Carlo power, curves, sample size, and the
  analytic (noncentral F) check.
- :mod:`~dtitool.stats.implied`: the effect a reported p-value implies.
- :mod:`~dtitool.stats.reference`: the reference study's reported findings.
- :mod:`~dtitool.stats.reproduce`: reported versus simulated, test by test.

Nothing here depends on :mod:`dtitool.imaging` or :mod:`dtitool.report`, and
nothing here imports matplotlib.
"""
