"""Showing results: figures, the self-contained HTML report and the demo pipeline.

- :mod:`~dtitool.report.plots`: matplotlib figures (``plot_x(..., ax=None)``).
- :mod:`~dtitool.report.html`: the self-contained HTML report writer.
- :mod:`~dtitool.report.demo`: the whole rehearsal in one call (``dtitool demo``).

The only package that imports matplotlib.
"""
