"""Time courses of imaging measures (dtitool.design.course) and the ECT presets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dtitool.design import PerArm, load_preset
from dtitool.design.course import CourseComponent, course_matrix, session_hours
from dtitool.design.io import design_from_dict, design_to_dict
from dtitool.simulate import simulate_arrays

ECT = load_preset("ect-course")


def _with_course(course, **extra):
    d = design_to_dict(ECT)
    d["rois"]["hippocampus"]["course"] = course
    d.update(extra)
    return design_from_dict(d)


def test_shapes_at_the_visits():
    v, s = ECT.visits, ECT.sessions
    arms = PerArm(ect=1.0, controls=0.0)
    sd = PerArm(ect=0.0, controls=0.0)
    g = course_matrix([
        CourseComponent("step", arms, sd, start="session6"),
        CourseComponent("linear", arms, sd),
        CourseComponent("emax", arms, sd, ed50=4.0),
        CourseComponent("transient", arms, sd, half_life_hours=24.0),
    ], v, s)
    np.testing.assert_array_equal(g[0], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(g[1], [0, 1, 6, 12, 12])
    np.testing.assert_allclose(g[2], [0, 1 / 5, 6 / 10, 12 / 16, 12 / 16])
    # 2 h after session 1: one session, 2 h old
    assert g[3, 1] == pytest.approx(2 ** (-2 / 24))
    # a day after session 6: sessions at 0, 56, ..., 280 h, visit at 304 h
    want = sum(2 ** (-(304 - 56 * k) / 24) for k in range(6))
    assert g[3, 2] == pytest.approx(want)
    assert g[3, 0] == 0 and g[3, 4] < 1e-27  # nothing before, gone 3 months on


def test_sessions_and_doses_checked():
    assert session_hours({"sessions": 3, "every_hours": 48}) == (0.0, 48.0, 96.0)
    assert session_hours({"session_hours": [0, 10]}) == (0.0, 10.0)
    with pytest.raises(ValueError, match=r"treatment.session_hours.*must increase"):
        session_hours({"session_hours": [5, 1]})
    with pytest.raises(ValueError, match=r"unknown key treatment\.every"):
        session_hours({"sessions": 2, "every": 3})
    d = design_to_dict(ECT)
    d["visits"][2]["dose"] = 5
    with pytest.raises(ValueError, match=r"visits.session6.dose.*must be 6"):
        design_from_dict(d)


def test_course_errors_name_the_key():
    d = design_to_dict(ECT)
    d["rois"]["hippocampus"]["change_mean"] = {"ect": 0.0, "controls": 0.0}
    with pytest.raises(ValueError, match=r"rois.hippocampus gives change_mean and a "
                       "course"):
        design_from_dict(d)
    with pytest.raises(ValueError, match="needs ed50"):
        _with_course([{"shape": "emax", "mean": 1e-6, "sd": 0.0}])
    with pytest.raises(ValueError, match=r"course\[0\].*unknown key.*|unknown key "
                       r"rois.hippocampus.course\[0\].half_life"):
        _with_course([{"shape": "transient", "half_life": 3, "mean": 0, "sd": 0}])
    with pytest.raises(ValueError, match="must be one of step, linear, emax"):
        _with_course([{"shape": "sigmoid", "mean": 0, "sd": 0}])
    with pytest.raises(ValueError, match="must name a follow-up visit"):
        _with_course([{"shape": "step", "start": "week9", "mean": 0, "sd": 0}])


def test_round_trip_and_derived_change():
    for name in ("ect-course", "ect-plasticity", "ect-inflammation"):
        d = load_preset(name)
        assert design_from_dict(design_to_dict(d)) == d
    # the ROI's change is the course's at the primary visit (end: 12 sessions)
    r = ECT.rois[0]
    assert r.change_mean["ect"] == pytest.approx(-1.1e-6 * 12)
    assert r.change_sd["ect"] == pytest.approx(0.8e-6 * 12)
    p = load_preset("ect-plasticity").rois[0]
    assert p.change_mean["ect"] == pytest.approx(-1.7e-5 * 12 / 16)


def test_trajectories_are_the_courses_exactly():
    """True MD: baseline + amplitude x shape, each participant's own."""
    d = _with_course([
        {"shape": "linear", "mean": {"ect": -1e-6, "controls": 0.0},
         "sd": {"ect": 5e-7, "controls": 0.0}},
        {"shape": "transient", "half_life_hours": 24,
         "mean": {"ect": 2e-5, "controls": 0.0}, "sd": {"ect": 1e-5, "controls": 0.0}},
    ])
    a = simulate_arrays(d, rng=5, stop=3)
    true = a.md_true[:, :, 0, :] - a.md_true[:, :, 0, :1]  # change from baseline
    g = course_matrix(d.courses["hippocampus", "md"], d.visits, d.sessions)
    # two amplitudes per participant solve the five visits' changes exactly
    amp, res, *_ = np.linalg.lstsq(g[:, 1:].T, true.reshape(-1, 5)[:, 1:].T,
                                   rcond=None)
    assert np.abs(res).max() < 1e-20
    ect = (a.arm == d.arms.index("ect")).reshape(-1)
    assert amp[0, ect].mean() == pytest.approx(-1e-6, abs=4e-7)
    assert np.all(amp[:, ~ect] == 0)  # the controls' SDs are 0 here
    # the observed values add each scan's noise (cv x mean)
    noise = (a.md - a.md_true)[:, :, 0, :]
    assert noise.std() == pytest.approx(d.rois[0].noise_sd, rel=0.15)


def test_designs_without_courses_keep_their_values():
    """The course machinery changes nothing for a design without a course."""
    d = load_preset("ketamine-rct")
    a = simulate_arrays(d, rng=3, stop=2)
    b = simulate_arrays(d.replace(sessions=(), courses={}), rng=3, stop=2)
    np.testing.assert_array_equal(a.md, b.md)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_per_arm_baseline_for_a_healthy_group():
    a = simulate_arrays(ECT, rng=1, stop=50)
    ect = a.arm == ECT.arms.index("ect")
    base = a.scores[:, :, 0, 0]
    assert base[ect].min() >= 20  # patients admitted at MADRS >= 20
    assert base[~ect].mean() == pytest.approx(2.4, abs=0.3)  # controls near 2
    assert base[ect].mean() == pytest.approx(33.5, abs=1.0)
    d = design_to_dict(ECT)
    d["outcomes"]["madrs"]["change_model"] = "logit"
    with pytest.raises(ValueError, match=r'baseline_mean.*only with change_model = '
                       '"additive"'):
        design_from_dict(d)


def test_scenarios_differ_in_the_expected_direction():
    """Plasticity: MD down and kept; inflammation: up after sessions, gone later."""
    means = {}
    for name in ("ect-plasticity", "ect-inflammation"):
        d = load_preset(name)
        a = simulate_arrays(d, rng=2, stop=200)
        ect = a.arm == d.arms.index("ect")
        means[name] = a.md[:, :, 0, :][ect].mean(axis=0)
    p, i = means["ect-plasticity"], means["ect-inflammation"]
    assert p[4] < p[0] - 5e-6 and abs(p[4] - p[3]) < 2e-6  # lasting fall
    assert i[1] > i[0] + 5e-6 and abs(i[4] - i[0]) < 2e-6  # transient rise
    assert math.isclose(p[0], i[0], rel_tol=1e-3)
