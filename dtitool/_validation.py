"""Argument checks shared by every public entry point.

One rule everywhere (scikit-learn's): a value of the wrong *type* is a
:class:`TypeError`, a value of the right type but out of range a
:class:`ValueError`; the message names the parameter (``where``), what it must
be, and what it got.

Examples
--------
>>> from dtitool._validation import check_int
>>> check_int("trial.n", 98, 1)
98
>>> check_int("trial.n", 0, 1)
Traceback (most recent call last):
...
ValueError: trial.n must be >= 1; got 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["and_list", "check_int", "check_name", "check_range", "check_real", "err",
           "rng_argument"]


def err(where: str, rule: str, value: Any) -> ValueError:
    """Return the ValueError ``"{where} {rule}; got {value!r}"``."""
    return ValueError(f"{where} {rule}; got {value!r}")


def check_real(where: str, value: Any) -> float:
    """Return ``value`` as a float: TypeError if no number, ValueError if not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise TypeError(
            f"{where} must be a number; got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise err(where, "must be finite", value)
    return float(value)


def check_range(where, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """Return ``value`` as a float inside ``[lo, hi]`` (open where asked)."""
    v = check_real(where, value)
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if bad_lo or bad_hi:
        lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi}"
        rule = " and ".join(s for s in (lo_s, hi_s) if s)
        raise err(where, f"must be {rule}", value)
    return v


def check_int(where: str, value: Any, lo: int | None = None) -> int:
    """Return ``value`` as an int (not a bool) of at least ``lo``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{where} must be an integer; got {type(value).__name__} {value!r}"
        )
    if lo is not None and value < lo:
        raise err(where, f"must be >= {lo}", value)
    if abs(value) >= 2**62:  # beyond any study, and beyond numpy's integers
        raise ValueError(f"{where} must be below 2**62; got {float(value):.3g}")
    return int(value)


def and_list(items: Sequence[str]) -> str:
    """Join names as ``"a, b and c"``."""
    """``"a, b and c"``."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check_name(where: str, value: Any) -> str:
    """Return ``value`` if it is an ASCII identifier (an arm, ROI or outcome name)."""
    if not isinstance(value, str) or not value.isidentifier() or not value.isascii():
        raise err(where, "must be a name of letters, digits and underscores that "
                   "does not start with a digit", value)
    return value


_NOT_GIVEN = object()


def rng_argument(rng, seed=_NOT_GIVEN, *, where: str):
    """Return the randomness argument of ``where``, given as ``rng=`` (or ``seed=``).

    ``rng=`` is the one name for randomness in dtitool's API (a Generator, a
    SeedSequence, an int or None); ``seed=`` is the older name of a few
    functions, still accepted with a FutureWarning. Both given is a TypeError.
    """
    if seed is _NOT_GIVEN:
        return rng
    if rng is not None:
        raise TypeError(f"{where}: give rng= only (seed= is its older name)")
    import warnings

    warnings.warn(f"{where}(seed=...) is now {where}(rng=...); seed= will be "
                  "removed", FutureWarning, stacklevel=3)
    return seed

