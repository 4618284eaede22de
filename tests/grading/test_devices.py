"""A check's verdict does not depend on the device, and the references run where the notebooks do.

On a GPU (Colab's GPU runtime), `check()` still grades on the CPU (utils/grading/devices.py says why).
The references, though, run on the GPU inside the notebooks. Without a GPU, `utils.second_device`
plays one: every reference must pass its own grader with every input on that device (which fails on
CPU-built tensors meeting device inputs, in the reference or in the grader). With COURSE_DEVICE=cuda
(`python3 course.py test --gpu`) the same test runs on the real GPU as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from utils.grading import CheckFailed, check, grade, registry
from utils.second_device import second_device

EXERCISES = registry.load_all()
LAYER_NORM = registry.get("ch1.layer_norm")
ON_GPU = os.environ.get("COURSE_DEVICE") == "cuda"


@pytest.mark.slow  # about 30 s in all, on the Python the main suite runs (not the 3.13 quick tier)
@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_reference_passes_its_grader_with_inputs_on_a_second_device(exercise_id):
    exercise = EXERCISES[exercise_id]
    with second_device() as device:
        result = grade(exercise, exercise.reference, device=device)
    assert result.passed, result.summary()


@pytest.mark.skipif(not ON_GPU, reason="the GPU tier: python3 course.py test --gpu")
@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_reference_passes_its_grader_with_inputs_on_the_gpu(exercise_id):
    exercise = EXERCISES[exercise_id]
    result = grade(exercise, exercise.reference, device="cuda")
    assert result.passed, result.summary()


def test_check_grades_on_the_cpu_and_says_so_when_the_notebook_runs_on_a_gpu(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    check(LAYER_NORM.reference, "ch1.layer_norm")
    assert "passed" in (out := capsys.readouterr().out) and "graded on the CPU" in out and "cuda" in out
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    check(LAYER_NORM.reference, "ch1.layer_norm")
    assert "graded on the CPU" not in capsys.readouterr().out


def _hard_coded_cuda(x, w, b, eps=1e-5):
    x = x.cuda()
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt() * w + b


def _device_string(x, w, b, eps=1e-5):
    mean = torch.zeros(x.shape[:-1] + (1,), device="cuda") + x.mean(-1, keepdim=True)
    return (x - mean) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt() * w + b


@pytest.mark.parametrize("fn, said", [(_hard_coded_cuda, "calls .cuda()"), (_device_string, "asks for device 'cuda'")],
                         ids=[".cuda()", "device='cuda'"])
def test_a_hard_coded_gpu_is_the_same_clear_failure_on_every_machine(fn, said):
    result = grade(LAYER_NORM, fn)  # on a GPU machine too: stopped before anything reaches the GPU
    assert result.status == "error"
    assert said in result.failure.detail and "CPU" in result.failure.detail
    assert "device=x.device" in result.failure.hint
    assert "at line" in result.failure.detail  # the learner's own line is named


def test_a_tensor_from_the_notebook_on_another_device_is_named_not_used():
    calls = []
    with second_device() as gpu:
        scale = torch.ones(16).to(gpu)  # a notebook global on "the GPU"

        def layer_norm(x, w, b, eps=1e-5):
            calls.append(1)
            return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt() * w * scale + b

        result = grade(LAYER_NORM, layer_norm)
    assert result.status == "error" and calls
    assert "that the check did not give it" in result.failure.detail
    assert "arguments" in result.failure.hint


def test_a_failure_on_the_gpu_side_does_not_reach_the_next_check():
    """The learner's notebook may have broken its GPU (a CUDA device-side assert cannot be undone in the
    process); check() never starts GPU work, so the next check still grades. Here a function that touches
    a device tensor fails, and the reference then passes in the same process."""
    with second_device() as gpu:
        poisoned = torch.arange(4).to(gpu)
        bad = grade(LAYER_NORM, lambda x, w, b, eps=1e-5: x[poisoned.sum().long() + 100])
        assert bad.status == "error" and "did not give it" in bad.failure.detail
    assert grade(LAYER_NORM, LAYER_NORM.reference).passed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (python3 course.py test --gpu)")
def test_checks_still_grade_after_a_real_cuda_device_side_assert():
    script = textwrap.dedent("""
        import torch
        from utils.grading import check, grade, registry
        from solutions.ch1_transformer_math.build_a_transformer import layer_norm
        try:  # the learner's own notebook code breaks the CUDA context
            torch.arange(3, device="cuda")[torch.tensor([7], device="cuda")].sum().item()
            torch.cuda.synchronize()
        except RuntimeError as error:
            print("CUDA broken:", "device-side assert" in str(error))
        check(layer_norm)
        bad = grade(registry.get("ch1.layer_norm"), lambda x, w, b, eps=1e-5: x.cuda())
        print("hard-coded:", bad.status, "calls .cuda()" in bad.failure.detail)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COURSE_DEVICE": "cuda"})
    assert "CUDA broken: True" in done.stdout, done.stdout + done.stderr
    assert "✓ ch1.layer_norm passed" in done.stdout and "graded on the CPU" in done.stdout, done.stdout + done.stderr
    assert "hard-coded: error True" in done.stdout, done.stdout + done.stderr


def test_check_raises_check_failed_for_a_hard_coded_gpu():
    with pytest.raises(CheckFailed, match="calls .cuda()"):
        check(_hard_coded_cuda, "ch1.layer_norm")


def _gini_on_the_cpu(values):
    x = values.abs().double().sort().values
    n = x.shape[0]
    i = torch.arange(1, n + 1, dtype=torch.float64)  # on the CPU whatever the input's device
    return ((2 * i - n - 1) * x).sum().item() / (n * x.sum().item())


def _layer_norm_back_to_the_cpu(x, w, b, eps=1e-5):
    return LAYER_NORM.reference(x, w, b, eps).cpu()


@pytest.mark.parametrize("exercise_id, fn, said", [
    ("ch5.gini", _gini_on_the_cpu, "Expected all tensors to be on the same device"),
    ("ch1.layer_norm", _layer_norm_back_to_the_cpu, "expected a tensor on GPU"),
], ids=["a CPU tensor meets the input", "the result moved to the CPU"])
def test_a_pass_on_the_cpu_that_would_fail_on_a_gpu_comes_with_a_note(exercise_id, fn, said, capsys):
    check(fn, exercise_id)  # passes: the verdict is the CPU's, on every machine
    out = capsys.readouterr().out
    assert "passed" in out and "on a GPU" in out and said in out and "device=x.device" in out
    assert "meta" not in out and "second_device.py" not in out  # the stand-in is not the learner's business


def test_a_device_correct_function_gets_no_note(capsys):
    check(LAYER_NORM.reference, "ch1.layer_norm")
    assert "on a GPU" not in capsys.readouterr().out
