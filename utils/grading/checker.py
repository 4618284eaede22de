"""The `check` object every grader receives: the candidate, injected.

A grader is a pytest-style function `test_<name>(check)`. It builds inputs
with `check.rng`, then calls `check.case(...)` (compare the candidate with the
reference on the same inputs) or `check.expect(...)` (a property that must
hold). Pytest injects a `check` holding the reference (see conftest.py);
`check(fn)` in a notebook injects the learner's function.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._pytree import tree_map

from .devices import OtherDevice, stay_on
from .compare import difference, generic_diagnosis, locate_difference
from .feedback import (PASSED, CheckFailed, LearnerError, LearnerTimeout, NotAttempted, Result)
from .registry import Exercise, Mistake
from .safety import (TimeLimitReached, changed, ctrl_c_pressed, fresh, guarded_call, learner_frame,
                     noticing_ctrl_c, restore, snapshot)


class Checker:
    def __init__(self, exercise: Exercise, candidate: Callable, *, device: str | torch.device = "cpu",
                 seed: int = 0, stop_after: int | None = None):
        self.exercise = exercise
        self.stop_after = stop_after
        self.candidate = candidate
        self.reference = exercise.reference
        self.device = torch.device(device)
        self.rng = torch.Generator().manual_seed(seed)
        self.cases_passed = 0

    # -- inputs -------------------------------------------------------------------
    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        """Seeded standard-normal inputs on the checker's device."""
        return (torch.randn(*shape, generator=self.rng) * scale).to(self.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.rng).to(self.device)

    def generator(self, seed: int) -> torch.Generator:
        """A seeded generator for the checker's device (for exercises that take one)."""
        return torch.Generator(device=self.device).manual_seed(seed)

    # -- calling learner code ---------------------------------------------------------
    def call(self, fn: Callable, *args: Any, case: str = "", **kwargs: Any) -> Any:
        """Call learner code `fn` under the guards: time limit, errors, in-place edits."""
        before = snapshot((args, kwargs))
        try:
            with stay_on(self.device):
                out = guarded_call(fn, args, kwargs, timeout=self.exercise.timeout)
        except OtherDevice as exc:
            where = learner_frame(exc)
            raise LearnerError(str(exc) + (f"\n{where}" if where else ""), exercise=self.exercise.id, case=case,
                               hint=exc.hint) from None
        except NotImplementedError:
            raise NotAttempted("the function still raises NotImplementedError: replace the stub with your code",
                               exercise=self.exercise.id, case=case) from None
        except TimeLimitReached:
            raise LearnerTimeout(
                f"your code did not finish within {self.exercise.timeout:g} s",
                exercise=self.exercise.id, case=case,
                hint=self.exercise.timeout_hint or "Look for a loop that never ends, or a loop over every "
                     "element where one tensor operation would do.") from None
        except KeyboardInterrupt as exc:
            if ctrl_c_pressed():
                raise
            raise LearnerError(_escape_message(exc), exercise=self.exercise.id, case=case,
                               hint=_escape_hint(exc)) from None
        except SystemExit as exc:
            raise LearnerError(_escape_message(exc), exercise=self.exercise.id, case=case,
                               hint=_escape_hint(exc)) from None
        except Exception as exc:  # learner code may raise anything
            where = learner_frame(exc)
            raise LearnerError(f"{type(exc).__name__}: {exc}" + (f"\n{where}" if where else ""),
                               exercise=self.exercise.id, case=case,
                               hint=_hint_for_exception(exc)) from None
        if changed(before, (args, kwargs)):
            names = self._mutated_names(before, args, kwargs)
            restore(before, (args, kwargs))
            raise CheckFailed(f"your function changed its input {names} in place",
                              exercise=self.exercise.id, case=case,
                              hint="Build a new tensor instead of editing the argument: avoid `x -= ...`, "
                                   "`x[...] = ...` and methods ending in `_` on inputs (or `.clone()` first).",
                              mistake="in-place edit")
        return out

    def run(self, *args: Any, case: str = "", **kwargs: Any) -> Any:
        """The candidate's output on these inputs (guarded)."""
        args, kwargs = self.on_device((args, kwargs))
        return self.call(self.candidate, *args, case=case, **kwargs)

    def on_device(self, value: Any) -> Any:
        """`value` with every tensor inside on the checker's device: a grader may build an input on the
        CPU (torch.tensor, a reference helper), and the candidate always gets all of them on one device."""
        return tree_map(lambda v: v.detach().to(self.device).requires_grad_(v.requires_grad)
                        if isinstance(v, torch.Tensor) and v.device != self.device else v, value)

    # -- comparing -----------------------------------------------------------------
    def case(self, name: str, *args: Any, hint: str = "", mistakes: Iterable[Mistake] = (),
             atol: float | None = None, rtol: float | None = None, check_dtype: bool = True,
             **kwargs: Any) -> Any:
        """Run candidate and reference on the same inputs and require equal outputs."""
        args, kwargs = self.on_device((args, kwargs))
        got = self.run(*fresh(args), case=name, **fresh(kwargs))
        expected = self.reference(*fresh(args), **fresh(kwargs))
        self.compare(got, expected, case=name, hint=hint, mistakes=mistakes, inputs=(args, kwargs),
                     atol=atol, rtol=rtol, check_dtype=check_dtype)
        return got

    def compare(self, got: Any, expected: Any, *, case: str, hint: str = "", mistakes: Iterable[Mistake] = (),
                inputs: tuple[tuple, dict] | None = None, atol: float | None = None,
                rtol: float | None = None, check_dtype: bool = True) -> None:
        atol = self.exercise.atol if atol is None else atol
        rtol = self.exercise.rtol if rtol is None else rtol
        detail = difference(got, expected, atol=atol, rtol=rtol, check_dtype=check_dtype)
        if detail is None:
            self._passed_one()
            return
        mistake = self._diagnose(got, mistakes, inputs, atol, rtol, check_dtype) if inputs else None
        if mistake is None and (generic := generic_diagnosis(got, expected, atol=atol, rtol=rtol)):
            mistake = Mistake(generic[0], f"{generic[1]} {hint}".strip(), output=lambda *a, **k: None)
        if mistake is None and not hint:  # nothing foreseen: say where it differs, else give the first nudge
            hint = locate_difference(got, expected, atol=atol, rtol=rtol) or (
                f"Compare your code with the docstring once more. {self.exercise.hints[0]}"
                if self.exercise.hints else "")
        raise CheckFailed(detail, exercise=self.exercise.id, case=case,
                          hint=mistake.hint if mistake else hint,
                          mistake=mistake.name if mistake else None)

    def expect(self, ok: bool, *, case: str, message: str, hint: str = "", mistake: str | None = None) -> None:
        """Require a property of the candidate's behaviour."""
        if not ok:
            raise CheckFailed(message, exercise=self.exercise.id, case=case, hint=hint, mistake=mistake)
        self._passed_one()

    def _passed_one(self) -> None:
        self.cases_passed += 1
        if self.stop_after is not None and self.cases_passed >= self.stop_after:
            raise _Enough()

    def _diagnose(self, got, mistakes, inputs, atol, rtol, check_dtype) -> Mistake | None:
        args, kwargs = inputs
        for mistake in mistakes:
            try:  # the learner waits for this too: no longer than for their own code
                wrong = guarded_call(mistake.output, fresh(args), fresh(kwargs), timeout=self.exercise.timeout)
            except (Exception, TimeLimitReached):  # a diagnosis that doesn't apply (or can't in time)
                continue
            if difference(got, wrong, atol=atol, rtol=rtol, check_dtype=check_dtype) is None:
                return mistake
        return None

    def _mutated_names(self, before, args, kwargs) -> str:
        try:
            bound = inspect.signature(self.reference).bind(*args, **kwargs).arguments
            before_bound = inspect.signature(self.reference).bind(*before[0], **before[1]).arguments
            names = [n for n in bound if changed(before_bound[n], bound[n])]
            return ", ".join(f"`{n}`" for n in names) or "(an argument)"
        except (TypeError, ValueError):
            return "(an argument)"


