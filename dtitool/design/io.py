"""Designs as TOML files: read (tomllib), write (tomli-w), and the shipped presets.

A design file is a TOML document with the tables ``[trial]``, ``[rois.NAME]``,
``[outcomes.NAME]``, ``[correlations]`` and optionally ``[[visits]]``,
``[covariates]``, ``[missing]``, ``[sources]``, ``[ranges]``; ``base = "PRESET"``
starts from a preset and overrides only the keys given. ``schema = 2`` marks the
current format, in which the arms are the keys of ``trial.allocation`` (with
``trial.control`` the reference arm) and ``[[visits]]`` lists the visits; a file
without ``schema`` is read as version 1 (arms ``ketamine`` and ``saline``, visits
``baseline`` and ``24h``), so files written by earlier releases still load.
Outcomes may name a ready-made rating scale (``scale = "HAM-D17"``) instead of
giving its range. A ``[run]`` table records how a run was made
(seed, replicates, options) so that the file repeats it. Every key is described
in ``docs/model.md``.

Examples
--------
>>> from dtitool.design import load_preset, design_from_dict, design_to_dict
>>> design = load_preset("ketamine-rct")
>>> design_from_dict(design_to_dict(design)) == design
True
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dtitool.design.course import read_course, session_hours
from dtitool.design.layout import check_arm_count
from dtitool.design.measures import MeasureSpec
from dtitool.design.spec import (
    SCHEMA,
    CorrelationSpec,
    CovariateSpec,
    MissingSpec,
    OutcomeSpec,
    PerArm,
    RangeSpec,
    ROISpec,
    StudyDesign,
    VisitSpec,
    _check_real,
)
from dtitool.design.voxels import VoxelSpec

__all__ = [
    "available_presets",
    "design_from_dict",
    "design_to_dict",
    "design_to_toml",
    "load_preset",
    "read_design",
    "write_design",
]

_TOP_KEYS = {
    "schema",
    "visits",
    "name",
    "description",
    "reference",
    "base",
    "trial",
    "rois",
    "outcomes",
    "correlations",
    "covariates",
    "missing",
    "sources",
    "ranges",
    "run",
    "treatment",
    "plans",  # [[plans]]: read by dtitool plans (dtitool.stats.plans)
    "voxels",
}
_TRIAL_KEYS = {"n", "allocation", "block_size", "control"}
_TRIAL_REQUIRED = {"n", "allocation", "block_size"}
_VISIT_KEYS = {"name", "hours", "days", "dose", "primary", "fraction"}
# A version 1 design file (no schema key) described the ketamine trial and named
# neither arms nor visits: these were its arms and visits, read as such.
_V1_ARMS = ("ketamine", "saline")
_V1_VISITS = (VisitSpec("baseline", 0.0), VisitSpec("24h", 24.0, primary=True))
_ROI_KEYS = {"md_mean", "md_sd", "cv", "change_mean", "change_sd", "measures",
             "course"}
_MEASURE_KEYS = {"mean", "sd", "cv", "change_mean", "change_sd", "unit", "scale",
                 "md_correlation", "outcome_correlation", "course"}
_VOXEL_MEASURE_KEYS = (_MEASURE_KEYS - {"md_correlation"}) | {
    "crlb", "fit_error", "quality_spread"}
_MEASURE_REQUIRED = {"mean", "sd", "cv"}
_OUTCOME_KEYS = {
    "scale",
    "scale_min",
    "scale_max",
    "baseline_mean",
    "baseline_sd",
    "inclusion_min",
    "change_mean",
    "change_sd",
    "reliability",
    "change_model",
    "remission_max",
}
_OUTCOME_OPTIONAL = {"reliability", "change_model", "remission_max", "scale",
                     "scale_min", "scale_max"}
_RANGE_KEYS = {f.name for f in dataclasses.fields(RangeSpec)}
_CORR_KEYS = {
    "roi_baseline",
    "roi_change",
    "outcome_baseline",
    "outcome_change",
    "roi_outcome",
}
_COV_KEYS = {f.name for f in dataclasses.fields(CovariateSpec)}
_MISSING_KEYS = {f.name for f in dataclasses.fields(MissingSpec)}


def _check_keys(
    where: str, d: Any, allowed: set[str], required: set[str] = frozenset()
):
    if not isinstance(d, Mapping):
        raise TypeError(f"{where} must be a table; got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ValueError(
            f"unknown key {where + '.' if where else ''}{unknown[0]}; valid keys here: "
            f"{', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(d))
    if missing:
        raise ValueError(f"missing key {where + '.' if where else ''}{missing[0]}")


def _per_arm(where: str, d: Any, arms: Sequence[str], cast=float) -> PerArm:
    """Read a per-arm table (``{arm = value}``), or one number for every arm."""
    if isinstance(d, int | float) and not isinstance(d, bool):
        return PerArm({a: cast(d) for a in arms})
    _check_keys(where, d, set(arms), set(arms))
    return PerArm({a: d[a] for a in arms})


def _change(w: str, d: Mapping, arms, courses: dict, key: tuple) -> tuple:
    """Return an ROI's (or measure's) change_mean and change_sd, or read its course.

    With a course (:mod:`dtitool.design.course`) the change is derived from it
    (zeros here, replaced when the design is built); giving both is an error.
    """
    if "course" in d:
        both = sorted({"change_mean", "change_sd"} & set(d))
        if both:
            raise ValueError(f"{w} gives {both[0]} and a course; leave "
                             f"{both[0]} out (the course gives the change)")
        courses[key] = read_course(w, d["course"], arms, _per_arm)
        zero = PerArm(dict.fromkeys(arms, 0.0))
        return zero, zero
    for k in ("change_mean", "change_sd"):
        if k not in d:
            raise ValueError(f"missing key {w}.{k}")
    return (_per_arm(f"{w}.change_mean", d["change_mean"], arms),
            _per_arm(f"{w}.change_sd", d["change_sd"], arms))


def _measures(w: str, roi: str, d: Any, arms, courses: dict, *, voxel=False
              ) -> tuple[MeasureSpec, ...]:
    """``[rois.NAME.measures.MEASURE]`` tables: an ROI's measures besides MD.

    ``voxel``: ``[voxels.NAME.measures.MEASURE]``, an MRS voxel's metabolites.
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"{w}.measures must be a table of [{w}.measures.NAME] "
                        f"tables; got {d!r}")
    out = []
    for name, m in d.items():
        wm = f"{w}.measures.{name}"
        _check_keys(wm, m, _VOXEL_MEASURE_KEYS if voxel else _MEASURE_KEYS,
                    _MEASURE_REQUIRED)
        change_mean, change_sd = _change(wm, m, arms, courses, (roi, name))
        extra = ({k: m[k] for k in ("crlb", "fit_error", "quality_spread")
                  if k in m} if voxel else {})
        out.append(MeasureSpec(
            name=name, roi=roi, mean=m["mean"], sd=m["sd"], cv=m["cv"],
            change_mean=change_mean, change_sd=change_sd,
            unit=m.get("unit"), scale=m.get("scale"),
            md_correlation=m.get("md_correlation", 0.0),
            outcome_correlation=m.get("outcome_correlation", {}),
            voxel=voxel, **extra))
    return tuple(out)


