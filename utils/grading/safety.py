"""Run learner code so that no mistake in it can crash or hang the grader.

Three guards: a time limit (CPU time, so an infinite loop becomes a failed
check, and a busy machine does not), exception capture (reported as the learner's own line, not ours), and
a snapshot of every input so in-place edits are caught and undone.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

_GRADER_DIRS = (str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "second_device.py"))


class TimeLimitReached(BaseException):
    """Raised inside learner code by the alarm; a BaseException so `except Exception` can't swallow it.

    `wall` says which limit stopped the code: False for the CPU-time limit (it kept computing), True for the
    wall-clock backstop (it used little CPU: it waited, or the machine starved it); `cpu_seconds` is the
    CPU time the block had used by then."""

    def __init__(self, wall: bool = False, cpu_seconds: float = 0.0):
        super().__init__()
        self.wall, self.cpu_seconds = wall, cpu_seconds


# A busy neighbour slows the wall clock, not the work: the limit counts the CPU time the
# process uses, and a wall-clock limit this many times longer catches code that sleeps or
# waits instead of computing.
WALL_FACTOR = 4
RETRY_SECONDS = 0.05  # after the limit: how often to raise again if learner code swallowed it


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block once it has used `seconds` of CPU time (or `WALL_FACTOR` times that in
    wall-clock time), where the platform allows it (main thread, POSIX).

    Once the limit is reached, learner code is interrupted at every line it runs, so even a bare
    `except:` around the loop cannot swallow it for long.
    """
    usable = (seconds and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    state = {"expired": False, "inside": True, "wall": False, "cpu": 0.0}
    started = time.process_time()

    def reached() -> TimeLimitReached:
        return TimeLimitReached(wall=state["wall"], cpu_seconds=state["cpu"])

    def interrupt_learner_lines(frame, event, arg):
        if (event in ("line", "call") and state["expired"] and state["inside"]
                and not _is_ours(frame.f_code.co_filename)):
            raise reached()
        return interrupt_learner_lines

    def on_limit(signum, frame):
        # Python runs this handler between bytecodes, possibly after the block has ended: then it
        # must do nothing (raising or re-arming there would break whatever runs next).
        if not state["inside"]:
            return
        # Raising from a tracer switches tracing off, so each retry installs it again, on the
        # learner's frames only (those above the grader's own).
        if not state["expired"]:  # the first alarm says which limit it was (retries come from the wall clock)
            state["wall"], state["cpu"] = signum == signal.SIGALRM, time.process_time() - started
        state["expired"] = True
        sys.settrace(interrupt_learner_lines)
        while frame is not None and not _is_ours(frame.f_code.co_filename):
            frame.f_trace, frame.f_trace_lines = interrupt_learner_lines, True
            frame = frame.f_back
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        raise reached()

    previous = {sig: signal.signal(sig, on_limit) for sig in (signal.SIGALRM, signal.SIGPROF)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * WALL_FACTOR)
    try:
        yield
    finally:
        while state["inside"]:  # a retry may still interrupt us here, once; after this line the handler is inert
            try:
                state["inside"] = False
            except TimeLimitReached:
                continue
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        if state["expired"]:
            sys.settrace(None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_ctrl_c = {"pressed": False}


@contextlib.contextmanager
def noticing_ctrl_c() -> Iterator[None]:
    """Tell a real Ctrl-C (or the kernel's interrupt button) from learner code that raises
    KeyboardInterrupt itself: only the first should stop a check."""
    _ctrl_c["pressed"] = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        _ctrl_c["pressed"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ctrl_c_pressed() -> bool:
    return _ctrl_c["pressed"]


def _is_ours(filename: str) -> bool:
    return filename.startswith(_GRADER_DIRS) or filename == contextlib.__file__


def learner_frame(exc: BaseException) -> str:
    """The deepest traceback line that is not in the grader, e.g. 'line 7, in attention: x = q @ k'."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(_GRADER_DIRS) and "site-packages" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    where = "your notebook" if f.filename.startswith("<") or "ipykernel" in f.filename else Path(f.filename).name
    code = f" → {f.line.strip()}" if f.line else ""
    return f"at line {f.lineno} of {where}, in {f.name}{code}"


# -- snapshots: catching in-place edits ------------------------------------------------

def snapshot(value: Any) -> Any:
    """A detached copy of every tensor (and module state) inside `value`."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value) if isinstance(value, list) else tuple(snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return value


def changed(before: Any, after: Any) -> bool:
    """Whether `after` no longer equals its snapshot `before`."""
    if isinstance(after, torch.Tensor):
        return not _same_tensor(before, after)
    if isinstance(after, nn.Module):
        state = after.state_dict()
        return set(state) != set(before) or any(not _same_tensor(before[k], state[k]) for k in before)
    if isinstance(after, (list, tuple)):
        return len(before) != len(after) or any(changed(b, a) for b, a in zip(before, after))
    if isinstance(after, dict):
        return set(before) != set(after) or any(changed(before[k], after[k]) for k in after)
    return False


def restore(before: Any, after: Any) -> None:
    """Undo in-place edits, so the reference sees the inputs the learner was given."""
    with torch.no_grad():
        if isinstance(after, torch.Tensor) and after.shape == before.shape:
            after.copy_(before)
        elif isinstance(after, nn.Module):
            after.load_state_dict(before)
        elif isinstance(after, list):
            after[:] = [fresh(b) for b in before]
        elif isinstance(after, tuple):
            for b, a in zip(before, after):
                restore(b, a)
        elif isinstance(after, dict):
            after.clear()
            after.update({k: fresh(v) for k, v in before.items()})


def fresh(value: Any) -> Any:
    """An independent copy of arguments, so each call gets untouched inputs."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, list):
        return [fresh(v) for v in value]
    if isinstance(value, tuple):
        return tuple(fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    return value  # modules and other objects are shared; snapshots guard them


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.to(b.device), b.detach()))


def guarded_call(fn: Callable, args: tuple, kwargs: dict, *, timeout: float) -> Any:
    """Call `fn`; its exceptions and time-outs propagate untouched for the caller to classify."""
    with time_limit(timeout):
        return fn(*args, **kwargs)
