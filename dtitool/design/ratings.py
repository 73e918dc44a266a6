"""Rating scales ready to use as outcomes (``scale = "HAM-D17"`` in a design file).

Each scale is an integer score from its minimum to its maximum in steps of one
point; a design's outcome names one of them to take its range (and its name
into the data dictionary), or gives ``scale_min`` and ``scale_max`` itself for
any other scale. The means, SDs and inclusion thresholds of a trial's
population are the design's to state (``docs/model.md``); a scale only fixes
what scores can be.

Examples
--------
>>> from dtitool.design.ratings import RATING_SCALES
>>> RATING_SCALES["HAM-D17"].range
(0, 52)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RATING_SCALES", "RatingScale"]


@dataclass(frozen=True, slots=True)
class RatingScale:
    """A depression rating scale: its name, range and source.

    Parameters
    ----------
    name : str
        The scale's usual abbreviation (``"MADRS"``).
    title : str
        Its full name.
    minimum, maximum : int
        Inclusive range of the total score.
    rater : {"clinician", "self-report"}
        Who rates.
    source : str
        The publication that defines it.
    """

    name: str
    title: str
    minimum: int
    maximum: int
    rater: str
    source: str

    @property
    def range(self) -> tuple[int, int]:
        """``(minimum, maximum)``."""
        return (self.minimum, self.maximum)


RATING_SCALES: dict[str, RatingScale] = {s.name: s for s in (
    RatingScale("MADRS", "Montgomery-Asberg Depression Rating Scale", 0, 60,
                "clinician", "Montgomery SA, Asberg M. Br J Psychiatry 1979;134:382-9 "
                "(10 items scored 0-6)"),
    RatingScale("QIDS-SR16", "Quick Inventory of Depressive Symptomatology, "
                "self-report, 16 items", 0, 27, "self-report",
                "Rush AJ et al. Biol Psychiatry 2003;54:573-83 (nine domains "
                "scored 0-3)"),
    RatingScale("HAM-D17", "Hamilton Depression Rating Scale, 17 items", 0, 52,
                "clinician", "Hamilton M. J Neurol Neurosurg Psychiatry 1960;"
                "23:56-62 (17 items scored 0-2 or 0-4)"),
    RatingScale("BDI-II", "Beck Depression Inventory, second edition", 0, 63,
                "self-report", "Beck AT, Steer RA, Brown GK. Manual for the Beck "
                "Depression Inventory-II. Psychological Corporation 1996 (21 items "
                "scored 0-3)"),
)}
"""The rating scales an outcome can name, by abbreviation."""