def _voxels(d: Any, arms, courses: dict) -> tuple[VoxelSpec, ...]:
    """``[voxels.NAME]`` tables: MRS voxels, each a ``measures`` table."""
    if not isinstance(d, Mapping):
        raise TypeError(f"voxels must be a table of [voxels.NAME] tables; got {d!r}")
    out = []
    for name, v in d.items():
        w = f"voxels.{name}"
        _check_keys(w, v, {"measures"}, {"measures"})
        out.append(VoxelSpec(name, _measures(w, name, v["measures"], arms,
                                             courses, voxel=True)))
    return tuple(out)


def _measure_dict(m: MeasureSpec, arm) -> dict:
    return {"mean": m.mean, "sd": m.sd, "cv": m.cv, "unit": m.unit,
            "scale": m.scale, "change_mean": arm(m.change_mean),
            "change_sd": arm(m.change_sd),
            **{k: getattr(m, k) for k in ("crlb", "fit_error")
               if getattr(m, k) is not None},
            **({"quality_spread": m.quality_spread} if m.quality else {}),
            **({"md_correlation": m.md_correlation} if m.md_correlation else {}),
            **({"outcome_correlation": {a: dict(v) for a, v in
                                        m.outcome_correlation.items() if v}}
               if any(m.outcome_correlation.values()) else {})}


