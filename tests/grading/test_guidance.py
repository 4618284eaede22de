"""Skipped exercises: the NameError / NotImplementedError explanations and `use_reference`."""

import subprocess
import sys

import pytest
import torch

from utils.grading import check, guidance, use_reference
from utils.grading.feedback import NOT_ATTEMPTED, NotAttempted
from utils.grading.kernel import grade_by_name


def test_a_name_error_for_an_exercise_names_it_and_offers_the_reference():
    message = guidance.explain(NameError("name 'layer_norm' is not defined"))
    assert "ch1.layer_norm" in message and "use_reference('layer_norm')" in message


def test_a_name_error_for_anything_else_is_left_alone():
    assert guidance.explain(NameError("name 'my_helper' is not defined")) is None


def test_a_stub_called_from_a_later_cell_is_found_in_the_traceback():
    namespace = {}
    exec(compile("def layer_norm(x, w, b, eps=1e-5):\n    raise NotImplementedError()\n"
                 "def later(x):\n    return layer_norm(x, 1, 0)\n", "<cell>", "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["later"](torch.zeros(2))
    message = guidance.explain(info.value)
    assert "`layer_norm` (exercise ch1.layer_norm)" in message


def test_a_not_implemented_error_from_elsewhere_is_left_alone():
    def unrelated():
        raise NotImplementedError()

    with pytest.raises(NotImplementedError) as info:
        unrelated()
    assert guidance.explain(info.value) is None


def test_the_reference_is_never_recorded_as_passed(capsys, monkeypatch):
    layer_norm = use_reference("layer_norm")
    assert "not attempted" in capsys.readouterr().out
    x = torch.randn(3, 8)
    assert torch.equal(layer_norm(x, torch.ones(8), torch.zeros(8)),
                       use_reference("ch1.layer_norm")(x, torch.ones(8), torch.zeros(8)))
    check(layer_norm)  # a learner's run goes on, with a visible warning
    assert "not attempted" in capsys.readouterr().out
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(NotAttempted):
        check(layer_norm)
    assert grade_by_name("ch1.layer_norm", {"layer_norm": layer_norm})["status"] == NOT_ATTEMPTED


def test_the_handler_turns_a_skipped_stub_into_advice_in_a_real_kernel():
    code = (
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "from utils.grading import guidance\n"
        "assert guidance.install()\n"
        "ip.run_cell('from utils.grading import check')\n"
        "result = ip.run_cell('check(layer_norm)')\n"
        "assert isinstance(result.error_in_exec, NameError)\n"
        "result = ip.run_cell('def layer_norm(x, w, b, eps=1e-5):\\n    raise NotImplementedError()\\n\\nlayer_norm(1, 2, 3)')\n"
        "assert isinstance(result.error_in_exec, NotImplementedError)\n"
        "result = ip.run_cell('1 / 0')\n"
        "assert isinstance(result.error_in_exec, ZeroDivisionError)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "it is exercise ch1.layer_norm" in text
    assert "still the stub" in text and "use_reference('layer_norm')" in text
    assert "ZeroDivisionError" in text
