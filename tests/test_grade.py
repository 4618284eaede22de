"""`python -m utils.grade`: grades saved notebooks in a fresh kernel, never edits them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = "from utils.grading import check\nimport torch\nimport torch.nn.functional as F"


def notebook(tmp_path: Path, body: str, *, extra_cells: tuple[str, ...] = ()) -> Path:
    """A minimal learner notebook for ch1.layer_norm whose answer is `body`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), nbformat.v4.new_code_cell(SETUP),
                *(nbformat.v4.new_code_cell(c) for c in extra_cells),
                nbformat.v4.new_code_cell(f"def layer_norm(x, w, b, eps=1e-5):\n    {body}"),
                nbformat.v4.new_code_cell("check(layer_norm)",
                                          metadata={"nbgrader": {"grade_id": "ch1-layer_norm"}})]
    path = tmp_path / "ch1_transformer_math" / "build_a_transformer.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


def grade(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "utils.grade", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def statuses(path: Path, *flags: str) -> tuple[int, dict]:
    proc = grade("--json", path, *flags)
    results = json.loads(proc.stdout)["results"]
    return proc.returncode, {r["exercise"]: r for r in results}


def test_grading_a_passing_notebook_exits_zero_and_leaves_the_file_untouched(tmp_path):
    path = notebook(tmp_path, "return F.layer_norm(x, w.shape, w, b, eps)")
    before = path.read_bytes()
    code, results = statuses(path)
    assert code == 0 and results["ch1.layer_norm"]["status"] == "passed"
    assert path.read_bytes() == before


@pytest.mark.parametrize("body,status", [
    ("raise NotImplementedError()", "not attempted"),
    ("return x", "failed"),
    ("return x @ torch.ones(2, 2)", "error"),
    ("return (", "error"),
])
def test_each_failure_kind_gets_its_status_and_a_nonzero_exit(tmp_path, body, status):
    code, results = statuses(notebook(tmp_path, body))
    assert code == 1 and results["ch1.layer_norm"]["status"] == status


def test_a_learner_infinite_loop_becomes_a_timeout(tmp_path):
    path = notebook(tmp_path, "while True: pass")
    code, results = statuses(path)
    assert code == 1 and results["ch1.layer_norm"]["status"] == "timeout"


def test_a_hanging_cell_is_interrupted_and_grading_goes_on(tmp_path):
    path = notebook(tmp_path, "return F.layer_norm(x, w.shape, w, b, eps)", extra_cells=("while True: pass",))
    code, results = statuses(path, "--cell-timeout", "3")
    assert results["ch1.layer_norm"]["status"] == "passed"


def test_table_lists_exercises_and_totals_per_chapter(tmp_path):
    proc = grade(notebook(tmp_path, "return x"))
    assert "ch1.layer_norm" in proc.stdout and "failed" in proc.stdout
    assert "ch1: 0 passed, 1 failed, 0 not attempted, 0 error, 0 timeout (of 1)" in proc.stdout


@pytest.mark.parametrize("content", ['{"cells": ', "not json at all", '{"hello": 1}'])
def test_a_corrupt_file_gets_a_one_line_error_not_a_traceback(tmp_path, content):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    proc = grade(path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1


def test_list_prints_where_every_exercise_lives():
    proc = grade("--list")
    assert proc.returncode == 0
    assert "ch1.layer_norm" in proc.stdout and "solutions/ch1_transformer_math/build_a_transformer.py" in proc.stdout
