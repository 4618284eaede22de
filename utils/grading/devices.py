"""Grading runs on the CPU, on every machine, so a check's verdict cannot depend on the device.

Graders use small seeded inputs, so the CPU costs nothing, and it removes two ways a GPU breaks
grading: tensors on two devices meeting inside a grader, and a CUDA fault (a device-side assert from
an out-of-range index) that leaves the CUDA context unusable for every later cell. While learner code
runs under a check, `cpu_only()` stops it at the first step towards another device, with a message
that says what happened, so no GPU work is ever started by a check: the same function gets the same
verdict and feedback on a laptop and on Colab's GPU runtime.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

GRADING_DEVICE = torch.device("cpu")

HARD_CODED_HINT = ("Don't choose a device inside the function: create new tensors where its inputs are, "
                   "e.g. torch.zeros(n, device=x.device) or torch.arange(n, device=x.device), and leave "
                   "moving data between devices to the caller.")
GLOBAL_HINT = ("Use only the function's arguments: a tensor or model from elsewhere in your notebook (here on "
               "the GPU) is not what the docstring describes. Pass it in, or create it inside on x.device.")


class OtherDevice(RuntimeError):
    """Learner code tried to use a device other than the CPU the check runs on."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


class _StayOn(TorchFunctionMode):
    MOVES = {torch.Tensor.to, torch.Tensor.type}

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.allowed = {"cpu", device.type}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            raise OtherDevice(f"your function calls .cuda(), but the check runs it on {self.where}", HARD_CODED_HINT)
        if kwargs.get("device") is not None:
            self._refuse_device(kwargs["device"], func)
        if func in self.MOVES:
            for value in args[1:]:
                self._refuse_device(value, func)
        for value in (*args, *kwargs.values()):  # every op runs through here: kept cheap
            if isinstance(value, torch.Tensor):
                self._refuse_tensor(value, func)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, torch.Tensor):
                        self._refuse_tensor(item, func)
        return func(*args, **kwargs)

    def _refuse_device(self, value: Any, func) -> None:
        device = _device_of(value)
        if device is not None and device.type not in self.allowed:
            raise OtherDevice(f"your function asks for device {str(device)!r} (in {_name(func)}), but the check "
                              f"runs it on {self.where}", HARD_CODED_HINT)

    def _refuse_tensor(self, value: torch.Tensor, func) -> None:
        if value.device.type not in self.allowed:
            raise OtherDevice(f"your function used a tensor on {value.device} that the check did not give it "
                              f"(in {_name(func)}); the check's inputs are on {self.where}", GLOBAL_HINT)

    @property
    def where(self) -> str:
        return "CPU tensors" if self.device.type == "cpu" else f"tensors on {self.device}"


@contextlib.contextmanager
def stay_on(device: torch.device | str) -> Iterator[None]:
    """Within the block, a step towards any device but the CPU and `device` raises OtherDevice, before any
    work starts there."""
    with _StayOn(torch.device(device)):
        yield


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _device_of(value: Any) -> torch.device | None:
    if isinstance(value, torch.device):
        return value
    if isinstance(value, str):
        if "cuda" in value and value.startswith("torch."):  # x.type("torch.cuda.FloatTensor")
            return torch.device("cuda")
        if value.split(":")[0] in ("cuda", "mps", "xpu", "meta", "cpu"):
            return torch.device(value)
    if isinstance(value, int) and not isinstance(value, bool):  # x.to(0) means cuda:0
        return torch.device("cuda", value)
    return None


# What a failed run on the stand-in GPU says when the function handles devices wrongly (anything else is
# not this module's business: the CPU grading has already said what it had to say).
_DEVICE_TROUBLE = ("same device", "device type for generator", "indices should be", "expected a tensor on",
                   "to numpy", "asks for device", "calls .cuda()")


PROBED_UP_TO = 10.0  # seconds of time limit: the default; heavier exercises are not probed


def gpu_note(exercise, fn) -> str:
    """After a pass on the CPU: '' if `fn` keeps to its inputs' device, else what would go wrong on a GPU.

    The first case runs again with its inputs on `utils.second_device`'s stand-in for a GPU, the same on
    every machine, so the note does not depend on whether there is a GPU (and starts no GPU work).
    Exercises declared slow (a time limit above the default) skip it: it would double a long check."""
    from utils.second_device import second_device

    if exercise.timeout > PROBED_UP_TO:
        return ""
    from .checker import grade

    with second_device() as gpu:
        result = grade(exercise, fn, device=gpu, stop_after=1)
    if result.passed or not any(t in result.failure.detail for t in _DEVICE_TROUBLE):
        return ""
    detail = re.sub(r"\bmeta\b", "GPU", result.failure.detail.replace("; the second device stands in for a GPU", "")
                    .replace(" (the second device stands in for a GPU)", ""))
    return (f"⚠ but with its inputs on a GPU (as in a notebook on Colab's GPU runtime) it would fail:\n"
            + "\n".join("    " + line for line in detail.splitlines())
            + f"\n  Hint: {HARD_CODED_HINT}")