def _changed(table: dict, design, key: tuple) -> dict:
    """``table`` with its change given by its course, if it has one."""
    course = design.courses.get(key)
    if course is None:
        return table
    out = {k: v for k, v in table.items() if k not in ("change_mean", "change_sd")}
    out["course"] = [c.as_dict(design.arms) for c in course]
    return out


def _arms(tr: Mapping, schema: int) -> tuple[str, ...]:
    """Return the arms a design file declares: the keys of ``trial.allocation``."""
    alloc = tr["allocation"]
    if schema == 1:
        _check_keys("trial.allocation", alloc, set(_V1_ARMS), set(_V1_ARMS))
        if "control" in tr:
            raise ValueError("trial.control needs schema = 2 (a version 1 design "
                             "file's control arm is saline)")
        return _V1_ARMS
    if not isinstance(alloc, Mapping) or not alloc:
        raise TypeError("trial.allocation must be a table {arm = ratio, ...} naming "
                        f"every arm; got {alloc!r}")
    check_arm_count(tuple(alloc))
    return tuple(alloc)


def _visits(d: Any) -> tuple[VisitSpec, ...]:
    """``[[visits]]``: name, hours (or days), dose and primary of each visit."""
    if not isinstance(d, list) or not all(isinstance(v, Mapping) for v in d):
        raise TypeError("visits must be an array of tables ([[visits]] with name, "
                        f"hours or days, dose, primary, fraction); got {d!r}")
    out = []
    for i, v in enumerate(d):
        w = f"visits[{i}]"
        _check_keys(w, v, _VISIT_KEYS, {"name"})
        if "hours" in v and "days" in v:
            raise ValueError(f"{w} gives both hours and days; give one")
        hours = (_check_real(f"{w}.days", v["days"]) * 24.0 if "days" in v
                 else v.get("hours", 0.0))
        if not isinstance(v["name"], str):
            raise TypeError(f"{w}.name must be a string; got {v['name']!r}")
        out.append(VisitSpec(name=v["name"], hours=hours, dose=v.get("dose"),
                             primary=v.get("primary", False),
                             fraction=v.get("fraction")))
    return tuple(out)


def _scale_range(w: str, o: Mapping) -> tuple[int, int, str]:
    """``scale_min``, ``scale_max`` and the scale's name, from a named scale or both."""
    from dtitool.design.ratings import RATING_SCALES

    name = o.get("scale", "")
    if name == "":
        for k in ("scale_min", "scale_max"):
            if k not in o:
                raise ValueError(f"missing key {w}.{k} (or name a rating scale with "
                                 f"{w}.scale: {', '.join(RATING_SCALES)})")
        return o["scale_min"], o["scale_max"], ""
    if name not in RATING_SCALES:
        raise ValueError(f"{w}.scale = {name!r} is not a scale dtitool knows; "
                         f"choose one of {', '.join(RATING_SCALES)} or give "
                         "scale_min and scale_max")
    lo, hi = RATING_SCALES[name].range
    for k, v in (("scale_min", lo), ("scale_max", hi)):
        if k in o and o[k] != v:
            raise ValueError(f"{w}.{k} = {o[k]!r} contradicts {w}.scale = {name!r}, "
                             f"whose range is {lo}-{hi}")
    return lo, hi, name


