"""Analysis plans as data: what a statistical analysis plan commits to.

A :class:`Plan` names how the clinical outcome and the imaging variable enter
the model, its covariates, its inference option and its multiplicity rule;
:func:`dtitool.stats.plans_run.plans_power` runs every plan on the same
simulated trials. The hypothesis every plan tests is the trial's question:
does the imaging change go with the clinical change differently by arm (the
``interaction`` terms: an arm's slope minus the control arm's). What the slope
is a slope *of* differs between plans, and :attr:`Plan.estimand` says it, so
that tables never compare a log-odds ratio with a points-per-unit slope
without saying so.

Ready-made plans (:data:`READY`), each per ROI and outcome unless it pools
the ROIs:

``reported``
    the change score on ``arm x dMD`` with the baseline score as covariate
    (an ANCOVA of the change; the reported analysis);
``change``
    the same without the baseline covariate (the plain change score: less
    powerful whenever the baseline and follow-up scores correlate below 1,
    Vickers and Altman 2001);
``ancova-md``
    the follow-up MD instead of the MD change, with baseline MD as a second
    covariate;
``composite-mean``
    the mean dMD over the ROIs, one test per outcome;
``composite-pc1``
    the first principal component of the ROIs' dMD (each trial's own, from
    the pooled within-arm covariance, loadings of unit length with a positive
    sum), one test per outcome;
``primary-roi``
    one pre-registered ROI (``primary-roi:roi=NAME``; default the design's
    first), one test per outcome;
``responder``
    a 50 % reduction of the score from baseline (logistic, ``arm x dMD`` and
    the baseline score; Wald z), per ROI and outcome;
``mixed``
    a linear mixed model of both visits' scores on MD at each visit (a
    random intercept per participant; each arm on its own by default), per
    ROI and outcome (:mod:`dtitool.stats.plans_mixed`).

A plan's options are given after its name, ``NAME:key=value,key=value``:
``multiplicity`` (``none``, ``holm``, ``bh`` or ``maxt``, over the plan's
tests of one outcome; ``maxt``: single-step max-T, its critical p the alpha
quantile of the family's minimum p in the null counterpart's trials, as the
change-score power engine's), ``inference`` (``welch`` or ``ols``; not for
``responder``), ``roi`` (``primary-roi``). ``[[plans]]`` tables in a design
file give the same keys with ``name`` and ``base`` (the ready-made plan they
modify).

References
----------
Vickers AJ, Altman DG (2001). Analysing controlled trials with baseline and
follow up measurements. BMJ 323, 1123-1124.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["IMAGING", "MODELS", "MULTIPLICITY", "READY", "Plan", "parse_plan",
           "plan_from_dict", "plan_to_dict", "plans_from_file"]

MODELS = ("change", "ancova-md", "responder", "mixed")
"""How the outcome and the imaging variable enter (module docstring)."""

IMAGING = ("roi", "composite-mean", "composite-pc1")
"""The imaging variable: each ROI's, or one composite of them."""

MULTIPLICITY = ("none", "holm", "bh", "maxt")
"""Multiplicity rules over a plan's tests of one outcome."""

_INFERENCE = ("welch", "ols")


