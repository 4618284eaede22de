"""A simulated class of more than 40 learners, graded by `grade-class` on Dask, as an instructor would.

One class run (with a Dask worker killed under two of the submissions) feeds most tests; a
second run resumes it on an existing cluster (`--scheduler`); the command line grades a plain
folder. Each learner's expected status and score come from `utils.cohort.simulate`.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from utils.cohort import Limits, grade_class, records, simulate
from utils.cohort.cluster import KILL_WORKER_ENV
from utils.cohort.landlock import abi
from utils.grading.feedback import ERROR, FAILED, PASSED, TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHAPTER = "ch2_superposition"
# Tight limits keep the misbehaving learners cheap: a fifth of each exercise's time limit (CPU time, so a
# busy machine does not shorten it), 768 MB of memory.
LIMITS = Limits(memory_mb=768, submission_seconds=60, statement_seconds=1, exercise_scale=0.2)
ISOLATED = abi() > 0


def grader_mistakes() -> dict[str, list[tuple[str, str]]]:
    """One wrong implementation per exercise, from the graders' own variants, as a learner's cell."""
    from tests.grading.ch2_superposition.test_toy_models import VARIANTS
    from tests.grading.variants import Wrong

    from utils.notebooks.pipeline import reference_source

    others = {ex.id: reference_source(ex) for ex in simulate.exercises(CHAPTER, "toy_models")}
    found = {}
    for ex_id, variants in VARIANTS.items():
        name = ex_id.split(".")[1]
        if any(f"{name}(" in source for other, source in others.items() if other != ex_id):
            continue   # other answers call it: its mistake would cost them too
        for v in variants:
            source = inspect.getsource(v.fn)
            helpers = set(re.findall(r"\b(_\w+)\(", source)) - {v.fn.__name__}
            if isinstance(v, Wrong) and v.mistake and not helpers and source.startswith("def "):
                cell = "import math\nimport numpy as np\nimport einops\nimport torch\n\n" + \
                    re.sub(r"^def \w+\(", f"def {name}(", source, count=1)
                found[ex_id] = [(v.mistake, cell)]
                break
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory, monkeypatch_module):
    course = tmp_path_factory.mktemp("class")
    submitted = course / "submitted"
    learners = simulate.simulated_class(CHAPTER, submitted, course, mistakes=grader_mistakes(), copies=2)
    records.write_gradebook(course, CHAPTER, [], {})   # as `nbgrader generate_assignment` leaves it
    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in submitted.rglob("*.ipynb")}
    monkeypatch_module.setenv(KILL_WORKER_ENV, "reference-1:once,stubs-1")
    monkeypatch_module.setenv("COURSE_GRADE_CLASS_KILL_DIR", str(course))
    report = grade_class(CHAPTER, submitted, workers=2, limits=LIMITS)
    monkeypatch_module.delenv(KILL_WORKER_ENV)
    return learners, report, course, files


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def record_of(report, student: str, notebook: str = "toy_models") -> dict:
    return next(r for r in report.records if r["student"] == student and r["notebook"] == notebook)


def test_the_class_is_large_and_varied(graded):
    learners, report, *_ = graded
    assert len(learners) >= 40
    assert len(report.records) == len(learners)


def test_every_learner_gets_the_status_and_score_their_work_deserves(graded):
    learners, report, *_ = graded
    wrong = []
    for learner in learners:
        if learner.name == "stubs-1":
            continue  # its worker was killed on purpose: see test_a_dead_worker_costs_only_its_submission
        for stem, expected in learner.expected.items():
            r = record_of(report, learner.name, stem)
            if r["status"] != expected["status"] or (expected["score"] is not None and r["score"] != expected["score"]):
                wrong.append(f"{learner.name} ({learner.kind}): {r['status']} {r['score']}/{r['max_score']}, "
                             f"expected {expected['status']} {expected['score']}; notes {r['notes'][:2]}")
    assert not wrong, "\n".join(wrong)


def test_common_mistakes_fail_their_exercise_with_its_diagnosis(graded):
    learners, report, *_ = graded
    mistaken = [learner for learner in learners if learner.kind.startswith("mistake")]
    assert len(mistaken) >= 10
    for learner in mistaken:
        expected = learner.expected["toy_models"]
        verdicts = {e["exercise"]: e for e in record_of(report, learner.name)["exercises"]}
        failed = verdicts[expected["failed"]]
        assert failed["status"] == FAILED, (learner.kind, failed)
        assert failed.get("mistake") == learner.kind.split(": ")[2], (learner.kind, failed)
        assert all(v["status"] == PASSED for k, v in verdicts.items() if k != expected["failed"])


def test_misbehaving_code_costs_only_its_own_exercise(graded):
    learners, report, *_ = graded
    verdict = lambda student, ex: next(e for e in record_of(report, student)["exercises"] if e["exercise"] == ex)  # noqa: E731
    by_name = {learner.name: learner.expected["toy_models"] for learner in learners}
    loop = verdict("loop-in-function", by_name["loop-in-function"]["timeout"])
    assert loop["status"] == TIMEOUT and "CPU time" in loop["detail"]
    exits = verdict("os-exit-in-function", by_name["os-exit-in-function"]["error"])
    assert exits["status"] == ERROR and "ended the grading process" in exits["detail"]
    hog = verdict("memory-hog", by_name["memory-hog"]["error"])
    assert hog["status"] == ERROR and "MemoryError" in hog["detail"] and "768 MB" in hog["hint"]
    notes = lambda student: " ".join(record_of(report, student)["notes"])  # noqa: E731
    assert "ran past 1 s of CPU time" in notes("loop-at-top-level")
    assert "SystemExit" in notes("sys-exit")
    assert "ended the grading process" in notes("os-exit-at-top-level")
    flood = record_of(report, "ten-megabytes")
    assert flood["output_size"] >= 9_800_000 and len(flood["output"]) <= LIMITS.output_bytes
    assert "output-truncated" in records.flags(flood)


def test_tampered_and_broken_notebooks_say_what_happened(graded):
    _, report, *_ = graded
    for student in ("checks-edited", "checks-deleted"):
        r = record_of(report, student)
        assert "tampered" in records.flags(r) and len(r["tampered"]) == 20
        assert ("edited" if student == "checks-edited" else "deleted") in r["notes"][0]
    assert "not a readable Jupyter notebook" in record_of(report, "corrupted")["notes"][0]
    assert "not ch2_superposition/toy_models.ipynb" in record_of(report, "other-chapter")["notes"][0]
    assert record_of(report, "missing")["notes"] == ["no toy_models.ipynb was submitted"]


@pytest.mark.skipif(not ISOLATED, reason="Landlock is not available in this kernel: learner code is not confined")
@pytest.mark.parametrize("attempt", ["write-gradebook", "sqlite-gradebook", "read-other", "alter-other",
                                     "list-others", "read-solutions", "import-solutions", "kill-grader"])
def test_hostile_attempt_fails(graded, attempt):
    _, report, *_ = graded
    r = record_of(report, f"hostile-{attempt}")
    lines = [line for line in r["output"].splitlines() if line.startswith(simulate.HOSTILE_MARK)]
    assert lines, f"the attempt printed nothing: {r['notes']}"
    assert not lines[0].endswith("succeeded"), lines[0]
    assert r["status"] == "graded" and r["score"] == r["max_score"], "the attempt must not cost the attacker's grade"


def test_a_learner_who_rewrites_the_grader_gets_the_grade_of_their_own_code(graded):
    _, report, *_ = graded
    r = record_of(report, "hostile-patch-grader")
    assert r["score"] == 0, "the stubs scored points: the rewritten grader was used"
    assert any("your code changed the grader (utils.grading.kernel.grade)" in n for n in r["notes"]), r["notes"]
    others = [o["student"] for o in report.records if o is not r and "changed the grader" in " ".join(o["notes"])]
    assert not others, f"honest learners accused of changing the grader: {others}"


def test_hostile_learners_changed_no_file_but_their_own(graded):
    _, _, course, files = graded
    changed = [p for p, digest in files.items() if hashlib.sha256(p.read_bytes()).hexdigest() != digest]
    assert not changed
    assert "def generate_batch" not in " ".join(r.get("output", "") for r in graded[1].records)


def test_a_dead_worker_costs_only_its_submission(graded):
    _, report, *_ = graded
    assert record_of(report, "reference-1")["status"] == "graded", "killed once, retried, graded"
    died = record_of(report, "stubs-1")
    assert died["status"] == "worker-died" and "run again" in died["notes"][0]


def test_scores_reach_nbgrader_gradebook_csv_and_feedback_pages(graded):
    from nbgrader.api import Gradebook

    _, report, course, _ = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s.student.id: s.score for s in gb.assignment_submissions(CHAPTER)}
    assert scores == {r["student"]: r["score"] for r in report.records}
    with open(report.outputs["csv"]) as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert {k: float(v["score"]) for k, v in rows.items()} == scores
    assert rows["memory-hog"]["error"] == "1" and rows["corrupted"]["status"] == "unreadable"
    page = (course / "feedback" / "partial-0" / CHAPTER / "toy_models.html").read_text()
    assert "score <b>10 / 20</b>" in page and "NotImplementedError" in page
    flood = (course / "feedback" / "ten-megabytes" / CHAPTER / "toy_models.html").read_text()
    assert len(flood) < 100_000 and "more characters, not kept" in flood


@pytest.fixture(scope="module")
def existing_cluster():
    """A cluster started outside grade-class, as dask-jobqueue or Kubernetes would start one."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_rerun_grades_only_what_is_unfinished_on_an_existing_cluster(graded, existing_cluster):
    _, first, course, _ = graded
    store = records.Store(course, CHAPTER)
    interrupted = ["reference-0", "partial-1", "memory-hog"]   # as if the first run had stopped before them
    for student in interrupted:
        (store.folder / student / "toy_models.json").unlink()
    again = grade_class(CHAPTER, course / "submitted", scheduler=existing_cluster, limits=LIMITS)
    assert again.graded == len(interrupted) + 1   # and stubs-1, whose worker died
    assert again.reused == len(first.records) - again.graded - 1   # the missing notebook is never "graded"
    assert record_of(again, "stubs-1")["status"] == "graded"
    assert record_of(again, "reference-0")["score"] == 20


def test_command_line_grades_a_plain_folder(tmp_path, existing_cluster):
    folder = tmp_path / "handed-in"
    folder.mkdir()
    for name, nb in (("ada", simulate.answered(CHAPTER, "toy_models")),
                     ("grace", simulate.answered(CHAPTER, "toy_models", upto=3))):
        (folder / f"{name}.ipynb").write_bytes(simulate.to_bytes(nb))
    proc = subprocess.run([sys.executable, "-m", "utils.cohort", "ch2", str(folder), "--scheduler", existing_cluster],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 notebooks: 2 graded; 1 with full marks" in proc.stdout
    with open(tmp_path / "handed-in-graded" / "grade-class" / f"{CHAPTER}.csv") as f:
        assert {row["student"]: row["score"] for row in csv.DictReader(f)} == {"ada": "20", "grace": "3"}