def _matrix(where: str, value: Any, names: Sequence[str]) -> tuple:
    k = len(names)
    if isinstance(value, int | float) and not isinstance(value, bool):
        m = np.full((k, k), float(value))
        np.fill_diagonal(m, 1.0)
        return tuple(map(tuple, m.tolist()))
    if isinstance(value, list) and all(isinstance(r, list) for r in value):
        try:
            m = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                f"{where} must be a number or a matrix of numbers"
            ) from None
        if m.shape != (k, k):
            raise ValueError(
                f"{where} must be a single correlation or a {k} x {k} "
                f"matrix ordered as {list(names)}; got shape {m.shape}"
            )
        return tuple(map(tuple, m.tolist()))
    raise TypeError(f"{where} must be a number or a list of lists; got {value!r}")


def design_from_dict(d: Mapping[str, Any]) -> StudyDesign:
    """Build a :class:`StudyDesign` from the nested dict of a design TOML file.

    A ``base = "PRESET"`` key starts from that preset and overrides only the keys
    given (tables are merged key by key, except ``correlations.roi_outcome``, which
    replaces the base's pattern whole). A ``[run]`` table is ignored here, and
    so are ``[[plans]]`` tables (analysis plans, read by ``dtitool plans``:
    :func:`dtitool.stats.plans.plans_from_file`).

    Raises
    ------
    ValueError, TypeError
        On an unknown or missing key, a wrongly typed value or an invalid design;
        the message names the key.
    """
    _check_keys("", d, _TOP_KEYS)
    if "base" in d:
        base = d["base"]
        if not isinstance(base, str):
            raise TypeError(f"base must be a preset name; got {base!r}")
        merged = _merge(
            design_to_dict(load_preset(base)),
            {k: v for k, v in d.items() if k != "base"},
        )
        if "name" not in d and len(set(d) - {"base", "run", "plans"}) > 0:
            # a modified preset is not the preset: never label it as one
            merged["name"] = f"{base} (modified)"
        return design_from_dict(merged)
    _check_keys("", d, _TOP_KEYS, {"name", "trial", "outcomes", "correlations"})
    schema = d.get("schema", 1)
    if schema not in (1, SCHEMA) or isinstance(schema, bool):
        raise ValueError(f"schema = {schema!r} is not a design file format this "
                         f"dtitool reads (1 or {SCHEMA}); a newer dtitool may have "
                         "written it")
    tr = d["trial"]
    _check_keys("trial", tr, _TRIAL_KEYS, _TRIAL_REQUIRED)
    arms = _arms(tr, schema)
    allocation = _per_arm("trial.allocation", tr["allocation"], arms, cast=int)
    if "visits" in d and schema == 1:
        raise ValueError("[[visits]] needs schema = 2 (a version 1 design file's "
                         "visits are baseline and 24h)")
    if "visits" in d:
        visits = _visits(d["visits"])
    elif schema == 1:
        visits = _V1_VISITS
    else:
        raise ValueError("missing [[visits]]: a schema 2 design lists its visits "
                         "(name, hours or days, primary), baseline first")

    if "rois" not in d and "voxels" not in d:
        raise ValueError("missing key rois: a design has [rois.NAME] tables (or "
                         "MRS voxels, [voxels.NAME])")
    rois_d = d.get("rois", {})
    if not isinstance(rois_d, Mapping) or ("rois" in d and not rois_d):
        raise ValueError("rois must be a non-empty table of [rois.NAME] tables")
    rois = []
    courses: dict = {}
    for name, r in rois_d.items():
        w = f"rois.{name}"
        _check_keys(w, r, _ROI_KEYS, {"md_mean", "md_sd", "cv"})
        change_mean, change_sd = _change(w, r, arms, courses, (name, "md"))
        rois.append(
            ROISpec(
                name=name,
                md_mean=r["md_mean"],
                md_sd=r["md_sd"],
                cv=r["cv"],
                change_mean=change_mean,
                change_sd=change_sd,
                measures=_measures(w, name, r.get("measures", {}), arms, courses),
            )
        )
    out_d = d["outcomes"]
    if not isinstance(out_d, Mapping) or not out_d:
        raise ValueError("outcomes must be a non-empty table of [outcomes.NAME] tables")
    outcomes = []
    for name, o in out_d.items():
        w = f"outcomes.{name}"
        _check_keys(w, o, _OUTCOME_KEYS, _OUTCOME_KEYS - _OUTCOME_OPTIONAL)
        lo, hi, scale = _scale_range(w, o)
        outcomes.append(
            OutcomeSpec(
                name=name,
                scale=scale,
                scale_min=lo,
                scale_max=hi,
                **{k: (_per_arm(f"{w}.{k}", o[k], arms,
                                cast=int if k == "inclusion_min" else float)
                       if isinstance(o[k], Mapping) else o[k])
                   for k in ("baseline_mean", "baseline_sd", "inclusion_min")},
                change_mean=_per_arm(f"{w}.change_mean", o["change_mean"], arms),
                change_sd=_per_arm(f"{w}.change_sd", o["change_sd"], arms),
                reliability=o.get("reliability", 1.0),
                # absent in design files of earlier releases, whose model it was
                change_model=o.get("change_model", "additive"),
                remission_max=o.get("remission_max"),
            )
        )
    roi_names = [r.name for r in rois]
    out_names = [o.name for o in outcomes]

    voxels = _voxels(d.get("voxels", {}), arms, courses)
    c = d["correlations"]
    _check_keys(
        "correlations",
        c,
        _CORR_KEYS,
        {"outcome_baseline", "outcome_change",
         *(("roi_baseline", "roi_change") if rois else ())},
    )
    ro = c.get("roi_outcome", {})
    _check_keys("correlations.roi_outcome", ro, set(arms))
    roi_outcome = {}
    for arm in arms:
        per_out = ro.get(arm, {})
        _check_keys(f"correlations.roi_outcome.{arm}", per_out, set(out_names))
        m = np.zeros((len(roi_names), len(out_names)))
        for j, oname in enumerate(out_names):
            per_roi = per_out.get(oname, {})
            w = f"correlations.roi_outcome.{arm}.{oname}"
            _check_keys(w, per_roi, set(roi_names))
            for rname, v in per_roi.items():
                m[roi_names.index(rname), j] = _check_real(f"{w}.{rname}", v)
        roi_outcome[arm] = tuple(map(tuple, m.tolist()))
    correlations = CorrelationSpec(
        roi_baseline=c.get("roi_baseline", 0.0),
        roi_change=_matrix("correlations.roi_change", c.get("roi_change", 0.0),
                           roi_names),
        outcome_baseline=c["outcome_baseline"],
        outcome_change=_matrix(
            "correlations.outcome_change", c["outcome_change"], out_names
        ),
        roi_outcome=roi_outcome,
    )
    covariates = None
    if "covariates" in d:
        _check_keys("covariates", d["covariates"], _COV_KEYS)
        covariates = CovariateSpec(**d["covariates"])
    missing = MissingSpec()
    if "missing" in d:
        _check_keys("missing", d["missing"], _MISSING_KEYS)
        missing = MissingSpec(**d["missing"])
    ranges = None
    if "ranges" in d:
        rg = d["ranges"]
        _check_keys("ranges", rg, _RANGE_KEYS)
        if "change_sd_fraction" in rg:
            _check_keys("ranges.change_sd_fraction", rg["change_sd_fraction"],
                        set(arms))
        ranges = RangeSpec(**rg)
    sources = d.get("sources", {})
    if not isinstance(sources, Mapping) or not all(
        isinstance(v, str) for v in sources.values()
    ):
        raise TypeError("sources must be a table of strings")
    for key in ("name", "description", "reference"):
        if key in d and not isinstance(d[key], str):
            raise TypeError(f"{key} must be a string; got {d[key]!r}")
    return StudyDesign(
        name=d["name"],
        n=tr["n"],
        allocation=allocation,
        block_size=tr["block_size"],
        rois=tuple(rois),
        outcomes=tuple(outcomes),
        correlations=correlations,
        covariates=covariates,
        missing=missing,
        description=d.get("description", ""),
        reference=d.get("reference", ""),
        sources=dict(sources),
        ranges=ranges,
        control=tr.get("control", "" if schema == 2 else _V1_ARMS[-1]),
        visits=visits,
        sessions=session_hours(d.get("treatment")),
        courses=courses,
        voxels=voxels,
    )


