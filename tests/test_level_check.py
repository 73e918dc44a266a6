"""analyze on real data says what a statistician would: the post-randomisation
caveat, and the estimated level of the pooled-variance test when the arms'
residual variances differ."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _adversarial_world import quiet_main

from dtitool import simulate_cohort
from dtitool.design import load_preset
from dtitool.stats.analysis import fit_models
from dtitool.stats.level_check import level_warning, ols_level


def _fit(design, n, rng):
    c = simulate_cohort(design.with_n(n), rng=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_models(c.participants, c.roi_md)


def test_estimated_level_matches_the_simulated_size_of_the_ols_test():
    # The null preset: the ketamine arm's score change varies more than the
    # saline arm's and it is the larger arm, so the pooled SE is too large and
    # the ols interaction test rejects well below 0.05. The estimate from one
    # large cohort against the rejection rate over 2,000 null trials at n = 98.
    from dtitool.simulate import simulate_arrays
    from dtitool.stats.inference import batch_models

    design = load_preset("null")
    level = ols_level(_fit(design, 98 * 20, 5))
    a = simulate_arrays(design, rng=6, stop=2000, lean=True)
    size = (batch_models(a, "ols").p[..., 0] <= 0.05).mean(axis=0)  # (J, K)
    got = level.set_index(["roi", "outcome"])["level"]
    for j, roi in enumerate(design.roi_names):
        for k, outcome in enumerate(design.outcome_names):
            se = np.sqrt(0.05 * 0.95 / 2000)
            assert got[(roi, outcome)] == pytest.approx(size[j, k], abs=4 * se + 0.005)
    assert level["off"].all()


def test_equal_variances_raise_no_warning():
    # the same variances in both arms: the pooled test keeps its level
    design = load_preset("null")
    outs = []
    for o in design.outcomes:
        sd = o.change_sd
        outs.append(o.__class__(**{**{f: getattr(o, f) for f in o.__slots__},
                                   "change_sd": sd.replace(saline=sd["ketamine"])}))
    rois = [r.__class__(**{**{f: getattr(r, f) for f in r.__slots__},
                           "change_sd": r.change_sd.replace(
                               saline=r.change_sd["ketamine"])})
            for r in design.rois]
    same = design.replace(outcomes=tuple(outs), rois=tuple(rois))
    res = _fit(same, 98 * 20, 7)
    t = ols_level(res)
    assert t["level"].between(0.04, 0.06).all()
    assert level_warning(res) is None


def test_analyze_prints_the_caveat_and_the_level_warning(tmp_path):
    data = tmp_path / "null"
    code, _, err = quiet_main(["simulate", "--preset", "null", "--seed", "2",
                               "--out", data, "--quiet"])
    assert code == 0, err
    code, out, err = quiet_main(["analyze", data, "--out", tmp_path / "r.tsv",
                                 "--inference", "ols"])
    assert code == 0, err
    assert "measured after randomisation" in out
    assert "pooled-variance (ols) interaction tests have an estimated level" in err
    assert "--inference welch" in err
    code, out, err = quiet_main(["analyze", data, "--out", tmp_path / "w.tsv",
                                 "--inference", "welch"])
    assert code == 0, err
    assert "measured after randomisation" in out
    assert "estimated level" not in err
