"""The `check` object every grader receives: the candidate, injected.

A grader is a pytest-style function `test_<name>(check)`. It builds inputs
with `check.rng`, then calls `check.case(...)` (compare the candidate with the
reference on the same inputs) or `check.expect(...)` (a property that must
hold). Pytest injects a `check` holding the reference (see conftest.py);
`check(fn)` in a notebook injects the learner's function.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._pytree import tree_map

from .devices import OtherDevice, stay_on
from .compare import difference, generic_diagnosis, locate_difference
from .feedback import (PASSED, CheckFailed, LearnerError, LearnerTimeout, NotAttempted, Result)
from .registry import Exercise, Mistake
from .safety import (WALL_FACTOR, TimeLimitReached, changed, ctrl_c_pressed, fresh, guarded_call, learner_frame,
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
        except TimeLimitReached as limit:
            message, hint = _time_limit_feedback(limit, self.exercise)
            raise LearnerTimeout(message, exercise=self.exercise.id, case=case, hint=hint) from None
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


def _time_limit_feedback(limit: TimeLimitReached, exercise: Exercise) -> tuple[str, str]:
    """What stopped the learner's code, in the clock that stopped it, and what to do."""
    cpu, wall = exercise.timeout, exercise.timeout * WALL_FACTOR
    if not limit.wall:
        return (f"your code used {cpu:g} s of CPU time (the limit) without finishing",
                exercise.timeout_hint or "Look for a loop that never ends, or a loop over every element where "
                                         "one tensor operation would do.")
    message = (f"your code was stopped after {wall:g} s of wall-clock time, in which it used only "
               f"{limit.cpu_seconds:.1f} s of CPU time (the limits: {cpu:g} s of CPU time, or {wall:g} s of "
               f"wall-clock time for code that waits)")
    if limit.cpu_seconds < 0.1 * cpu:
        return message, ("It was waiting, not computing: look for time.sleep, input(), a lock, or a file or "
                         "download that never arrives. Everything the check passes in is already in memory.")
    return message, ("The machine gave it little CPU time (other programs are busy): close them, or set "
                     "COURSE_THREADS=1 before starting JupyterLab, and run the check again."
                     + (f" {exercise.timeout_hint}" if exercise.timeout_hint else ""))


def _escape_message(exc: BaseException) -> str:
    name = "sys.exit()" if isinstance(exc, SystemExit) else "KeyboardInterrupt"
    where = learner_frame(exc)
    return f"your code raised {name}, which would stop the whole check" + (f"\n{where}" if where else "")


