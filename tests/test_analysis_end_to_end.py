"""End to end: the cohort simulator feeds the analysis unchanged."""

import numpy as np
import pandas as pd
import pytest

from dtitool import design, simulate
from dtitool.stats.analysis import fit_models


def test_simulated_cohort_analyses():
    cohort = simulate.simulate_cohort(design.load_preset("ketamine-rct"), rng=11)
    res = fit_models(cohort.participants, cohort.roi_md)
    assert len(res.table) == 56
    assert (res.table["n"] == len(cohort.participants)).all()
    assert np.isfinite(res.table[["estimate", "se", "p"]].to_numpy()).all()


def test_simulated_replicates_pick_one():
    cohort = simulate.simulate_cohort(
        design.load_preset("ketamine-rct"), rng=11, replicates=2
    )
    p, r = cohort.participants, cohort.roi_md
    with pytest.raises(ValueError, match=r"hold 2 replicates"):
        fit_models(p, r)
    reps = sorted(pd.unique(p["replicate"]))
    second = fit_models(p, r, replicate=reps[1])
    alone = fit_models(
        p[p["replicate"] == reps[1]].drop(columns="replicate"),
        r[r["replicate"] == reps[1]].drop(columns="replicate"),
    )
    pd.testing.assert_frame_equal(second.table, alone.table)
