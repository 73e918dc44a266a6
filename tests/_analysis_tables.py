"""Planted-effect participants / roi_md tables for the analysis tests.

Not a conftest: imported by tests/test_tables.py, test_analysis.py, test_plots.py,
test_reference.py and test_cmd_analyze.py.
"""

import numpy as np
import pandas as pd

from dtitool.design.layout import TrialNames
from dtitool.tables import NAMES_ATTR

ROI_NAMES = ("L_BA10", "R_BA10", "L_amygdala", "R_amygdala", "L_hippocampus",
             "R_hippocampus", "vACC")
NAMES = TrialNames(arms=("ketamine", "saline"), control="saline",
                   visits=("baseline", "24h"))
"""The names of the planted tables (those of the default preset)."""

# Planted slopes (score points per 1e-5 mm^2/s dMD) per ROI, outcome and arm.
PLANTED = {
    ("L_BA10", "madrs"): (1.5, 0.0),
    ("L_BA10", "qids"): (0.6, 0.0),
    ("R_BA10", "madrs"): (1.0, 1.0),
    ("L_hippocampus", "madrs"): (-1.2, 0.0),
}
BASELINE_COEF = {"madrs": -0.3, "qids": -0.2}


def make_tables(
    *,
    n_ketamine=65,
    n_saline=33,
    seed=0,
    rois=ROI_NAMES,
    planted=None,
    noise=(2.0, 1.0),
    missing_24h=(),
):
    """Return (participants, roi_md) with known per-arm slopes.

    The score change of each outcome is built from the dMD of the ROIs named in
    ``planted`` (other ROIs carry independent dMD, so their slopes are zero),
    plus ``BASELINE_COEF * (baseline - mean)`` and normal noise, then rounded.
    ``missing_24h`` lists (participant index, roi) whose 24 h scan is dropped.
    """
    planted = PLANTED if planted is None else planted
    rng = np.random.default_rng(seed)
    n = n_ketamine + n_saline
    ids = [f"sub-{i:03d}" for i in range(1, n + 1)]
    group = np.array(["ketamine"] * n_ketamine + ["saline"] * n_saline)
    ket = group == "ketamine"
    base = {
        "madrs": rng.integers(26, 42, n).astype(float),
        "qids": rng.integers(14, 22, n).astype(float),
    }
    md0 = {r: rng.normal(0.85e-3, 0.04e-3, n) for r in rois}
    dmd = {r: rng.normal(0.0, 2e-5, n) for r in rois}
    post = {}
    for k, sd in zip(("madrs", "qids"), noise, strict=True):
        d = -6.0 + BASELINE_COEF[k] * (base[k] - base[k].mean())
        d = d + rng.normal(0.0, sd, n)
        for (roi, kk), (s_k, s_s) in planted.items():
            if kk == k and roi in dmd:
                d = d + np.where(ket, s_k, s_s) * dmd[roi] / 1e-5
        post[k] = base[k] + np.round(d)
    if not (post["madrs"].min() >= 0 and post["madrs"].max() <= 60):
        raise RuntimeError("planted MADRS left the scale; change the seed")
    if not (post["qids"].min() >= 0 and post["qids"].max() <= 27):
        raise RuntimeError("planted QIDS left the scale; change the seed")
    participants = pd.DataFrame(
        {
            "participant_id": ids,
            "group": group,
            "madrs_baseline": base["madrs"].astype(int),
            "madrs_24h": post["madrs"].astype(int),
            "qids_baseline": base["qids"].astype(int),
            "qids_24h": post["qids"].astype(int),
            "age": rng.integers(20, 65, n),
            "sex": rng.choice(["F", "M"], n),
        }
    )
    frames = []
    for r in rois:
        frames.append(
            pd.DataFrame(
                {"participant_id": ids, "session": "baseline", "roi": r,
                 "md": md0[r]}
            )
        )
        frames.append(
            pd.DataFrame(
                {"participant_id": ids, "session": "24h", "roi": r,
                 "md": md0[r] + dmd[r]}
            )
        )
    roi_md = pd.concat(frames, ignore_index=True)
    drop = [
        (roi_md["participant_id"] == ids[i])
        & (roi_md["roi"] == r)
        & (roi_md["session"] == "24h")
        for i, r in missing_24h
    ]
    if drop:
        roi_md = roi_md.loc[~np.logical_or.reduce(drop)].reset_index(drop=True)
    participants.attrs[NAMES_ATTR] = NAMES  # the tables carry their names
    return participants, roi_md
