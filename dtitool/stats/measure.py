"""The imaging measure of a changes table: MD, or another measure of the ROIs.

The models regress score change on ``d_md`` (MD change per 1e-5 mm^2/s) or, for
another measure (:mod:`dtitool.design.measures`), on ``d_<measure>`` per that
measure's scale (the design's, or :data:`~dtitool.design.measures.KNOWN_MEASURES`,
else 1); :func:`dtitool.tables.compute_changes` records which in
``changes.attrs["measure"]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from dtitool._constants import DMD_SCALE, DMD_UNIT

__all__ = ["Measure", "measure_of"]

_DMD_RE = re.compile(r"\bd_md\b")


@dataclass(frozen=True, slots=True)
class Measure:
    """The measure a changes table holds: MD, or another measure of the ROIs."""

    name: str = "md"
    scale: float = DMD_SCALE
    unit: str = DMD_UNIT

    @property
    def x(self) -> str:
        """The models' regressor: ``d_<measure>``."""
        return f"d_{self.name}"

    @property
    def pattern(self) -> re.Pattern:
        """The regressor as a whole word in a formula term."""
        return _DMD_RE if self.name == "md" else re.compile(rf"\b{self.x}\b")


def measure_of(changes: pd.DataFrame) -> Measure:
    """Return the measure of a changes table (``attrs["measure"]``, default MD)."""
    name = changes.attrs.get("measure", "md")
    if name == "md":
        return Measure()
    from dtitool.design.measures import KNOWN_MEASURES

    scale, unit = changes.attrs.get("measure_scale") or (
        KNOWN_MEASURES.get(name, (None, 1.0))[1],
        KNOWN_MEASURES.get(name, ("",))[0])
    what = f"{scale:g} {unit}".strip() if unit else f"{scale:g}"
    return Measure(name, float(scale), f"per {what} of {name} change")