@dataclass(frozen=True)
class Plan:
    """One analysis plan.

    Parameters
    ----------
    name : str
        The plan's name in tables.
    model : {"change", "ancova-md", "responder", "mixed"}
        ``change``: the score change regressed on the imaging change;
        ``ancova-md``: on the follow-up MD with baseline MD as a covariate;
        ``responder``: a 50 % reduction from baseline, logistic; ``mixed``:
        both visits' scores on MD at each visit, a random intercept.
    baseline : bool
        The baseline score as a covariate.
    imaging : {"roi", "composite-mean", "composite-pc1"}
        Per ROI, or one composite of every ROI.
    rois : tuple of str or None
        The ROIs tested (None: every ROI).
    inference : {"welch", "ols"}
        ``welch``: each arm fitted on its own, Welch-Satterthwaite df for the
        interaction; ``ols``: one pooled model. A logistic plan uses Wald z.
    multiplicity : {"none", "holm", "bh", "maxt"}
        Over the plan's tests of one outcome (the ``any`` row). ``maxt``:
        single-step max-T, which uses the tests' correlation; its critical p
        comes from the null counterpart's trials
        (:func:`dtitool.stats.plans_run.plans_power`).
    description : str
        One line for tables and reports.
    single : bool
        One pre-registered ROI: the first of ``rois``, or of the design's
        ROIs when ``rois`` is None.
    """

    name: str
    model: str = "change"
    baseline: bool = True
    imaging: str = "roi"
    rois: tuple[str, ...] | None = None
    inference: str = "welch"
    multiplicity: str = "none"
    description: str = ""
    single: bool = False

    def __post_init__(self):
        for field, allowed in (("model", MODELS), ("imaging", IMAGING),
                               ("multiplicity", MULTIPLICITY),
                               ("inference", _INFERENCE)):
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"plan {self.name!r}: {field} must be one of "
                                 f"{', '.join(allowed)}; got {value!r}")
        if self.model == "responder" and self.inference != "welch":
            raise ValueError(f"plan {self.name!r}: a responder (logistic) plan has "
                             "Wald z tests; inference does not apply")
        if self.model == "mixed" and (self.imaging != "roi" or self.baseline):
            raise ValueError(f"plan {self.name!r}: the mixed plan models both "
                             "visits per ROI; it has no composite and no baseline "
                             "covariate")
        if self.imaging != "roi" and self.rois is not None:
            raise ValueError(f"plan {self.name!r}: a composite uses every ROI; "
                             "rois does not apply")

    def roi_list(self, design) -> tuple[str, ...]:
        """Return the ROIs this plan tests in ``design`` (unknown ones: an error)."""
        names = design.roi_names if self.rois is None else self.rois
        unknown = [r for r in names if r not in design.roi_names]
        if unknown:
            raise ValueError(f"plan {self.name!r}: unknown ROI {unknown[0]!r}; the "
                             f"design's ROIs: {', '.join(design.roi_names)}")
        return tuple(names[:1]) if self.single else tuple(names)

    @property
    def estimand(self) -> str:
        """What the interaction of this plan estimates, in words."""
        x = {"roi": "the ROI's dMD", "composite-mean": "the ROIs' mean dMD",
             "composite-pc1": "the first principal component of the ROIs' dMD"
             }[self.imaging]
        if self.model == "ancova-md":
            x = "the ROI's follow-up MD (baseline MD held fixed)"
        unit = ("per 1e-5 mm^2/s" if self.imaging != "composite-pc1"
                else "per unit of the component (1e-5 mm^2/s)")
        adj = ", baseline score held fixed" if self.baseline else ""
        if self.model == "responder":
            return (f"difference between arms in the log odds ratio of response "
                    f"(50 % reduction) {unit} of {x}{adj}")
        if self.model == "mixed":
            return ("difference between arms in the slope of the score (points) "
                    f"{unit} of the ROI's MD at both visits (random intercept: "
                    "within and between participants combined)")
        return (f"difference between arms in the slope of score change (points) "
                f"{unit} of {x}{adj}")


READY: dict[str, Plan] = {
    "reported": Plan("reported", description="score change ~ arm x dMD + baseline "
                     "score, per ROI and outcome (the reported analysis)"),
    "change": Plan("change", baseline=False, description="score change ~ arm x "
                   "dMD, per ROI and outcome (no baseline covariate)"),
    "ancova-md": Plan("ancova-md", model="ancova-md", description="score change ~ "
                      "arm x follow-up MD + baseline MD + baseline score"),
    "composite-mean": Plan("composite-mean", imaging="composite-mean",
                           description="score change ~ arm x mean dMD over the "
                           "ROIs + baseline score, one test per outcome"),
    "composite-pc1": Plan("composite-pc1", imaging="composite-pc1",
                          description="score change ~ arm x first principal "
                          "component of dMD + baseline score, one test per outcome"),
    "primary-roi": Plan("primary-roi", single=True, description="score change ~ "
                        "arm x dMD + baseline score in one pre-registered ROI "
                        "(default the design's first)"),
    "responder": Plan("responder", model="responder", description="50 % reduction "
                      "(logistic) ~ arm x dMD + baseline score, per ROI and "
                      "outcome"),
    "mixed": Plan("mixed", model="mixed", baseline=False, description="score at "
                  "both visits ~ visit + MD + (1 | participant), each arm on its "
                  "own, the arms' MD slopes compared, per ROI and outcome"),
}
"""The ready-made plans (module docstring)."""