_REPLACED_WHOLE = ("roi_outcome",)
# An override of these replaces the base's table instead of merging into it: a
# user who writes ROI-outcome correlations writes the whole pattern (unlisted = 0).


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        if (isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
                and k not in _REPLACED_WHOLE):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def design_to_dict(design: StudyDesign) -> dict[str, Any]:
    """Return the nested dict that :func:`design_from_dict` reads back as ``design``."""
    arm = lambda p: {g: p[g] for g in design.arms}  # noqa: E731
    d: dict[str, Any] = {"schema": SCHEMA, "name": design.name}
    if design.description:
        d["description"] = design.description
    if design.reference:
        d["reference"] = design.reference
    d["trial"] = {
        "n": design.n,
        "allocation": arm(design.allocation),
        "control": design.control,
        "block_size": design.block_size,
    }
    d["visits"] = [
        {"name": v.name, "hours": v.hours,
         **({} if v.dose is None else {"dose": v.dose}),
         **({"primary": True} if v.primary else {}),
         **({} if v.fraction is None else {"fraction": (
             dict(v.fraction) if isinstance(v.fraction, Mapping)
             else v.fraction)})}
        for v in design.visits
    ]
    if design.sessions:
        d["treatment"] = {"session_hours": list(design.sessions)}
    d["rois"] = {
        r.name: _changed({
            "md_mean": r.md_mean,
            "md_sd": r.md_sd,
            "cv": r.cv,
            "change_mean": arm(r.change_mean),
            "change_sd": arm(r.change_sd),
            **({"measures": {m.name: _changed(_measure_dict(m, arm),
                                              design, (r.name, m.name))
                             for m in r.measures}}
               if r.measures else {}),
        }, design, (r.name, "md"))
        for r in design.rois
    }
    if not design.rois:
        del d["rois"]
    if design.voxels:
        d["voxels"] = {v.name: {"measures": {
            m.name: _changed(_measure_dict(m, arm), design, (v.name, m.name))
            for m in v.measures}} for v in design.voxels}
    d["outcomes"] = {
        o.name: {
            **({"scale": o.scale} if o.scale else {}),
            "scale_min": o.scale_min,
            "scale_max": o.scale_max,
            **{k: (arm(v) if isinstance(v, Mapping) else v) for k, v in (
                ("baseline_mean", o.baseline_mean), ("baseline_sd", o.baseline_sd),
                ("inclusion_min", o.inclusion_min))},
            "change_mean": arm(o.change_mean),
            "change_sd": arm(o.change_sd),
            "reliability": o.reliability,
            "change_model": o.change_model,
            **({} if o.remission_max is None else {"remission_max": o.remission_max}),
        }
        for o in design.outcomes
    }
    c = design.correlations
    d["correlations"] = {
        "roi_baseline": c.roi_baseline,
        "roi_change": [list(r) for r in c.roi_change],
        "outcome_baseline": c.outcome_baseline,
        "outcome_change": [list(r) for r in c.outcome_change],
        "roi_outcome": {
            g: {
                o: {
                    r: c.roi_outcome_array(g)[i, j]
                    for i, r in enumerate(design.roi_names)
                    if c.roi_outcome_array(g)[i, j] != 0
                }
                for j, o in enumerate(design.outcome_names)
            }
            for g in design.arms
        },
    }
    if not design.rois:  # an MRS-only design: no MD to correlate
        del d["correlations"]["roi_baseline"], d["correlations"]["roi_change"]
    if design.covariates is not None:
        d["covariates"] = dataclasses.asdict(design.covariates)
    d["missing"] = dataclasses.asdict(design.missing)
    if not design.missing.scores:  # the default: design files stay as they were
        del d["missing"]["scores"]
    if design.sources:
        d["sources"] = dict(design.sources)
    if design.ranges is not None:
        rg = design.ranges
        d["ranges"] = {
            f.name: (dict(getattr(rg, f.name)) if f.name == "change_sd_fraction"
                     else list(getattr(rg, f.name)))
            for f in dataclasses.fields(RangeSpec) if getattr(rg, f.name) is not None
        }
        if "change_sd_fraction" in d["ranges"]:
            d["ranges"]["change_sd_fraction"] = {
                k: list(v) for k, v in d["ranges"]["change_sd_fraction"].items()}
    return d


