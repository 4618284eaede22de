"""`python -m utils.grade`: grades saved notebooks in a fresh kernel, never edits them.

Starting a kernel costs seconds (it imports torch and TransformerLens), so one notebook
holds an attempt of every kind, graded by one real run of the command; the rest of the
command (errors, --list, the table) is tested in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils import grade as grade_cli

ROOT = Path(__file__).resolve().parents[1]
SETUP = "from utils.grading import check\nimport torch\nimport torch.nn.functional as F"
# exercise → (its learner's attempt, the status it must get): one of each kind
ATTEMPTS = {
    "ch1.layer_norm": ("def layer_norm(x, w, b, eps=1e-5):\n    return F.layer_norm(x, w.shape, w, b, eps)",
                       "passed"),
    "ch1.embed": ("def embed(tokens, W_E):\n    raise NotImplementedError()", "not attempted"),
    "ch1.pos_embed": ("def pos_embed(tokens, W_pos):\n    return W_pos", "failed"),
    "ch1.gelu_new": ("def gelu_new(x):\n    return x @ torch.ones(2, 2)", "error"),
    "ch1.apply_causal_mask": ("def apply_causal_mask(scores):\n    return (", "error"),
    "ch1.attention_pattern": ("def attention_pattern(scores):\n    while True: pass", "timeout"),
}
HANGING_CELL = "while True: pass"


def notebook(tmp_path: Path, cells: list[str], grade_ids: list[str]) -> Path:
    """A learner notebook (named like 1.1) with these code cells and one check cell per exercise."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), nbformat.v4.new_code_cell(SETUP),
                *(nbformat.v4.new_code_cell(c) for c in cells),
                *(nbformat.v4.new_code_cell(f"check({ex_id.split('.')[1]})",
                                            metadata={"nbgrader": {"grade_id": ex_id.replace('.', '-')}})
                  for ex_id in grade_ids)]
    path = tmp_path / "ch1_transformer_math" / "build_a_transformer.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One real run of the command on a notebook with every kind of attempt and a hanging cell."""
    cells = [source for source, _ in ATTEMPTS.values()]
    path = notebook(tmp_path_factory.mktemp("grade"), [cells[0], HANGING_CELL, *cells[1:]], list(ATTEMPTS))
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "utils.grade", "--json", "--cell-timeout", "3", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    results = {r["exercise"]: r for r in json.loads(proc.stdout)["results"]}
    return proc, results, path.read_bytes() == before


@pytest.mark.parametrize("exercise_id", list(ATTEMPTS))
def test_each_kind_of_attempt_gets_its_status(graded, exercise_id):
    _, results, _ = graded
    assert results[exercise_id]["status"] == ATTEMPTS[exercise_id][1], results[exercise_id]


def test_a_hanging_cell_is_interrupted_and_grading_goes_on(graded):
    _, results, _ = graded
    assert results["ch1.layer_norm"]["status"] == "passed"  # defined before the hanging cell, graded after it


def test_failures_give_a_nonzero_exit_and_the_file_is_untouched(graded):
    proc, _, untouched = graded
    assert proc.returncode == 1 and untouched


def test_a_passing_notebook_exits_zero(monkeypatch, capsys):
    monkeypatch.setattr(grade_cli, "grade_notebook", lambda path, **kw: [
        {"exercise": "ch1.layer_norm", "status": "passed", "notebook": str(path)}])
    assert grade_cli.main(["any.ipynb"]) == 0


def test_table_lists_exercises_and_totals_per_chapter(graded):
    _, results, _ = graded
    text = grade_cli.table(list(results.values()))
    assert "ch1.pos_embed" in text and "failed" in text
    assert "ch1: 1 passed, 1 failed, 1 not attempted, 2 error, 1 timeout (of 6)" in text


@pytest.mark.parametrize("content", ['{"cells": ', "not json at all", '{"hello": 1}'])
def test_a_corrupt_file_gets_a_one_line_error_not_a_traceback(tmp_path, capsys, content):
    path = tmp_path / "broken.ipynb"
    path.write_text(content)
    assert grade_cli.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_list_prints_where_every_exercise_lives(capsys):
    assert grade_cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "ch1.layer_norm" in out and "solutions/ch1_transformer_math/build_a_transformer.py" in out
