"""Showing results: figures, the self-contained HTML report, the demo's report.

- :mod:`~dtitool.report.plots`: matplotlib figures (``plot_x(..., ax=None)``).
- :mod:`~dtitool.report.html`: the self-contained HTML report writer.
- :mod:`~dtitool.report.demo`: the demo's report, rendered from the results object
  of :mod:`dtitool.pipeline` (``dtitool demo``).

The only package that imports matplotlib.
"""
