"""Shared pytest fixtures: a headless matplotlib backend and closed figures, and
the world of inputs and outputs the adversarial tests start from."""

import matplotlib

matplotlib.use("Agg")

import signal

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def sigint_reaches_children():
    """Let the commands a test starts receive SIGINT.

    A shell starts background jobs with SIGINT ignored, and an ignored signal
    stays ignored across exec: a suite run that way (``.ci/run &``) would see
    every SIGINT test's command carry on. Handled here, it is reset to the
    default in the children, where Python turns it into KeyboardInterrupt.
    """
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="module")
def world_template(tmp_path_factory):
    """Inputs and an existing output folder (tests/_adversarial_world.py), built
    once per module: copy it (``world``) before changing it."""
    from _adversarial_world import build_world

    w = tmp_path_factory.mktemp("world") / "w"
    build_world(w)
    return w


@pytest.fixture
def world(world_template, tmp_path):
    """A fresh copy of the adversarial world for one test."""
    import shutil

    w = tmp_path / "w"
    shutil.copytree(world_template, w, symlinks=True)
    return w