class _Enough(Exception):
    """Raised by a checker with `stop_after` once that many cases have passed."""


def _escape_message(exc: BaseException) -> str:
    name = "sys.exit()" if isinstance(exc, SystemExit) else "KeyboardInterrupt"
    where = learner_frame(exc)
    return f"your code raised {name}, which would stop the whole check" + (f"\n{where}" if where else "")


def _escape_hint(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "Return a value (or raise an ordinary exception) instead of calling exit(), quit() or sys.exit()."
    return "Raise an ordinary exception (e.g. ValueError) instead of KeyboardInterrupt, which means Ctrl-C."


def _hint_for_exception(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, RuntimeError) and any(w in text for w in ("size of tensor", "size of the tensor", "shape",
                                                                  "mat1 and mat2", "dimension")):
        return "A shape mismatch: print the shapes of the tensors on that line and compare them with the docstring."
    if isinstance(exc, RuntimeError) and "Expected all tensors to be on the same device" in text:
        return "Create new tensors on the input's device, e.g. torch.zeros(..., device=x.device)."
    if isinstance(exc, IndexError):
        return ("An index is out of range for its axis: print the shapes on that line and check which axis you "
                "index (batch, position, head...) and in what order the axes come.")
    if isinstance(exc, RuntimeError) and "view" in text:
        return "Use .reshape (or einops.rearrange) instead of .view on a tensor that is not contiguous."
    if isinstance(exc, (TypeError, AttributeError)):
        return "Check the types of the arguments against the docstring and what your function returns."
    if isinstance(exc, einops_error_types()):
        return "An einops pattern doesn't match the tensor: count the axes on each side of the pattern."
    return ""


def einops_error_types() -> tuple[type, ...]:
    try:
        from einops import EinopsError
        return (EinopsError,)
    except ImportError:  # pragma: no cover
        return ()


def grade(exercise: Exercise, candidate: Callable, *, device: str | torch.device = "cpu",
          stop_after: int | None = None) -> Result:
    """Run the exercise's grader on `candidate` (its first `stop_after` cases, if given); never raises
    for anything the candidate does."""
    checker = Checker(exercise, candidate, device=device, stop_after=stop_after)
    start = time.perf_counter()
    try:
        with noticing_ctrl_c(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            exercise.grader(checker)
    except _Enough:
        pass
    except CheckFailed as failure:
        return Result(exercise.id, failure.status, checker.cases_passed, time.perf_counter() - start, failure)
    except TimeLimitReached:
        failure = LearnerTimeout("the check did not finish in time", exercise=exercise.id)
        return Result(exercise.id, failure.status, checker.cases_passed, time.perf_counter() - start, failure)
    except KeyboardInterrupt as exc:  # raised by learner code outside check.call (e.g. a returned object's method)
        if ctrl_c_pressed():
            raise
        failure = LearnerError(_escape_message(exc), exercise=exercise.id, hint=_escape_hint(exc))
        return Result(exercise.id, failure.status, checker.cases_passed, time.perf_counter() - start, failure)
    except SystemExit as exc:
        failure = LearnerError(_escape_message(exc), exercise=exercise.id, hint=_escape_hint(exc))
        return Result(exercise.id, failure.status, checker.cases_passed, time.perf_counter() - start, failure)
    except Exception as exc:  # the grader tripped over an unexpected output (e.g. wrong type deep inside)
        failure = LearnerError(f"grading stopped with {type(exc).__name__}: {exc}", exercise=exercise.id,
                               hint="Check that your function returns what the docstring describes "
                                    "(type and shape).")
        return Result(exercise.id, failure.status, checker.cases_passed, time.perf_counter() - start, failure)
    return Result(exercise.id, PASSED, checker.cases_passed, time.perf_counter() - start)
