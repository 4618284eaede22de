"""What every notebook's first code cell calls: device, seeds, display.

Works the same locally and in Colab (CPU or GPU runtime).
"""

from __future__ import annotations

import os
import random
import sys

import torch

IN_COLAB = "google.colab" in sys.modules


def enable_colab_widgets() -> bool:
    """In Colab, switch the page to Colab's custom widget manager, without which ipywidgets 8 and
    third-party widgets (hint buttons, sliders, pickers) may not render; elsewhere do nothing.
    Returns whether it was switched on. The Colab cell does this too; calling it again is harmless."""
    if "google.colab" not in sys.modules:
        return False
    from google.colab import output

    output.enable_custom_widget_manager()
    return True


def device() -> str:
    """'cuda' when a GPU is usable, else 'cpu'; COURSE_DEVICE overrides ('meta': see `setup`)."""
    return os.environ.get("COURSE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def _play_a_gpu() -> None:
    """COURSE_DEVICE=meta: the rest of this process computes on `utils.second_device`'s stand-in for a
    GPU, so that the tests find a notebook mixing devices on a machine without one."""
    from utils.second_device import second_device

    global _STAND_IN
    if _STAND_IN is None:
        _STAND_IN = second_device()  # kept referenced: collecting it would leave the device
        _STAND_IN.__enter__()


_STAND_IN = None


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def interactive_view(fn, **controls):
    """`ipywidgets.interactive(fn, **controls)`: controls, and `fn`'s output redrawn when they change.

    Headless runs (tests, `python -m utils.grade`, nbgrader: COURSE_HEADLESS=1) build the same widget
    without drawing it up front: on a busy machine, nbclient can wait forever for a cell whose widget
    writes into an Output area as it is created.
    """
    import ipywidgets as widgets

    if os.environ.get("COURSE_HEADLESS"):
        return widgets.interactive(fn, {"manual": True}, **controls)
    return widgets.interactive(fn, **controls)


def setup(seed: int = 0) -> str:
    """Seed, pick the device, and print one line about the environment; returns the device."""
    seed_everything(seed)
    enable_colab_widgets()
    from utils.grading.guidance import install

    install()  # a skipped exercise's NameError / NotImplementedError says which exercise to do
    torch.set_grad_enabled(True)
    if not IN_COLAB and os.environ.get("COURSE_THREADS"):
        torch.set_num_threads(int(os.environ["COURSE_THREADS"]))
    where = "Colab" if IN_COLAB else "local"
    dev = device()
    if dev == "meta":
        _play_a_gpu()
    print(f"Course ready ({where}, device={dev}, torch {torch.__version__})")
    return dev
