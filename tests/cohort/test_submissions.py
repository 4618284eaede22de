"""Finding a class's notebooks, and telling a gradable one from a damaged, foreign or tampered one."""

from __future__ import annotations

import json

from utils.cohort import simulate, submissions
from utils.cohort.submissions import GRADED, UNREADABLE, WRONG_NOTEBOOK

CHAPTER = "ch1_transformer_math"   # two notebooks: matching by name and by content both matter


def notebook(stem: str, **kw) -> bytes:
    return simulate.to_bytes(simulate.answered(CHAPTER, stem, **kw))


def test_nbgrader_layout_gives_every_student_every_notebook_missing_ones_included(tmp_path):
    (tmp_path / "ann" / CHAPTER).mkdir(parents=True)
    (tmp_path / "ann" / CHAPTER / "build_a_transformer.ipynb").write_bytes(notebook("build_a_transformer"))
    (tmp_path / "ann" / CHAPTER / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")
    (tmp_path / "bob" / CHAPTER).mkdir(parents=True)
    found = submissions.find(CHAPTER, tmp_path)
    assert found.nbgrader_layout
    paths = {s.key: s.path for s in found.submissions}
    assert paths["ann/build_a_transformer"].name == "build_a_transformer.ipynb"
    assert paths["ann/circuits_and_induction"] is None and paths["bob/build_a_transformer"] is None
    assert found.submissions[0].timestamp.startswith("2026-12-01")


def test_plain_folder_matches_renamed_notebooks_by_their_check_cells(tmp_path):
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / "my work (1).ipynb").write_bytes(notebook("circuits_and_induction"))
    (tmp_path / "cy" / "build_a_transformer.ipynb").write_bytes(notebook("build_a_transformer"))
    found = submissions.find(CHAPTER, tmp_path)
    assert not found.nbgrader_layout
    assert {s.notebook: s.path.name for s in found.submissions} == {
        "build_a_transformer": "build_a_transformer.ipynb", "circuits_and_induction": "my work (1).ipynb"}


def test_inspect_tells_damaged_foreign_and_tampered_notebooks_apart():
    good = notebook("build_a_transformer")
    assert submissions.inspect(good, CHAPTER, "build_a_transformer").status == GRADED
    assert submissions.inspect(good[:500], CHAPTER, "build_a_transformer").status == UNREADABLE
    assert submissions.inspect(b'{"cells": 3}', CHAPTER, "build_a_transformer").status == UNREADABLE
    assert submissions.inspect(good, CHAPTER, "circuits_and_induction").status == WRONG_NOTEBOOK
    nb = json.loads(good)
    checks = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    checks[0]["source"] = "print('passed')"
    nb["cells"].remove(checks[1])
    seen = submissions.inspect(json.dumps(nb).encode(), CHAPTER, "build_a_transformer")
    assert seen.status == GRADED and len(seen.tampered) == 2
    assert "edited" in seen.notes[0] and "deleted" in seen.notes[1]