def _with_options(plan: Plan, options: Mapping, design, where: str) -> Plan:
    changes = {}
    for key, value in options.items():
        if key in ("multiplicity", "inference"):
            changes[key] = str(value)
        elif key == "roi":
            if plan.imaging != "roi":
                raise ValueError(f"{where}: roi does not apply to a composite")
            names = [value] if isinstance(value, str) else list(value)
            unknown = [r for r in names if r not in design.roi_names]
            if unknown:
                raise ValueError(f"{where}: unknown ROI {unknown[0]!r}; the "
                                 f"design's ROIs: {', '.join(design.roi_names)}")
            changes["rois"] = tuple(names)
        elif key == "description":
            changes["description"] = str(value)
        else:
            raise ValueError(f"{where}: unknown option {key!r}; expected "
                             "multiplicity, inference, roi or description")
    plan = dataclasses.replace(plan, **changes)
    if plan.single and "roi" in options:
        if len(plan.rois) != 1:
            raise ValueError(f"{where}: one pre-registered ROI; got "
                             f"{len(plan.rois)}")
        plan = dataclasses.replace(plan, name=f"{plan.name}:{plan.rois[0]}")
    return plan


def parse_plan(spec: str, design) -> Plan:
    """Return the plan of ``--plan`` text: ``NAME`` or ``NAME:key=value,...``.

    Examples
    --------
    >>> from dtitool.design import load_preset
    >>> d = load_preset("ketamine-rct")
    >>> parse_plan("primary-roi:roi=vACC", d).rois
    ('vACC',)
    >>> parse_plan("reported:multiplicity=holm", d).multiplicity
    'holm'
    """
    name, _, rest = str(spec).partition(":")
    name = name.strip()
    if name not in READY:
        raise ValueError(f"unknown plan {name!r}; expected one of "
                         f"{', '.join(READY)} (options after a colon: "
                         "NAME:key=value,...)")
    options = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--plan {spec!r}: options are key=value; got {item!r}")
        options[key.strip()] = value.strip()
    plan = _with_options(READY[name], options, design, f"--plan {spec!r}")
    if options and "roi" not in options:
        suffix = ",".join(f"{k}={v}" for k, v in options.items())
        plan = dataclasses.replace(plan, name=f"{plan.name}:{suffix}")
    return plan


def plan_from_dict(d: Mapping, design, where: str = "plans") -> Plan:
    """Return the plan of a ``[[plans]]`` table (``name``, ``base``, options)."""
    d = dict(d)
    name = d.pop("name", None)
    base = d.pop("base", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: every plan needs a name")
    if base not in READY:
        raise ValueError(f"{where} ({name!r}): base must be one of "
                         f"{', '.join(READY)}; got {base!r}")
    plan = _with_options(READY[base], d, design, f"{where} ({name!r})")
    return dataclasses.replace(plan, name=name)


def plans_from_file(path, design) -> list[Plan]:
    """Return the plans of a design file's ``[[plans]]`` tables (none: empty)."""
    import tomllib
    from pathlib import Path

    try:
        d = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read design file {str(path)!r}: {e}") from None
    tables = d.get("plans", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"design file {str(path)!r}: plans must be [[plans]] "
                         "tables")
    return [plan_from_dict(t, design, f"{path}: plans[{i}]")
            for i, t in enumerate(tables)]


def plan_to_dict(plan: Plan) -> dict:
    """Return the ``[[plans]]`` table that gives ``plan`` back (plan_from_dict)."""
    base = next(k for k, p in READY.items()
                if (p.model, p.baseline, p.imaging, p.single)
                == (plan.model, plan.baseline, plan.imaging, plan.single))
    d = {"name": plan.name, "base": base, "multiplicity": plan.multiplicity}
    if plan.model != "responder":
        d["inference"] = plan.inference
    if plan.rois is not None:
        d["roi"] = list(plan.rois)
    if plan.description != READY[base].description:
        d["description"] = plan.description
    return d
