"""Each chapter's notebooks run once per test session, and nbgrader runs them.

Executing a solved notebook is the most expensive thing the suite does, so it happens
once: the chapter is released with nbgrader, two submissions are autograded (the
released notebooks answered with the reference solutions, and the released stubs),
and every test reads what it needs from that one run:

- `tests/notebooks/test_nbgrader.py`: the release and both submissions' scores;
- `tests/notebooks/<chapter>/test_<notebook>.py`: the values its `READ` expressions
  take at the end of the reference submission (a probe cell appended to it), its
  printed output, and the executed notebook (`executed` and `values` fixtures);
  `STUBS_READ` does the same for the stubs submission (`chapter_run(...).stubs`).

Tests of one chapter share a process: under pytest-xdist they form one group
(`--dist loadgroup` with the scheduler in tests/conftest.py), so the chapter still runs only once.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from utils.notebooks import pipeline
from utils.notebooks.execute import kernel_env, probe_cell, probed_values, scripts_first

CHAPTERS = sorted({p.parent.name for p in pipeline.learner_notebooks()})
# Flags of optional live-training cells: on in the reference submission (its results are
# tested), off in the stubs submission (nothing there to train with).
LIVE_FLAGS = ("LIVE_TRAINING", "TRAIN_YOURSELF")
CELL_TIMEOUT = 1800  # seconds: a live-training cell on a busy 2-core machine
# Where the notebooks compute (their setup()'s DEVICE): on a GPU in the GPU tier (COURSE_DEVICE=cuda);
# otherwise on utils.second_device's stand-in for one, so that a cell mixing CPU and GPU tensors fails
# here as it would on Colab's GPU runtime, while computing the same numbers as the CPU.
NOTEBOOK_DEVICE = os.environ.get("COURSE_NOTEBOOK_DEVICE") or (
    "meta" if os.environ.get("COURSE_DEVICE", "cpu") == "cpu" else os.environ["COURSE_DEVICE"])


def chapter_device(chapter: str) -> str:
    """NOTEBOOK_DEVICE, except that a chapter whose notebooks never put a tensor on DEVICE skips the
    stand-in (it would only slow them down; a real GPU is still used, as a learner's would be)."""
    uses_device = any("DEVICE" in "".join(c.source for c in nbformat.read(p, as_version=4).cells[3:])
                      for p in (pipeline.CHAPTERS / chapter).glob("*.ipynb"))
    return NOTEBOOK_DEVICE if uses_device or NOTEBOOK_DEVICE != "meta" else "cpu"


@dataclass
class Executed:
    """One notebook after a full run: its cells with outputs, its probe values, all it printed."""

    nb: nbformat.NotebookNode
    values: dict = field(default_factory=dict)

    @property
    def printed(self) -> str:
        return "".join(o.get("text", "") for cell in self.nb.cells if cell.cell_type == "code"
                       for o in cell.get("outputs", []) if o.get("output_type") == "stream")


@dataclass
class ChapterRun:
    chapter: str
    release: Path                           # nbgrader's release/<chapter>/
    scores: dict[str, tuple[float, float]]  # submission → (score, max score)
    reference: dict[str, Executed]          # notebook stem → the reference submission, run
    stubs: dict[str, Executed]              # notebook stem → the released stubs, run


def results_module(chapter: str, stem: str):
    """`tests/notebooks/<chapter>/test_<stem>.py`, whose READ says what to probe (None if absent)."""
    try:
        return importlib.import_module(f"tests.notebooks.{chapter}.test_{stem}")
    except ModuleNotFoundError:
        return None


def nbgrader(*args: str, cwd: Path, device: str = "cpu") -> None:
    env = kernel_env({"PATH": scripts_first()["PATH"], "COURSE_DEVICE": device})
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--Execute.timeout={CELL_TIMEOUT}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=4 * 3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def fill_in(released: nbformat.NotebookNode, solved: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student's submission: the released notebook with each solution cell answered."""
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solved.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in released.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    return released


def switch_off_live_training(nb: nbformat.NotebookNode) -> None:
    """Set every live-training flag to False, wherever in its cell it is set (after imports, say)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            for flag in LIVE_FLAGS:
                cell.source = re.sub(rf"^{flag} = True\b", f"{flag} = False", cell.source, flags=re.MULTILINE)


def run_chapter(chapter: str, out: Path) -> ChapterRun:
    """Release the chapter with nbgrader, autograde both submissions, read everything back."""
    pipeline.build(out=out, chapters=[chapter])   # only this chapter: every chapter run builds its own
    course = out / "nbgrader"
    nbgrader("generate_assignment", chapter, "--create", "--force", cwd=course)
    release = course / "release" / chapter
    notebooks = sorted(release.glob("*.ipynb"))
    assert notebooks, "generate_assignment released nothing"
    for path in notebooks:
        solved = pipeline.solved_notebook(pipeline.CHAPTERS / chapter / path.name)
        reference = fill_in(nbformat.read(path, as_version=4), solved)
        stubs = nbformat.read(path, as_version=4)
        switch_off_live_training(stubs)
        module = results_module(chapter, path.stem)
        for nb, read in ((reference, getattr(module, "READ", None)), (stubs, getattr(module, "STUBS_READ", None))):
            if read:
                nb.cells.append(probe_cell(read))
        for student, nb in (("reference", reference), ("stubs", stubs)):
            target = course / "submitted" / student / chapter / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    nbgrader("autograde", chapter, "--create", "--force", cwd=course, device=chapter_device(chapter))
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission(chapter, s).score, gb.find_submission(chapter, s).max_score)
                  for s in ("reference", "stubs")}

    def executed(student: str, path: Path) -> Executed:
        nb = nbformat.read(course / "autograded" / student / chapter / path.name, as_version=4)
        probes = [c for c in nb.cells if c.get("metadata", {}).get("course_probe")]
        return Executed(nb, probed_values(probes[-1]) if probes else {})

    return ChapterRun(chapter, release, scores,
                      reference={p.stem: executed("reference", p) for p in notebooks},
                      stubs={p.stem: executed("stubs", p) for p in notebooks})


@pytest.fixture(scope="session")
def chapter_run(tmp_path_factory):
    """`chapter_run(chapter)`: the chapter's one nbgrader run in this test process."""
    runs: dict[str, ChapterRun] = {}

    def get(chapter: str) -> ChapterRun:
        if chapter not in runs:
            runs[chapter] = run_chapter(chapter, tmp_path_factory.mktemp(chapter))
        return runs[chapter]

    return get


@pytest.fixture(scope="module")
def executed(request, chapter_run) -> Executed:
    """The reference submission of the notebook this test module is about (its module's PATH)."""
    path: Path = request.module.PATH
    return chapter_run(path.parent.name).reference[path.stem]


@pytest.fixture(scope="module")
def values(executed) -> dict:
    return executed.values
