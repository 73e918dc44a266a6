"""The settings of a Monte Carlo power computation, as one value.

:class:`MonteCarlo` holds what every Monte Carlo entry point
(:func:`~dtitool.stats.power_run.power`,
:func:`~dtitool.stats.curves.power_curve`,
:func:`~dtitool.stats.curves.power_grid`,
:func:`~dtitool.stats.sample_size.sample_size`) used to take as nine loose
keywords: how many trials, at what level, analysed how, from which seed, and
in how many workers and chunks. It is checked once, when it is made, and passed
down whole. The functions keep their loose keywords; given together with
``settings=``, a keyword that says something else than the settings is an error
(:func:`_resolve`).

What is not a setting: where the work runs (``dask=``: a client or a running
executor has a lifetime, not a value) and how it is shown (``progress=``: a bar
belongs to one call), so both stay keywords of the functions.

Examples
--------
>>> from dtitool.stats.settings import MonteCarlo
>>> mc = MonteCarlo(replicates=500, rng=1, inference="welch")
>>> mc.replicates, mc.alpha, mc.inference
(500, 0.05, 'welch')
>>> MonteCarlo(alpha=1.5)
Traceback (most recent call last):
...
ValueError: alpha must be > 0 and < 1; got 1.5
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtitool._validation import check_int, check_range, err

__all__ = ["MonteCarlo"]


@dataclass(frozen=True, slots=True)
class MonteCarlo:
    """Settings of a Monte Carlo power computation (checked when made).

    Pass one as ``settings=`` to :func:`~dtitool.stats.power_run.power`,
    :func:`~dtitool.stats.curves.power_curve`,
    :func:`~dtitool.stats.curves.power_grid` or
    :func:`~dtitool.stats.sample_size.sample_size` instead of their loose
    keywords of the same names; every field is used (a function's own default,
    e.g. ``replicates=1000`` of :func:`power_curve`, applies to its keywords
    only).

    Parameters
    ----------
    replicates : int
        Simulated trials per design (>= 1). The Monte Carlo standard error of a
        power ``p`` is ``sqrt(p (1 - p) / replicates)``: 0.009 at p = 0.8 with
        the default 2000.
    alpha : float
        Two-sided significance level, in (0, 1).
    inference : {"welch", "ols", "hc3"}
        How every test is done (:mod:`dtitool.stats.inference`). Default
        ``welch`` (arms fitted separately, Welch-Satterthwaite df): at its
        nominal level when the arms' score changes differ in variance, as they
        do in every shipped design; ``ols`` is the pooled-variance analysis the
        reference study reported (``docs/model.md``, "Inference").
    rng : None, int, SeedSequence or Generator
        Seed of the simulation (an int >= 0); None draws fresh entropy. Results
        depend on it alone, never on ``n_jobs`` or ``chunk_size``. A Generator
        is drawn from once per call, so two calls with one Generator differ;
        give an int to repeat a run.
    n_jobs : int
        Worker processes (>= 1, or -1 for every CPU this process may use); with
        ``dask="local"``, the workers of the local cluster.
    chunk_size : int, optional
        Replicates simulated and fitted at once (>= 1, rounded up to a multiple
        of the simulator's block size); default scaled to the design's n
        (:data:`~dtitool.stats.power_run.DEFAULT_CHUNK` at n = 98).
    missing : {"complete-case", "mi"}
        How each simulated trial handles the design's missing follow-up data:
        drop the subjects, or multiple imputation pooled by Rubin's rules
        (:mod:`dtitool.stats.imputation`).
    imputations : int, optional
        Imputations per trial under ``mi`` (>= 2; default
        :data:`~dtitool.stats.imputation.DEFAULT_IMPUTATIONS`, which it is set
        to). Not used under ``complete-case``.

    Raises
    ------
    TypeError
        A field of the wrong type (a float ``replicates``, a string ``alpha``).
    ValueError
        A field of the right type out of its range, or an unknown ``inference``
        or ``missing``.

    See Also
    --------
    dtitool.stats.power_run.power : Monte Carlo power of one design.

    Examples
    --------
    >>> from dtitool.stats.settings import MonteCarlo
    >>> mc = MonteCarlo(replicates=200, rng=3, missing="mi")
    >>> mc.imputations
    20
    >>> import dataclasses
    >>> dataclasses.replace(mc, alpha=0.01).alpha
    0.01
    >>> MonteCarlo(replicates=2.5)
    Traceback (most recent call last):
    ...
    TypeError: replicates must be an integer; got float 2.5
    """

    replicates: int = 2000
    alpha: float = 0.05
    inference: str = "welch"
    rng: Any = None
    n_jobs: int = 1
    chunk_size: int | None = None
    missing: str = "complete-case"
    imputations: int | None = None

    def __post_init__(self) -> None:
        from dtitool.stats.imputation import check_missing
        from dtitool.stats.inference import check_inference

        def fix(name, value):
            object.__setattr__(self, name, value)

        fix("replicates", check_int("replicates", self.replicates, 1))
        fix("alpha", check_range("alpha", self.alpha, 0, 1, lo_open=True,
                                 hi_open=True))
        _check_str("inference", self.inference)
        check_inference(self.inference)
        _check_rng(self.rng)
        fix("n_jobs", _check_n_jobs(self.n_jobs))
        if self.chunk_size is not None:
            fix("chunk_size", check_int("chunk_size", self.chunk_size, 1))
        _check_str("missing", self.missing)
        if self.imputations is not None:
            fix("imputations", check_int("imputations", self.imputations))
        missing, imputations = check_missing(self.missing, self.imputations)
        if missing == "mi":  # None: the default count, stated
            fix("imputations", imputations)


def _check_str(where: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string; got {type(value).__name__} "
                        f"{value!r}")


def _check_rng(rng: Any) -> None:
    """Raise unless ``rng`` is None, an int >= 0, a SeedSequence or a Generator.

    The messages are those of :func:`dtitool.simulate.as_seed_sequence`, which
    turns it into a SeedSequence when a run starts (a Generator is not drawn
    from here).
    """
    if rng is None or isinstance(rng, np.random.SeedSequence | np.random.Generator):
        return
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        raise TypeError("rng must be None, an integer seed, a numpy SeedSequence or "
                        f"a numpy Generator; got {type(rng).__name__} {rng!r}")
    if rng < 0:
        raise ValueError(f"rng seed must be a non-negative integer; got {rng}")


def _check_n_jobs(n_jobs: Any) -> int:
    """Return ``n_jobs`` as an int (-1 kept: it means every CPU where it runs)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be an integer; got {type(n_jobs).__name__} "
                        f"{n_jobs!r}")
    if n_jobs == 0 or n_jobs < -1:
        raise err("n_jobs", "must be a positive integer or -1 (all CPUs)", n_jobs)
    return int(n_jobs)


