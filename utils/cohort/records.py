"""Where a class's grades go: one JSON record per submission, then nbgrader's gradebook, a CSV
and a feedback page per learner. Only the instructor's process writes here, never learner code.

    <course>/grade-class/<chapter>/<student>/<notebook>.json   one record (what resuming reads)
    <course>/grade-class/<chapter>.csv                         one row per student and notebook
    <course>/gradebook.db                                      nbgrader's: formgrader, `nbgrader export`
    <course>/feedback/<student>/<chapter>/<notebook>.html      what `nbgrader release_feedback` hands back
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

from utils.cohort.submissions import GRADED, Submission
from utils.grading.feedback import ERROR, FAILED, NOT_ATTEMPTED, PASSED, TIMEOUT

STATUSES = (PASSED, FAILED, NOT_ATTEMPTED, ERROR, TIMEOUT)


class Store:
    """The finished records of one chapter, written as each submission completes."""

    def __init__(self, course: Path, chapter: str):
        self.course, self.chapter = course, chapter
        self.folder = course / "grade-class" / chapter

    def path(self, sub: Submission) -> Path:
        return self.folder / sub.student / f"{sub.notebook}.json"

    def reusable(self, sub: Submission, sha: str, fingerprint: str) -> dict | None:
        """The stored record of this very file, graded by these very graders (else None: grade it)."""
        try:
            record = json.loads(self.path(sub).read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("sha256") == sha and record.get("graders") == fingerprint else None

    def save(self, sub: Submission, record: dict) -> None:
        path = self.path(sub)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(record, indent=1))
        os.replace(part, path)


def flags(record: dict) -> list[str]:
    """Short labels for what stood out: tampering, crashes, time-outs, floods of output."""
    found = []
    if record.get("tampered"):
        found.append("tampered")
    if any("ended the grading process" in n or "ran past" in n or "CPU time" in n for n in record.get("notes", [])) \
            or any("ended the grading process" in (r.get("detail") or "") for r in record.get("exercises", [])):
        found.append("crashed")
    if any(r.get("status") == TIMEOUT for r in record.get("exercises", [])):
        found.append("timed-out")
    if record.get("output_size", 0) > len(record.get("output", "")):
        found.append("output-truncated")
    return found


# -- the CSV ------------------------------------------------------------------------------

COLUMNS = ["student", "notebook", "status", "score", "max_score", *STATUSES, "flags", "notes", "cpu_seconds",
           "landlock"]   # the Landlock version that confined the learner's code (0: none, the machine has none)


def write_csv(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for r in sorted(records, key=lambda r: (r["student"], r["notebook"])):
            counts = Counter(e["status"] for e in r.get("exercises", []))
            writer.writerow({"student": r["student"], "notebook": r["notebook"], "status": r["status"],
                             "score": r["score"], "max_score": r["max_score"], **{s: counts[s] for s in STATUSES},
                             "flags": " ".join(flags(r)), "notes": " | ".join(r.get("notes", [])),
                             "cpu_seconds": r.get("cpu_seconds", ""), "landlock": r.get("isolation", "")})
    return path


# -- nbgrader's gradebook -------------------------------------------------------------------

def write_gradebook(course: Path, chapter: str, records: list[dict], timestamps: dict[str, str | None]) -> Path:
    """Scores into `<course>/gradebook.db`, as `nbgrader autograde` would leave them. The assignment
    is created there (notebooks, graded cells, points) when `nbgrader generate_assignment` has not."""
    from nbgrader.api import Gradebook, MissingEntry

    from utils.grading import registry
    from utils.notebooks.pipeline import grade_id

    exercises = registry.for_chapter(chapter)
    db = course / "gradebook.db"
    from utils.notebooks.execute import scripts_first

    if str(Path(sys.executable).parent) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts_first()["PATH"]   # Gradebook() runs `alembic` in this process's environment
    with Gradebook(f"sqlite:///{db}") as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # SQLAlchemy's autoflush warnings from inside nbgrader's add_submission
        try:
            gb.find_assignment(chapter)
        except MissingEntry:
            gb.update_or_create_assignment(chapter)
        for ex in exercises:
            gb.update_or_create_notebook(ex.notebook_stem, chapter)
            try:
                gb.find_grade_cell(grade_id(ex.id), ex.notebook_stem, chapter)
            except MissingEntry:
                gb.update_or_create_grade_cell(grade_id(ex.id), ex.notebook_stem, chapter,
                                               max_score=ex.points, cell_type="code")
        points = {grade_id(ex.id): ex.points for ex in exercises}
        for student in sorted({r["student"] for r in records}):
            gb.update_or_create_student(student)
            try:
                gb.find_submission(chapter, student)
            except MissingEntry:
                gb.add_submission(chapter, student, **({"timestamp": timestamps[student]}
                                                       if timestamps.get(student) else {}))
        for r in records:
            passed = {e["exercise"] for e in r.get("exercises", []) if e["status"] == PASSED}
            for ex in exercises:
                if ex.notebook_stem != r["notebook"]:
                    continue
                grade = gb.find_grade(grade_id(ex.id), r["notebook"], chapter, r["student"])
                grade.auto_score = points[grade_id(ex.id)] if ex.id in passed else 0
                grade.needs_manual_grade = False
        gb.db.commit()
    return db


# -- feedback pages -------------------------------------------------------------------------

STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}"
         "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
         "vertical-align:top;text-align:left}.passed{color:#176b2c}.failed,.error,.timeout{color:#a61b1b}"
         "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;max-height:20rem;overflow:auto}")


def feedback_html(record: dict, chapter: str) -> str:
    """The learner's page: score, what happened to the notebook, and each exercise's verdict and hint.
    Everything the learner's code or notebook produced is escaped."""
    esc = html.escape
    rows = []
    for e in record.get("exercises", []):
        detail = esc(e.get("detail") or "")
        if e.get("case"):
            detail = f"<b>{esc(e['case'])}</b>: {detail}"
        if e.get("hint"):
            detail += f"<br><i>Hint:</i> {esc(e['hint'])}"
        rows.append(f"<tr><td><code>{esc(e['exercise'])}</code></td>"
                    f"<td class='{esc(e['status'])}'>{esc(e['status'])}</td><td>{detail}</td></tr>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in record.get("notes", []))
    output = ""
    if record.get("output"):
        more = record.get("output_size", 0) - len(record["output"])
        tail = f"\n… and {more:,} more characters, not kept" if more > 0 else ""
        output = f"<h2>What your code printed</h2><pre>{esc(record['output'])}{esc(tail)}</pre>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(chapter)}: {esc(record['notebook'])}"
            f"</title><style>{STYLE}</style></head><body>"
            f"<h1>{esc(chapter)} · {esc(record['notebook'])}.ipynb</h1>"
            f"<p>Student <b>{esc(record['student'])}</b>: score <b>{record['score']} / {record['max_score']}</b> "
            f"({esc(record['status'])})</p>"
            + (f"<ul>{notes}</ul>" if notes else "")
            + ("<table><tr><th>exercise</th><th>status</th><th>detail</th></tr>" + "".join(rows) + "</table>"
               if rows else "")
            + output + "</body></html>\n")


