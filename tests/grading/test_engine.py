"""The grading engine turns every kind of learner mistake into a clear failed check."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time

import pytest
import torch

from utils.grading import CheckFailed, check, grade, registry
from utils.grading.compare import difference
from utils.grading.registry import Mistake
from utils.second_device import second_device

LAYER_NORM = registry.get("ch1.layer_norm")


def reference(x, w, b, eps=1e-5):
    return torch.nn.functional.layer_norm(x, w.shape, w, b, eps)


def test_correct_function_passes_with_case_count():
    result = grade(LAYER_NORM, reference)
    assert result.passed and result.cases == 2, result.summary()


def test_stub_is_reported_not_attempted():
    def layer_norm(x, w, b, eps=1e-5):
        raise NotImplementedError()

    result = grade(LAYER_NORM, layer_norm)
    assert result.status == "not attempted"


def test_exception_in_learner_code_is_an_error_naming_the_learner_line():
    def layer_norm(x, w, b, eps=1e-5):
        return x @ torch.ones(3, 3)

    result = grade(LAYER_NORM, layer_norm)
    assert result.status == "error"
    assert "RuntimeError" in result.failure.detail and "x @ torch.ones(3, 3)" in result.failure.detail
    assert "shape" in result.failure.hint


@pytest.mark.parametrize("body,expected", [
    # the class axis left last: logits [batch, squares, classes] against targets [batch, squares]
    ("F.cross_entropy(torch.randn(10, 9, 3), torch.zeros(10, 9, dtype=torch.long))",
     "Here axis 1 of your logits was taken as the classes, so targets [10, 3] were expected, not [10, 9]"),
    ("F.cross_entropy(torch.randn(30, 3), torch.zeros(10, dtype=torch.long))", "N = 30 and your targets N = 10"),
    ("F.cross_entropy(torch.randn(10, 3), torch.zeros(10, 1, dtype=torch.long))", "one axis fewer"),
    ("torch.randn(2, 3) @ torch.randn(4, 5)", "(2x3) @ (4x5) puts 3 against 4"),
    ("torch.randn(2, 3, 4) @ torch.randn(2, 5, 6)", "batched matrix product"),
    ("torch.randn(3, 4) + torch.randn(3)", "sizes 4 and 3 meet"),
    ("torch.randn(7).reshape(2, 3)", "must keep the number of elements, 7"),
    ("torch.einsum('ij,jk->ik', torch.randn(2, 3), torch.randn(4, 5))", "axis 'j' has size 4"),
    ("torch.cat([torch.randn(2, 3), torch.randn(3, 4)], 1)", "torch.cat joins along one axis"),
    ("torch.randn(3, 4).gather(1, torch.tensor([0, 1, 2]))", "gather's index"),
    ("torch.randn(2, 3).sum(2)", "axes run from -2 to 1"),
    ("torch.randn(3, 4).T.view(12)", "not contiguous"),
    ("torch.randn(2, 3).double() @ torch.randn(3, 2)", "different dtypes"),
    ("torch.randn(2, 3)[torch.tensor([0.0])]", "Indices must be integer tensors"),
])
def test_pytorch_shape_and_dtype_errors_get_a_hint_that_says_what_to_change(body, expected):
    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(f"def layer_norm(x, w, b, eps=1e-5):\n    return {body}", namespace)
    result = grade(LAYER_NORM, namespace["layer_norm"])
    assert result.status == "error" and expected in result.failure.hint, result.summary()


def test_infinite_loop_times_out():
    def layer_norm(x, w, b, eps=1e-5):
        while True:
            pass

    result = grade(dataclasses.replace(LAYER_NORM, timeout=0.3), layer_norm)
    assert result.status == "timeout" and result.seconds < 5


def test_learner_code_swallowing_exceptions_still_times_out():
    def layer_norm(x, w, b, eps=1e-5):
        while True:
            try:
                pass
            except Exception:
                pass

    assert grade(dataclasses.replace(LAYER_NORM, timeout=0.3), layer_norm).status == "timeout"


def test_a_bare_except_around_sleep_cannot_swallow_the_time_limit():
    def layer_norm(x, w, b, eps=1e-5):
        while True:
            try:
                time.sleep(1)
            except:  # noqa: E722  (what the learner wrote)
                pass

    result = grade(dataclasses.replace(LAYER_NORM, timeout=0.3), layer_norm)
    assert result.status == "timeout" and result.seconds < 5


def test_the_time_limit_counts_work_not_waiting_on_a_busy_machine():
    """A slow wall clock (here: waiting, as under a busy neighbour) is allowed several times the limit."""
    def layer_norm(x, w, b, eps=1e-5):
        time.sleep(1.0)  # past the limit in wall-clock time, using no CPU time
        return reference(x, w, b, eps)

    assert grade(dataclasses.replace(LAYER_NORM, timeout=0.6), layer_norm).passed


def test_time_limit_leaves_no_tracer_or_alarm_behind():
    def layer_norm(x, w, b, eps=1e-5):
        while True:
            try:
                pass
            except:  # noqa: E722
                pass

    grade(dataclasses.replace(LAYER_NORM, timeout=0.2), layer_norm)
    assert sys.gettrace() is None
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)


def test_a_time_out_names_the_clock_that_stopped_the_code():
    """CPU time is the limit; the wall clock (WALL_FACTOR times longer) stops code that waits, and the
    message must say which one it was, not claim the CPU limit for both."""
    def busy(x, w, b, eps=1e-5):
        while True:
            pass

    def sleepy(x, w, b, eps=1e-5):
        time.sleep(60)

    ex = dataclasses.replace(LAYER_NORM, timeout=0.2)
    cpu = grade(ex, busy).failure
    starved = "wall-clock" in cpu.detail  # on a busy machine a computing loop may get under 1/4 of a core
    assert cpu.status == "timeout" and ("0.2 s of CPU time (the limit)" in cpu.detail
                                        or starved and "little CPU time" in cpu.hint), cpu.render()
    waited = grade(ex, sleepy).failure
    assert waited.status == "timeout" and "0.8 s of wall-clock time" in waited.detail, waited.render()
    assert "only 0.0 s of CPU time" in waited.detail and "time.sleep" in waited.hint, waited.render()


def test_an_exercise_can_say_what_its_time_limit_means():
    def layer_norm(x, w, b, eps=1e-5):
        while True:
            pass

    ex = dataclasses.replace(LAYER_NORM, timeout=0.2, timeout_hint="Vectorise over the samples.")
    assert grade(ex, layer_norm).failure.hint.endswith("Vectorise over the samples.")  # after a busy-machine note


@pytest.mark.parametrize("escape", ["sys.exit()", "sys.exit(0)", "exit()", "raise KeyboardInterrupt",
                                    "raise SystemExit(1)"])
def test_learner_code_that_exits_or_fakes_ctrl_c_is_a_failed_check_not_an_escape(escape):
    namespace = {"sys": sys, "exit": sys.exit}
    exec(f"def layer_norm(x, w, b, eps=1e-5):\n    {escape}", namespace)
    result = grade(LAYER_NORM, namespace["layer_norm"])
    assert result.status == "error" and result.failure.hint


def test_a_real_ctrl_c_still_stops_the_check():
    def layer_norm(x, w, b, eps=1e-5):
        signal.raise_signal(signal.SIGINT)  # what the kernel's interrupt button sends
        return reference(x, w, b, eps)

    with pytest.raises(KeyboardInterrupt):
        grade(LAYER_NORM, layer_norm)


def test_a_tensor_subclass_that_claims_to_be_close_is_compared_as_a_plain_tensor():
    class AlwaysClose(torch.Tensor):
        def allclose(self, *args, **kwargs):
            return True

        def isclose(self, other, *args, **kwargs):
            return torch.ones_like(torch.Tensor(self), dtype=torch.bool)

        def __eq__(self, other):
            return torch.ones_like(torch.Tensor(self), dtype=torch.bool)

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            if func in (torch.isclose, torch.allclose, torch.equal, torch.Tensor.__eq__):
                return True if func in (torch.allclose, torch.equal) else torch.tensor(True).expand(args[0].shape)
            return super().__torch_function__(func, types, args, kwargs or {})

    def layer_norm(x, w, b, eps=1e-5):
        return torch.zeros_like(x).as_subclass(AlwaysClose)

    result = grade(LAYER_NORM, layer_norm)
    assert result.status == "failed"


def test_a_diagnosis_slower_than_the_time_limit_is_skipped_not_waited_for():
    def hang(*args):
        while True:
            pass

    def layer_norm_grader(check):
        x, w, b = check.randn(2, 3, 8), check.randn(8), check.randn(8)
        check.case("slow diagnosis", x, w, b,
                   mistakes=[Mistake("slow", "never shown", hang), Mistake("zero", "returns zeros", lambda *a: 0 * a[0])])

    ex = dataclasses.replace(LAYER_NORM, timeout=0.3, grader=layer_norm_grader)
    start = time.perf_counter()
    result = grade(ex, lambda x, w, b, eps=1e-5: 0 * x)
    assert result.failure.mistake == "zero" and time.perf_counter() - start < 5


def test_in_place_edit_of_an_input_fails_and_names_it():
    def layer_norm(x, w, b, eps=1e-5):
        w.mul_(1.0 + 1e-3)
        return reference(x, w, b, eps)

    result = grade(LAYER_NORM, layer_norm)
    assert result.status == "failed" and "`w`" in result.failure.detail
    assert result.failure.mistake == "in-place edit"


@pytest.mark.parametrize("returned,expected_words", [
    (None, "forget to `return`"),
    ([1.0, 2.0], "got a list"),
    ("text", "got a str"),
])
def test_wrong_return_type_is_explained(returned, expected_words):
    result = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: returned)
    assert result.status == "failed" and expected_words in result.failure.detail


def test_nans_are_reported_as_nans():
    result = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: reference(x, w, b, eps) * float("nan"))
    assert "NaN" in result.failure.detail


def test_wrong_shape_and_dtype_are_reported_as_such():
    shape = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: reference(x, w, b, eps)[0])
    assert "expected shape (2, 5, 16), got shape (5, 16)" in shape.failure.detail
    dtype = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: reference(x, w, b, eps).double())
    assert "expected dtype float32, got float64" in dtype.failure.detail


def test_value_mismatch_shows_expected_and_got_side_by_side():
    result = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: reference(x, w, b, eps) + 0.01)
    detail = result.failure.detail
    assert "values differ" in detail and "expected output[" in detail and "got      output[" in detail


def test_difference_tolerates_tiny_float_error_but_not_more():
    x = torch.randn(4, 4)
    assert difference(x + 1e-7, x, atol=1e-5, rtol=1e-4) is None
    assert difference(x + 1e-2, x, atol=1e-5, rtol=1e-4) is not None


def test_result_on_another_device_than_the_inputs_fails_and_says_so():
    x = torch.randn(3, 3)
    with second_device() as other:
        detail = difference(x.to(other), x, atol=1e-6, rtol=1e-6)
    assert "expected a tensor on cpu" in detail and "got one on meta" in detail


def test_check_raises_a_short_assertion_error_subclass():
    def layer_norm(x, w, b, eps=1e-5):
        return x

    with pytest.raises(CheckFailed) as info:
        check(layer_norm)
    assert isinstance(info.value, AssertionError)
    rendered = info.value._render_traceback_()
    assert len(rendered) == 1 and "Traceback" not in rendered[0] and "Hint:" in rendered[0]


def test_check_infers_the_exercise_from_the_name_or_takes_an_id(capsys):
    def my_norm(x, w, b, eps=1e-5):
        return reference(x, w, b, eps)

    check(my_norm, "ch1.layer_norm")
    assert "passed" in capsys.readouterr().out
    with pytest.raises(KeyError, match="Did you mean layer_norm"):
        registry.for_function("layer_nrom")


def test_check_refuses_a_called_function_with_a_helpful_message():
    with pytest.raises(CheckFailed, match="without calling it"):
        check(torch.zeros(3))


def test_check_median_latency_is_under_a_second():
    import statistics
    import time

    times = []
    for _ in range(5):
        start = time.perf_counter()
        grade(LAYER_NORM, reference)
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 1.0


def test_failed_check_in_a_kernel_shows_a_hint_button_and_a_compact_error():
    import nbformat

    from utils.notebooks.execute import run_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from utils.grading import check"),
                nbformat.v4.new_code_cell("def layer_norm(x, w, b, eps=1e-5):\n    return x"),
                nbformat.v4.new_code_cell("check(layer_norm)")]
    executed, _ = run_notebook(nb, allow_errors=True)
    outputs = executed.cells[2].outputs
    error, widget = outputs[0], outputs[-1]  # the hint button under the message, not above it
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert error["output_type"] == "error" and error["ename"] == "CheckFailed"
    assert len(error["traceback"]) == 1 and "checker.py" not in error["traceback"][0]
    assert "expected output[" in error["traceback"][0] and "Hint:" in error["traceback"][0]


def test_a_mismatch_shows_where_the_largest_gap_is_not_only_the_first():
    expected = torch.linspace(-3, 3, 50)
    got = expected.clone()
    got[3] += 1e-3   # a small early difference
    got[40] += 0.18  # the one that matters
    detail = difference(got, expected, atol=1e-5, rtol=1e-4)
    assert "largest gap 0.18 at output[40]" in detail
    assert "output[38:44]" in detail and "2.078" in detail


def test_a_function_name_used_by_two_exercises_is_refused_with_a_clear_error():
    registry.load_all()
    def test_layer_norm(check):  # noqa: ANN001  (same function name as ch1.layer_norm, another chapter)
        pass
    test_layer_norm.__module__ = "utils.grading.ch9_elsewhere.notebook"
    with pytest.raises(ValueError, match="names must be unique"):
        registry.exercise()(test_layer_norm)
    assert "ch9.layer_norm" not in registry.load_all()


def test_the_first_check_imports_only_the_graders_of_its_own_notebook():
    code = ("import sys; from utils.grading import registry; registry.for_function('layer_norm'); "
            "registry.get('ch1.layer_norm'); "
            "print(sorted(m for m in sys.modules if m.startswith('utils.grading.ch') and m.count('.') == 3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=registry.ROOT).stdout
    assert out.strip() == "['utils.grading.ch1_transformer_math.build_a_transformer']", out


def test_hints_that_repeat_the_failures_own_hint_are_not_offered_again():
    from utils.grading.hints import fresh_hints

    ex = dataclasses.replace(LAYER_NORM, hints=("Subtract the mean first.", "Divide by sqrt(var + eps).",
                                                "Then scale by w and shift by b."))
    assert fresh_hints(ex, "Divide by sqrt(var + eps)!") == ["Subtract the mean first.", "Then scale by w and shift by b."]
    assert len(fresh_hints(ex, "")) == 3


@pytest.mark.parametrize("wrong,name", [
    (lambda x, w, b, eps=1e-5: -reference(x, w, b, eps), "sign flipped"),
    (lambda x, w, b, eps=1e-5: 0.5 * reference(x, w, b, eps), "off by a constant factor"),
    (lambda x, w, b, eps=1e-5: reference(x, w, b, eps) + 0.3, "off by a constant"),
    (lambda x, w, b, eps=1e-5: reference(x, w, b, eps).transpose(0, 2), "axes in another order"),
    (lambda x, w, b, eps=1e-5: reference(x, w, b, eps).roll(1, dims=-1), "shifted by one position"),
])
def test_a_mistake_no_grader_foresaw_still_gets_a_named_diagnosis(wrong, name):
    bare = dataclasses.replace(LAYER_NORM, grader=lambda check: check.case(
        "random", check.randn(2, 3, 6), check.randn(6), check.randn(6)))
    result = grade(bare, wrong)
    assert result.failure.mistake == name and result.failure.hint


def test_an_unforeseen_mistake_is_told_where_its_output_differs():
    def layer_norm(x, w, b, eps=1e-5):
        out = reference(x, w, b, eps).clone()
        out[:, -1] = 0.0  # the last position forgotten
        return out

    bare = dataclasses.replace(LAYER_NORM, grader=lambda check: check.case(
        "random", check.randn(2, 5, 6), check.randn(6), check.randn(6)))
    hint = grade(bare, layer_norm).failure.hint
    assert "Only index 4 of axis 1 (of 5) differs" in hint


def test_an_unforeseen_mistake_without_a_pattern_still_gets_the_first_nudge():
    def layer_norm(x, w, b, eps=1e-5):
        return torch.sin(x)

    bare = dataclasses.replace(LAYER_NORM, grader=lambda check: check.case(
        "random", check.randn(2, 5, 6), check.randn(6), check.randn(6)))
    assert LAYER_NORM.hints[0] in grade(bare, layer_norm).failure.hint


def test_the_next_check_of_an_exercise_closes_the_hint_widget_the_last_one_showed():
    """ipywidgets keeps a widget (and the page its model) until it is closed: a rerun check must not leave its
    previous hint button, with its children, layouts and styles, behind."""
    import importlib

    hints = importlib.import_module("utils.grading.hints")  # the package's `hints` is the function of that name
    widget = hints.hint_widget(["first", "second"])
    parts = [widget, widget.layout, *widget.children, *(c.layout for c in widget.children),
             *(c.style for c in widget.children)]
    assert all(p.comm is not None for p in parts)
    hints._live[LAYER_NORM.id] = widget
    hints.show_hints(LAYER_NORM)  # outside a kernel it prints a pointer instead of a widget
    assert all(p.comm is None for p in parts) and LAYER_NORM.id not in hints._live
