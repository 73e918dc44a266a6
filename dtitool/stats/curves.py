"""Power curves and grids: power as one or several design parameters vary.

:func:`power_curve` varies one parameter
(:func:`~dtitool.stats.design_variants.vary_design`), :func:`power_grid` several
at once (a power surface, :func:`check_grid_axes`). Every point uses the same
seed (common random numbers), and the chunks of all points are streamed to one
executor together (:func:`dtitool.stats.power_run._run_points`), so each point
equals a :func:`~dtitool.stats.power_run.power` run of its design with that seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dtitool import _progress
from dtitool._constants import CURVE_PARAMETERS
from dtitool._executor import open_executor
from dtitool.design import StudyDesign
from dtitool.simulate import as_seed_sequence
from dtitool.stats.design_variants import design_parameter, vary_design
from dtitool.stats.power_engine import _normalise_families
from dtitool.stats.power_results import GRID_COLUMNS, PowerCurve, PowerGrid
from dtitool.stats.power_run import _points_work, _run_points
from dtitool.stats.settings import MonteCarlo, _resolve

__all__ = ["MAX_GRID_POINTS", "check_grid_axes", "power_curve", "power_grid"]


def power_curve(
    design: StudyDesign,
    *,
    parameter: str,
    values: Sequence[float],
    settings: MonteCarlo | None = None,
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "welch",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    families: Mapping[str, Iterable] | None = None,
    size: bool = True,
    design_analysis: bool = True,
    progress: bool | None = None,
    dask=None,
    missing: str = "complete-case",
    imputations: int | None = None,
) -> PowerCurve:
    """Power of every test as ``parameter`` takes each of ``values``.

    Every point uses the same seed (common random numbers), so points that share
    a null counterpart (an ``effect`` curve) or a reference sample (an ``n``
    curve) simulate it once. Other arguments (``settings``, a
    :class:`~dtitool.stats.settings.MonteCarlo`, included) as in :func:`power`;
    ``parameter`` as in :func:`vary_design`. The table holds every column of
    :attr:`PowerResult.table` per point, size and design analysis included.
    The chunks of all points are handed to the workers together (``n_jobs``,
    ``dask``), so a curve keeps a cluster busy; each point is the same as a
    :func:`power` run of its design with the same seed.
    """
    if parameter not in CURVE_PARAMETERS:
        raise ValueError(f"unknown curve parameter {parameter!r}; expected one of "
                         f"{list(CURVE_PARAMETERS)}")
    values = list(values)
    if not values:
        raise ValueError("values must not be empty")
    settings = _resolve(power_curve, settings, replicates=replicates, alpha=alpha,
                        inference=inference, rng=rng, n_jobs=n_jobs,
                        chunk_size=chunk_size, missing=missing,
                        imputations=imputations)
    settings = dataclasses.replace(settings, rng=as_seed_sequence(settings.rng))
    designs = [vary_design(design, parameter, v) for v in values]
    tabs, fams = [None] * len(values), [None] * len(values)

    def keep(i, res):
        tabs[i] = res.table.assign(parameter=parameter, value=values[i])
        fams[i] = res.familywise.assign(parameter=parameter, value=values[i])

    _run_designs(designs, settings, keep=keep, desc=f"power curve over {parameter}",
                 families=families, size=size, design_analysis=design_analysis,
                 progress=progress, dask=dask)
    lead = ["parameter", "value"]
    tab = pd.concat(tabs, ignore_index=True)
    fam = pd.concat(fams, ignore_index=True)
    return PowerCurve(
        parameter=parameter,
        table=tab[lead + [c for c in tab.columns if c not in lead]],
        familywise=fam[lead + [c for c in fam.columns if c not in lead]],
        seed=int(settings.rng.entropy),
        replicates=settings.replicates,
    )


def _run_designs(designs, settings: MonteCarlo, *, keep, desc, families, size,
                 design_analysis, progress, dask) -> None:
    """Stream every point's tasks (:func:`_run_points`) through one executor.

    ``designs`` is not empty: :func:`power_curve` and :func:`power_grid` check
    their values first. ``settings`` were checked when made; its ``rng`` is the
    SeedSequence every point uses.
    """
    for d in designs[:1]:
        _normalise_families(d, families)  # bad families fail before any work
    with (open_executor(settings.n_jobs, dask) as ex,
          _progress.bar(progress, _points_work(designs, settings.replicates, size),
                        desc, unit="rep") as bar):
        _run_points(designs, settings, keep=keep, ex=ex, bar=bar,
                    families=families, size=size,
                    design_analysis=design_analysis)


MAX_GRID_POINTS = 100_000
"""Most points a grid may have (its table has one row per point and test)."""


def check_grid_axes(axes) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """Validate the axes of a power grid (:func:`power_grid`) before any work.

    Parameters
    ----------
    axes : mapping or sequence of (parameter, values)

    Returns
    -------
    tuple of (str, tuple)
        The axes in order, ``n`` values as int.

    Raises
    ------
    ValueError
        An unknown or repeated parameter, an empty axis, a value that is not a
        finite number (``n``: a whole number), a repeated value, both ``cv`` and
        ``reliability``, or more than :data:`MAX_GRID_POINTS` points.
    """
    items = list(axes.items()) if isinstance(axes, Mapping) else list(axes)
    if not items:
        raise ValueError("a grid needs at least one axis")
    out, seen = [], set()
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(f"each grid axis must be (parameter, values); got "
                             f"{item!r}")
        name, values = item
        if name not in CURVE_PARAMETERS:
            raise ValueError(f"unknown grid parameter {name!r}; expected one of "
                             f"{list(CURVE_PARAMETERS)}")
        if name in seen:
            raise ValueError(f"grid parameter {name!r} is given twice")
        seen.add(name)
        values = tuple(values)
        if not values:
            raise ValueError(f"grid axis {name!r} has no values")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or (
                    not math.isfinite(float(v))):
                raise ValueError(f"grid axis {name!r} values must be finite "
                                 f"numbers; got {v!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"grid axis {name!r} repeats a value")
        if name == "n":
            frac = [v for v in values if float(v) != int(v)]
            if frac:
                raise ValueError(f"grid axis 'n' values must be whole numbers; got "
                                 f"{frac[0]!r}")
            values = tuple(int(v) for v in values)
        out.append((name, values))
    if {"cv", "reliability"} <= seen:
        raise ValueError("a grid cannot vary both cv and reliability (both set "
                         "the scan-rescan CV); choose one")
    points = math.prod(len(v) for _, v in out)
    if points > MAX_GRID_POINTS:
        raise ValueError(f"the grid has {points} points; at most "
                         f"{MAX_GRID_POINTS} are allowed (fewer values per axis)")
    return tuple(out)


def power_grid(
    design: StudyDesign,
    *,
    axes,
    settings: MonteCarlo | None = None,
    replicates: int = 1000,
    alpha: float = 0.05,
    inference: str = "welch",
    rng=None,
    n_jobs: int = 1,
    chunk_size: int | None = None,
    size: bool = True,
    design_analysis: bool = True,
    progress: bool | None = None,
    dask=None,
    missing: str = "complete-case",
    imputations: int | None = None,
) -> PowerGrid:
    """Power of every test at every point of a grid of design parameters.

    Parameters
    ----------
    design : StudyDesign
    axes : mapping or sequence of (parameter, values)
        Any of :data:`CURVE_PARAMETERS` (not both ``cv`` and ``reliability``),
        each with its values, e.g. ``{"n": range(40, 401, 20), "effect": [0.5,
        1], "reliability": [0.4, 0.6, 0.8]}``. A point sets each parameter in
        axis order (:func:`vary_design`).
    settings : MonteCarlo, optional
        ``replicates``, ``alpha``, ``inference``, ``rng``, ``n_jobs``,
        ``chunk_size``, ``missing`` and ``imputations`` at once
        (:class:`~dtitool.stats.settings.MonteCarlo`), as in :func:`power`.
    replicates, alpha, inference, rng, n_jobs, chunk_size, size, design_analysis,
    progress, dask, missing, imputations
        As in :func:`power`. Every point uses the same seed (common random
        numbers, as :func:`power_curve`): the surface is smooth, and points
        sharing a null counterpart or a reference sample simulate it once.

    Returns
    -------
    PowerGrid

    Notes
    -----
    The chunks of every point are streamed to the workers together (local
    processes or a Dask cluster), a point is reduced to its rows as soon as it
    is complete, so memory holds only the points in flight. Each point's rows
    are those of a :func:`power` run of its design with the same seed, whatever
    ran it.
    """
    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign, got {type(design).__name__}")
    axes = check_grid_axes(axes)
    settings = _resolve(power_grid, settings, replicates=replicates, alpha=alpha,
                        inference=inference, rng=rng, n_jobs=n_jobs,
                        chunk_size=chunk_size, missing=missing,
                        imputations=imputations)
    settings = dataclasses.replace(settings, rng=as_seed_sequence(settings.rng))
    names = [a for a, _ in axes]
    points = list(itertools.product(*(v for _, v in axes)))
    designs, where, impossible = [], [], {}
    for i, point in enumerate(points):
        d = design
        try:
            for name, v in zip(names, point, strict=True):
                d = vary_design(d, name, v)
        except ValueError as e:
            at = ", ".join(f"{a} = {v:g}"
                           for a, v in zip(names, point, strict=True))
            impossible[i] = f"{at}: {' '.join(str(e).split())}"
            continue
        designs.append(d)
        where.append(i)
    tables: list = [None] * len(points)

    def keep(j, res):
        tables[where[j]] = res.table[list(GRID_COLUMNS)]

    if designs:
        _run_designs(designs, settings, keep=keep, desc="power grid",
                     families=None, size=size, design_analysis=design_analysis,
                     progress=progress, dask=dask)
    template = None
    for t in tables:
        if t is not None:
            template = t
            break
    if template is None:
        raise ValueError("no point of the grid is a possible design; first: "
                         + next(iter(impossible.values())))
    blank = template.copy()
    for col in GRID_COLUMNS[4:]:
        blank[col] = np.nan if col != "size_ok" else pd.NA
    frames = []
    for i, point in enumerate(points):
        t = tables[i] if tables[i] is not None else blank
        axis_cols = {name: (int(v) if name == "n" else float(v))
                     for name, v in zip(names, point, strict=True)}
        frames.append(t.assign(**axis_cols))
    table = pd.concat(frames, ignore_index=True)
    table = table[names + list(GRID_COLUMNS)]
    if impossible:
        first = next(iter(impossible.values()))
        warnings.warn(f"{len(impossible)} of {len(points)} grid points are not "
                      "possible designs (their rows are empty); first: "
                      f"{first}", stacklevel=2)
    return PowerGrid(axes=axes, table=table, impossible=tuple(impossible.values()),
                     seed=int(settings.rng.entropy),
                     replicates=settings.replicates, alpha=settings.alpha,
                     inference=settings.inference,
                     design_name=design.name,
                     base={name: design_parameter(design, name) for name in names})