def _escape_hint(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "Return a value (or raise an ordinary exception) instead of calling exit(), quit() or sys.exit()."
    return "Raise an ordinary exception (e.g. ValueError) instead of KeyboardInterrupt, which means Ctrl-C."


# PyTorch's own words for a shape or dtype mistake, each with what to do about it. Checked in order, on the
# exception's message whatever its type (torch raises RuntimeError, ValueError and IndexError for these);
# a hint may quote the sizes the message names ({name} is the pattern's group of that name).
_CLASS_AXIS = ("F.cross_entropy and F.nll_loss read the classes from axis 1: logits [N, n_classes] with targets "
               "[N], or [N, n_classes, d...] with targets [N, d...]. ")
ERROR_HINTS: list[tuple[re.Pattern, str]] = [(re.compile(pattern), hint) for pattern, hint in [
    # losses
    (r"Expected target size \[(?P<want>[^\]]*)\], got \[(?P<got>[^\]]*)\]",
     _CLASS_AXIS + "Here axis 1 of your logits was taken as the classes, so targets [{want}] were expected, not "
                   "[{got}]: your classes are probably on the last axis. Flatten (logits.reshape(-1, n_classes) "
                   "with targets.reshape(-1)) or move the class axis (logits.movedim(-1, 1))."),
    (r"Expected input batch_size \((?P<n_in>\d+)\) to match target batch_size \((?P<n_t>\d+)\)",
     _CLASS_AXIS + "Your logits give N = {n_in} and your targets N = {n_t}: flatten both the same way, "
                   "logits.reshape(-1, n_classes) and targets.reshape(-1)."),
    (r"0D or 1D target tensor expected, multi-target not supported",
     _CLASS_AXIS + "Class-index targets have one axis fewer than the logits: drop the extra one "
                   "(targets.squeeze(-1), or reshape both as [N, n_classes] and [N])."),
    (r"Expected floating point type for target with class probabilities",
     _CLASS_AXIS + "Targets of the logits' own shape are read as class *probabilities* (floats). For class "
                   "indices, give targets one axis fewer than the logits."),
    (r"expected target dtype to be Long|expected scalar type Long but found",
     "Class-index targets must be integers: convert them with .long()."),
    (r"Target -?\d+ is out of bounds",
     _CLASS_AXIS + "A target is not a valid class index: is the class axis of your logits the one you think?"),
    (r"(Using a target size|Target size) \(torch\.Size\(\[(?P<t>[^\]]*)\]\)\).* input size "
     r"\(torch\.Size\(\[(?P<i>[^\]]*)\]",
     "The prediction [{i}] and the target [{t}] must have the same shape: squeeze the extra axis (.squeeze(-1)) "
     "or reshape one like the other."),
    # products
    (r"mat1 and mat2 shapes cannot be multiplied \((?P<a>\d+)x(?P<b>\d+) and (?P<c>\d+)x(?P<d>\d+)\)",
     "A matrix product needs the inner sizes to agree: ({a}x{b}) @ ({c}x{d}) puts {b} against {c}. Print the "
     "shapes; transpose one side (.T, .mT) or check which axis holds which size (nn.Linear's weight is "
     "[out, in])."),
    (r"Expected size for first two dimensions of batch2 tensor to be: \[(?P<want>[^\]]*)\] "
     r"but got: \[(?P<got>[^\]]*)\]",
     "A batched matrix product [..., n, k] @ [..., k, m] needs the second tensor to start [{want}], not [{got}]: "
     "transpose its last two axes (.mT), or write the product as an einsum with named axes."),
    (r"size mismatch, got input .*, mat .*, vec",
     "torch.mv multiplies a matrix [n, k] by a vector [k]: the vector's length must be the matrix's last size."),
    (r"inconsistent tensor size, expected tensor|1D tensors expected, but got",
     "torch.dot takes two 1-D tensors of the same length; for rows of a batch use (a * b).sum(-1) or an einsum."),
    (r"einsum\(\): subscript (?P<s>\w) has size (?P<a>\d+) for operand (?P<op>\d+) which does not broadcast with "
     r"previously seen size (?P<b>\d+)",
     "In your einsum, axis '{s}' has size {a} in operand {op} but {b} in an earlier one: a letter must name the "
     "same axis in every operand. Write each operand's pattern under its printed shape."),
    (r"einsum\(\): the number of subscripts in the equation \((?P<m>\d+)\) does not match the number of "
     r"dimensions \((?P<n>\d+)\) for operand (?P<op>\d+)",
     "Operand {op} of your einsum has {n} axes but its pattern names {m}: one letter per axis (or ... for the rest)."),
    # broadcasting, joining, reshaping, indexing
    (r"The size of tensor a \((?P<a>\d+)\) must match the size of tensor b \((?P<b>\d+)\) at non-singleton "
     r"dimension (?P<d>\d+)",
     "Broadcasting lines shapes up from the *last* axis, and there sizes {a} and {b} meet (axis {d} of the "
     "result). Print both shapes: add the missing axis where it belongs (x[:, None], unsqueeze) or put the "
     "matching axes in the same place (rearrange, movedim)."),
    (r"The expanded size of the tensor \((?P<a>\d+)\) must match the existing size \((?P<b>\d+)\)",
     "The value you assign or expand has size {b} where the target has {a}: print both shapes; index the "
     "target or the value so that they match."),
    (r"shape mismatch: value tensor of shape \[(?P<v>[^\]]*)\] cannot be broadcast to indexing result of shape "
     r"\[(?P<r>[^\]]*)\]",
     "You assign a value of shape [{v}] to a selection of shape [{r}]: select as many places as you have "
     "values (or index the value the same way)."),
    (r"output with shape \[(?P<o>[^\]]*)\] doesn't match the broadcast shape \[(?P<b>[^\]]*)\]",
     "An in-place operation (+=, add_, mul_...) cannot grow its target from [{o}] to [{b}]: write the result "
     "into a new tensor (y = x + other)."),
    (r"shape '\[(?P<shape>[^\]]*)\]' is invalid for input of size (?P<n>\d+)",
     "A reshape (or view) to [{shape}] must keep the number of elements, {n} here: check the sizes you pass "
     "(one may be -1) and that you reshape the tensor you meant."),
    (r"view size is not compatible with input tensor's size and stride",
     "Use .reshape (or einops.rearrange) instead of .view: this tensor is not contiguous in memory (after a "
     "transpose, permute or slice)."),
    (r"number of dimensions in the tensor input does not match the length of the desired ordering",
     "permute takes one axis index per axis of the tensor: print its shape and list every axis once."),
    (r"unflatten: Provided sizes \[(?P<s>[^\]]*)\] don't multiply up to the size of dim (?P<d>\d+) \((?P<n>\d+)\)",
     "unflatten splits axis {d} (size {n}) into [{s}]: the sizes must multiply to {n}."),
    (r"split_with_sizes expects split_sizes to sum exactly to (?P<n>\d+)",
     "The sizes you split into must add up to the axis' size, {n}."),
    (r"Class values must be smaller than num_classes",
     "F.one_hot(x, n) needs every value of x below n: is n the number of classes (or tokens)?"),
    (r"Sizes of tensors must match except in dimension (?P<d>\d+)",
     "torch.cat joins along one axis (here {d}) and needs every other axis equal: print each piece's shape."),
    (r"stack expects each tensor to be equal size",
     "torch.stack needs tensors of exactly the same shape: print each piece's shape."),
    (r"Index tensor must have the same number of dimensions as input tensor|Size does not match at dimension .* "
     r"expected index",
     "gather's index needs as many axes as the input, and no larger sizes except on the gathered axis: e.g. "
     "x.gather(-1, idx[..., None])[..., 0] picks one entry per row."),
    (r"Given normalized_shape=\[(?P<n>[^\]]*)\], expected input with shape \[\*, (?P<m>[^\]]*)\]",
     "layer_norm normalises over the last axes, [{n}], which must be the input's last sizes: print its shape."),
    (r"Dimension out of range \(expected to be in range of \[(?P<lo>-?\d+), (?P<hi>\d+)\], but got (?P<d>-?\d+)\)",
     "You asked for axis {d} of a tensor whose axes run from {lo} to {hi}: it has fewer axes than you think. "
     "Print its shape (an earlier line may have reduced or indexed an axis away)."),
    (r"The shape of the mask \[(?P<m>[^\]]*)\] at index (?P<i>\d+) does not match",
     "A boolean mask must have the shape of the axes it selects from, starting at axis {i}: your mask is [{m}]."),
    # dtypes
    (r"expected m1 and m2 to have the same dtype|mat1 and mat2 must have the same dtype|"
     r"expected scalar type \w+ but found \w+|Found dtype \w+ but expected \w+",
     "Two tensors of different dtypes meet (often a float64 one from torch.tensor of Python floats, numpy, "
     "torch.arange(...) * a float, or .double()): give them the same dtype, e.g. x.to(other.dtype) or .float()."),
    (r"only integers, slices .* are valid indices|tensors used as indices must be long, int, byte or bool|"
     r"Expected dtype int32/int64 for index|"
     r"'indices' to have one of the following scalar types",
     "Indices must be integer tensors: convert with .long() (a division / makes floats; use //)."),
]]


def _hint_for_exception(exc: Exception) -> str:
    text = str(exc)
    for pattern, hint in ERROR_HINTS:
        if match := pattern.search(text):
            return hint.format_map({k: v or "?" for k, v in match.groupdict().items()})
    if isinstance(exc, einops_error_types()):  # an EinopsError is a RuntimeError too
        return "An einops pattern doesn't match the tensor: count the axes on each side of the pattern."
    if isinstance(exc, RuntimeError) and any(w in text for w in ("size of tensor", "size of the tensor", "shape",
                                                                  "mat1 and mat2", "dimension")):
        return "A shape mismatch: print the shapes of the tensors on that line and compare them with the docstring."
    if isinstance(exc, RuntimeError) and "Expected all tensors to be on the same device" in text:
        return "Create new tensors on the input's device, e.g. torch.zeros(..., device=x.device)."
    if isinstance(exc, IndexError):
        return ("An index is out of range for its axis: print the shapes on that line and check which axis you "
                "index (batch, position, head...) and in what order the axes come.")
    if isinstance(exc, (TypeError, AttributeError)):
        return "Check the types of the arguments against the docstring and what your function returns."
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
    except TimeLimitReached as limit:
        failure = LearnerTimeout(_time_limit_feedback(limit, exercise)[0], exercise=exercise.id,
                                 hint=_time_limit_feedback(limit, exercise)[1])
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
