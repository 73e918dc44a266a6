"""The imaging path: phantom, synthetic images, gradients, tensor fit, ROI extraction.

- :mod:`~dtitool.imaging.phantom`: a labelled head phantom on a 2 mm MNI-like grid.
- :mod:`~dtitool.imaging.synthetic`: MD maps and 4D DWI of a simulated cohort,
  written as NIfTI under a BIDS-derivatives-like tree.
- :mod:`~dtitool.imaging.gradients`: b-values and b-vectors (FSL files, protocols).
- :mod:`~dtitool.imaging.tensor`: the vectorised tensor fit (OLS, WLS), MD and FA.
- :mod:`~dtitool.imaging.extract`: ROI means of MD (or FA, or any) maps and a
  label atlas whose lookup table names its ROIs.
- :mod:`~dtitool.imaging.nifti`: checked NIfTI reading and fitted-map writing.

Nothing here depends on :mod:`dtitool.stats` or :mod:`dtitool.report`.
"""