FIELDS = tuple(f.name for f in dataclasses.fields(MonteCarlo))
"""The names of the settings, as the functions' keywords spell them."""


@functools.cache
def _defaults(func) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if name in FIELDS}


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # objects without a truth value of ==
        return False


def _resolve(func, settings: MonteCarlo | None, **keywords: Any) -> MonteCarlo:
    """Return the settings of a call of ``func`` (a public Monte Carlo function).

    Without ``settings``: a :class:`MonteCarlo` of the loose ``keywords`` (the
    fields it does not take keep their defaults), checked on the way. With
    ``settings``: those settings, after checking that no keyword differs both
    from its default in ``func``'s signature (so it was given) and from the
    settings (so it would be ignored): such a call is a TypeError naming both.
    A keyword given with the settings' own value is accepted.
    """
    if settings is None:
        return MonteCarlo(**keywords)
    if not isinstance(settings, MonteCarlo):
        raise TypeError(f"settings must be a MonteCarlo; got "
                        f"{type(settings).__name__} {settings!r}")
    defaults = _defaults(func)
    for name, value in keywords.items():
        if not _same(value, defaults[name]) and not _same(
                value, getattr(settings, name)):
            raise TypeError(
                f"{func.__name__}() got {name}={value!r} and settings with "
                f"{name}={getattr(settings, name)!r}; give {name} in one of them "
                f"(settings=dataclasses.replace(settings, {name}=...))")
    return settings
