"""The Colab simulation is slow (a virtual environment of Colab's packages per Python version, torch
among them): it runs only when asked, `python3 course.py colab` (COURSE_COLAB=1). The quick tests
beside it (the cell's decisions, utils/colab.py's messages) carry no `colab` mark and always run."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("COURSE_COLAB") == "1":
        return
    skip = pytest.mark.skip(reason="the Colab simulation runs with `python3 course.py colab` (COURSE_COLAB=1)")
    for item in items:
        if item.get_closest_marker("colab"):  # the mark, not the folder's name, which every test here has
            item.add_marker(skip)