def _plain(v: Any) -> Any:
    """Return ``v`` with numpy scalars and tuples turned into TOML-ready values."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def design_to_toml(
    design: StudyDesign, *, run: Mapping[str, Any] | None = None, header: str = ""
) -> str:
    """Serialise ``design`` (and an optional ``[run]`` table) as TOML text.

    Parameters
    ----------
    design : StudyDesign
    run : mapping, optional
        Written as the ``[run]`` table (seed, replicates and the run's options).
    header : str
        Comment lines put first (each line prefixed with ``# ``).

    Returns
    -------
    str
        TOML that :func:`read_design` reads back as ``design`` and ``run``.
    """
    import tomli_w

    d = design_to_dict(design)
    if run:
        # None means "option not set": left out (TOML has no null), read back
        # as absent, i.e. None again.
        d["run"] = {k: v for k, v in run.items() if v is not None}
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    text = tomli_w.dumps(_plain(d))
    return ("\n".join(lines) + "\n" if lines else "") + text


def write_design(
    design: StudyDesign, path: str | Path, *, run: Mapping[str, Any] | None = None
) -> None:
    """Write ``design`` to a TOML file (see :func:`read_design`)."""
    Path(path).write_text(design_to_toml(design, run=run), encoding="utf-8")


def read_design(path: str | Path) -> tuple[StudyDesign, dict[str, Any]]:
    """Read a design TOML file.

    Returns
    -------
    design : StudyDesign
    run : dict
        The file's ``[run]`` table (seed, command, options and version of the
        run that wrote it), empty if absent. Its shape is checked here (values
        or arrays, a non-negative integer seed); which keys a command accepts
        is checked by that command.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, or the design is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"design file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read design file {str(path)!r}: {e}") from None
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"design file {str(path)!r} is not valid TOML: {e}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively
        raise ValueError(_too_deep(path)) from None
    try:
        run = _check_run(d.get("run", {}))
        return design_from_dict(d), run
    except (ValueError, TypeError) as e:
        raise type(e)(f"design file {str(path)!r}: {e}") from None
    except RecursionError:
        raise ValueError(_too_deep(path)) from None


