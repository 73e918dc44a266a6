"""Designs with names of their own, for tests that check nothing assumes the defaults.

Not a conftest: import what you need (``from _designs import drug_placebo``).
Every name here differs from the ``ketamine-rct`` preset's, so a default name
found in an output is a bug (:data:`DEFAULT_NAMES` lists them).
"""

from dtitool.design import design_from_dict

DEFAULT_NAMES = ("ketamine", "saline", "baseline", "24h", "madrs", "qids",
                 "L_BA10", "R_BA10", "L_amygdala", "R_amygdala", "L_hippocampus",
                 "R_hippocampus", "vACC", "MADRS", "QIDS")
"""Names of the default preset that a design of other names must never show."""

ARMS = ("drug", "placebo")
VISITS = ("pre", "week1")
OUTCOMES = ("hamd", "bdi")
ROIS = ("thalamus", "putamen")


def drug_placebo_dict(*, n: int = 60, missing: dict | None = None) -> dict:
    """A schema-2 design dict: arms drug/placebo (control placebo) at 1:1,
    visits pre/week1 (primary week1, 168 h), outcomes hamd (HAM-D17) and bdi
    (BDI-II), ROIs thalamus and putamen, MD only.
    """
    def roi(md):
        return {"md_mean": md, "md_sd": 0.04 * md, "cv": 0.02,
                "change_mean": {"drug": -1.0e-5, "placebo": 0.0},
                "change_sd": {"drug": 2.0e-5, "placebo": 0.5e-5}}

    return {
        "schema": 2,
        "name": "drug-placebo",
        "description": ("two-arm trial of a drug against placebo, one week apart, "
                        "with names of its own (estimates for teaching)"),
        "trial": {"n": n, "allocation": {"drug": 1, "placebo": 1},
                  "control": "placebo", "block_size": 4},
        "visits": [{"name": "pre", "hours": 0},
                   {"name": "week1", "hours": 168, "primary": True}],
        "rois": {"thalamus": roi(0.75e-3), "putamen": roi(0.70e-3)},
        "outcomes": {
            "hamd": {"scale": "HAM-D17", "scale_min": 0, "scale_max": 52,
                     "baseline_mean": 24.0, "baseline_sd": 4.0,
                     "inclusion_min": 18,
                     "change_mean": {"drug": -8.0, "placebo": -3.0},
                     "change_sd": {"drug": 6.0, "placebo": 5.0},
                     "reliability": 0.9, "remission_max": 7},
            "bdi": {"scale": "BDI-II", "scale_min": 0, "scale_max": 63,
                    "baseline_mean": 30.0, "baseline_sd": 8.0,
                    "inclusion_min": 20,
                    "change_mean": {"drug": -10.0, "placebo": -4.0},
                    "change_sd": {"drug": 8.0, "placebo": 6.0},
                    "reliability": 0.85},
        },
        "correlations": {
            "roi_baseline": 0.3,
            "roi_change": [[1.0, 0.3], [0.3, 1.0]],
            "outcome_baseline": 0.5,
            "outcome_change": [[1.0, 0.6], [0.6, 1.0]],
            # arm -> outcome -> ROI (zero where not given)
            "roi_outcome": {"drug": {"hamd": {"thalamus": 0.3, "putamen": 0.1},
                                     "bdi": {"thalamus": 0.2, "putamen": 0.1}},
                            "placebo": {}},
        },
        "covariates": {"age_mean": 40.0, "age_sd": 12.0, "age_min": 18,
                       "age_max": 65, "female": 0.6},
        "missing": missing or {"mechanism": "none"},
    }


def drug_placebo(**kwargs):
    """:func:`drug_placebo_dict` as a StudyDesign."""
    return design_from_dict(drug_placebo_dict(**kwargs))


def drug_placebo_measures_dict(*, n: int = 60) -> dict:
    """:func:`drug_placebo_dict` with FA in the thalamus (its change going with
    the thalamus's MD change and, in the drug arm, with HAM-D change) and volume
    in the putamen (a change with no link to anything)."""
    d = drug_placebo_dict(n=n)
    d["rois"]["thalamus"]["measures"] = {"fa": {
        "mean": 0.35, "sd": 0.03, "cv": 0.02,
        "change_mean": {"drug": 0.005, "placebo": 0.0},
        "change_sd": {"drug": 0.01, "placebo": 0.002},
        "md_correlation": -0.4, "outcome_correlation": {"drug": {"hamd": -0.3}}}}
    d["rois"]["putamen"]["measures"] = {"volume": {
        "mean": 5000.0, "sd": 500.0, "cv": 0.01,
        "change_mean": {"drug": 50.0, "placebo": 0.0},
        "change_sd": {"drug": 40.0, "placebo": 5.0}}}
    return d