def write_feedback(course: Path, chapter: str, records: list[dict], submitted: Path | None) -> list[Path]:
    """One page per learner and notebook, where nbgrader's release_feedback looks for it (with the
    submission's timestamp.txt and submission_secret.txt beside it, as generate_feedback leaves them)."""
    written = []
    for r in records:
        folder = course / "feedback" / r["student"] / chapter
        folder.mkdir(parents=True, exist_ok=True)
        page = folder / f"{r['notebook']}.html"
        page.write_text(feedback_html(r, chapter), encoding="utf-8")
        written.append(page)
        if submitted is not None:
            for name in ("timestamp.txt", "submission_secret.txt"):
                source = submitted / r["student"] / chapter / name
                if source.is_file():
                    shutil.copyfile(source, folder / name)
    return written


def write_autograded(course: Path, chapter: str, records: list[dict], files: dict[str, Path],
                     submitted: Path | None) -> list[Path]:
    """nbgrader's `autograded/<student>/<chapter>/<notebook>.ipynb`: the submission, each check cell showing
    its verdict. The formgrader lists a submission as graded, and `nbgrader generate_feedback` works, only
    with it. `files`: "<student>/<notebook>" → the submitted file."""
    written = []
    for r in records:
        source = files.get(f"{r['student']}/{r['notebook']}")
        if r["status"] != GRADED or source is None:
            continue
        nb = json.loads(source.read_bytes())
        verdicts = {e["exercise"].replace(".", "-", 1): e for e in r["exercises"]}
        for cell in nb["cells"]:
            verdict = verdicts.get(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
            if verdict is not None and cell.get("cell_type") == "code":
                text = f"{verdict['status']}" + (f": {verdict['detail']}" if verdict.get("detail") else "")
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text + "\n"}]
        target = course / "autograded" / r["student"] / chapter / f"{r['notebook']}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1))
        stamp = submitted / r["student"] / chapter / "timestamp.txt" if submitted else None
        if stamp is not None and stamp.is_file():
            shutil.copyfile(stamp, target.parent / "timestamp.txt")
        written.append(target)
    return written


def summary(records: list[dict]) -> str:
    counts = Counter(r["status"] for r in records)
    full = sum(1 for r in records if r["status"] == GRADED and r["score"] == r["max_score"] and r["max_score"])
    flagged = Counter(f for r in records for f in flags(r))
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    extra = ", ".join(f"{n} {f}" for f, n in sorted(flagged.items()))
    return f"{len(records)} notebooks: {', '.join(parts)}; {full} with full marks" + (f"; flagged: {extra}" if extra else "")