def _too_deep(path: Path) -> str:
    return (f"design file {str(path)!r} nests arrays or tables too deeply to "
            "read; a design file is a few levels deep (tables of numbers, "
            "strings and arrays)")


def _check_run(run: Any) -> dict[str, Any]:
    """Check the shape of a ``[run]`` table (its keys are the command's to check).

    A run record holds the seed, the command and its options: numbers, strings,
    booleans or arrays of them, never nested tables.
    """
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a table ([run]); got {run!r}")
    for k, v in run.items():
        items = v if isinstance(v, list) else [v]
        if any(isinstance(x, Mapping | list) for x in items):
            raise ValueError(f"run.{k} must be a number, string, boolean or an array "
                             f"of them; got {v!r}")
    seed = run.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or seed < 0):
        raise ValueError(f"run.seed must be a non-negative integer; got {seed!r}")
    return dict(run)


# --------------------------------------------------------------------------- presets


def _preset_files():
    return resources.files("dtitool.design").joinpath("presets")


def available_presets() -> tuple[str, ...]:
    """Names of the presets shipped with dtitool."""
    files = _preset_files().iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".toml")))


def load_preset(name: str = "ketamine-rct") -> StudyDesign:
    """Load a preset design shipped with dtitool.

    Parameters
    ----------
    name : str
        Preset name; see :func:`available_presets`. ``"ketamine-rct"`` (Kopelman et
        al. 2023) is the default.

    Raises
    ------
    ValueError
        If ``name`` is not a known preset (the message lists them).
    """
    known = available_presets()
    if name not in known:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    text = _preset_files().joinpath(f"{name}.toml").read_text("utf-8")
    d = tomllib.loads(text)
    d.pop("run", None)
    return design_from_dict(d)
