"""Shared pytest fixtures: a headless matplotlib backend and closed figures, and
the world of inputs and outputs the adversarial tests start from."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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
