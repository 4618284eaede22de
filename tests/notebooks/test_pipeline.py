"""The notebook pipeline: learner notebooks stay consistent with the solutions and the registry."""

from __future__ import annotations

import ast
import inspect
import re

import nbformat
import pytest

from utils.grading import registry
from utils.notebooks import pipeline

NOTEBOOKS = pipeline.learner_notebooks()
IDS = [p.relative_to(pipeline.CHAPTERS).as_posix() for p in NOTEBOOKS]


def test_there_are_learner_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_learner_notebook_is_synced_and_has_no_outputs(path):
    assert pipeline.is_synced(path), f"run `python -m utils.notebooks sync` ({path.name} is out of date)"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_learner_notebook_has_a_colab_badge_and_set_up_cell_from_the_one_url(path):
    nb = nbformat.read(path, as_version=4)
    url = pipeline.repository_url()
    assert pipeline.colab_badge(path) in nb.cells[0].source and url.removeprefix("https://github.com/") in nb.cells[0].source
    assert "![" not in nb.cells[0].source, "an image in the title cell is broken offline (utils.notebooks.pipeline.colab_badge)"
    assert nb.cells[1].source == pipeline.colab_cell_source() and url in nb.cells[1].source


def test_every_exercise_lives_in_exactly_one_learner_notebook():
    placed: dict[str, int] = {}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for ex_id, (stub, check) in pipeline.exercise_cells(nb, pipeline.notebook_exercises(path)).items():
            assert stub is not None and check is not None and stub < check, ex_id
            placed[ex_id] = placed.get(ex_id, 0) + 1
    assert placed == {ex_id: 1 for ex_id in registry.load_all()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stubs_raise_not_implemented_and_match_the_reference_signature(path):
    nb = nbformat.read(path, as_version=4)
    exercises = pipeline.notebook_exercises(path)
    for ex_id, (stub, _) in pipeline.exercise_cells(nb, exercises).items():
        source = nb.cells[stub].source
        assert "raise NotImplementedError" in source, f"{ex_id}: the learner's stub contains an answer"
        func = ast.parse(source).body[0]
        stub_params = [a.arg for a in func.args.args + func.args.kwonlyargs]
        ref_params = list(inspect.signature(exercises[ex_id].reference).parameters)
        assert stub_params == ref_params, f"{ex_id}: stub {stub_params} vs reference {ref_params}"
        assert ast.get_docstring(func), f"{ex_id}: the stub needs a docstring saying what to return"
        reference_doc = inspect.getdoc(exercises[ex_id].reference)
        assert ast.get_docstring(func) == reference_doc, f"{ex_id}: the stub's docstring is not the reference's"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercise_intro_states_id_difficulty_and_time(path):
    nb = nbformat.read(path, as_version=4)
    exercises = pipeline.notebook_exercises(path)
    for ex_id, (stub, _) in pipeline.exercise_cells(nb, exercises).items():
        intro = nb.cells[stub - 1].source
        assert intro.rstrip().endswith(pipeline.exercise_line(exercises[ex_id]))
        assert len(intro.splitlines()) > 2, f"{ex_id}: say what the exercise is for"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_solved_and_nbgrader_notebooks_contain_the_reference_source(path):
    solved = pipeline.solved_notebook(path)
    marked = pipeline.nbgrader_notebook(path)
    exercises = pipeline.notebook_exercises(path)
    for ex_id, (stub, check) in pipeline.exercise_cells(solved, exercises).items():
        assert solved.cells[stub].source == pipeline.reference_source(exercises[ex_id])
        body = marked.cells[stub].source
        assert body.count("### BEGIN SOLUTION") == 1 and body.count("### END SOLUTION") == 1
        assert marked.cells[stub].metadata["nbgrader"]["solution"] is True
        assert marked.cells[check].metadata["nbgrader"] == {
            "grade": True, "grade_id": ex_id.replace(".", "-"), "locked": True, "points": exercises[ex_id].points,
            "schema_version": 3, "solution": False, "task": False}


def test_nbgrader_markers_keep_signature_and_docstring_outside_the_solution():
    ex = registry.get("ch1.layer_norm")
    marked = pipeline.reference_source(ex, nbgrader_markers=True)
    before = marked.split("### BEGIN SOLUTION")[0]
    assert before.lstrip().startswith("def layer_norm(") and '"""' in before
    stripped = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "raise NotImplementedError()", marked, flags=re.S)
    ast.parse(stripped)


def test_index_and_readme_link_every_learner_notebook():
    index = "".join(c.source for c in nbformat.read(pipeline.CHAPTERS / "index.ipynb", as_version=4).cells)
    readme = (pipeline.ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.relative_to(pipeline.CHAPTERS).as_posix() in index
        assert path.relative_to(pipeline.ROOT).as_posix() in readme


@pytest.mark.parametrize("path", [*NOTEBOOKS, pipeline.CHAPTERS / "index.ipynb"], ids=[*IDS, "index.ipynb"])
def test_notebooks_carry_what_jupyterlab_writes(path):
    """nbformat 4.5, unique cell ids, the course kernel's metadata: JupyterLab opens them unmodified."""
    nb = nbformat.read(path, as_version=4)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    ids = [c.get("id") for c in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    assert nb.metadata["kernelspec"] == pipeline.KERNELSPEC
    info = dict(nb.metadata["language_info"])
    assert info.pop("version") and info == {k: v for k, v in pipeline.language_info().items() if k != "version"}
    assert nbformat.writes(pipeline.as_jupyterlab_saves(nb), version=4).rstrip() == path.read_text().rstrip()


def test_sync_keeps_ids_and_gives_new_cells_stable_ones():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("a"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].id = "kept"
    for cell in nb.cells[1:]:
        del cell["id"]
    first = pipeline.as_jupyterlab_saves(nb)
    ids = [c.id for c in first.cells]
    assert ids[0] == "kept" and len(set(ids)) == 3
    again = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("a"), nbformat.v4.new_code_cell("x = 1"),
                                            nbformat.v4.new_code_cell("x = 1")])
    again.cells[0].id = "kept"
    for cell in again.cells[1:]:
        del cell["id"]
    assert [c.id for c in pipeline.as_jupyterlab_saves(again).cells] == ids


def test_the_stubs_submission_switches_every_live_training_flag_off():
    """The stubs submission (tests/notebooks/conftest.py) must not train: nothing learner-made runs there,
    and a live-training cell costs minutes of the suite. Every flag counts, wherever its cell sets it."""
    from tests.notebooks.conftest import LIVE_FLAGS, switch_off_live_training

    flagged = 0
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        flagged += sum(bool(re.search(rf"^({'|'.join(LIVE_FLAGS)}) = True", c.source, re.M)) for c in nb.cells)
        switch_off_live_training(nb)
        still_on = [c.source[:80] for c in nb.cells if re.search(rf"^({'|'.join(LIVE_FLAGS)}) = True", c.source, re.M)]
        assert not still_on, f"{path.name}: {still_on}"
    assert flagged >= 2
