"""Grade a class on Dask: one task per submitted notebook, a warm grader on every worker.

The instructor's process finds the submissions, sends each notebook's bytes to a worker and
writes every record as it comes back (so an interrupted run resumes where it stopped); the
workers never see the course folder, the gradebook or other learners' files. Each worker
keeps a zygote (`sandbox.py`) that grades in forked, confined children.

A local cluster by default; `scheduler="tcp://host:8786"` uses an existing one, e.g. started by
dask-jobqueue on SLURM or the Dask Kubernetes operator (README "Teaching a cohort").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from utils.cohort import records, submissions
from utils.cohort.sandbox import Limits

ROOT = Path(__file__).resolve().parents[2]
# For the class test only: students whose grading kills the Dask worker ("name" every time,
# "name:once" the first time), to show that a dead worker costs a retry, never the batch.
KILL_WORKER_ENV = "COURSE_GRADE_CLASS_KILL_WORKER"


def resolve_chapter(name: str) -> str:
    """"ch2", "2" or "ch2_superposition" → "ch2_superposition"."""
    from utils.notebooks.pipeline import CHAPTERS

    chapters = sorted(p.name for p in CHAPTERS.glob("ch*_*") if p.is_dir())
    short = name if name.startswith("ch") else f"ch{name}"
    found = [c for c in chapters if c == name or c.split("_")[0] == short]
    if len(found) != 1:
        raise SystemExit(f"unknown chapter {name!r}: one of {', '.join(chapters)}")
    return found[0]


def graders_fingerprint(chapter: str) -> str:
    """Changes whenever what grades this chapter changes: a stored record of an older grader is not reused."""
    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "utils" / "grading" / chapter).glob("*.py"), *(ROOT / "solutions" / chapter).glob("*.py"),
                        *(ROOT / "utils" / "cohort").glob("*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# -- on the workers -------------------------------------------------------------------------

_zygotes: dict[str, subprocess.Popen] = {}
_lock = threading.Lock()


def _zygote(chapter: str) -> subprocess.Popen:
    proc = _zygotes.get(chapter)
    if proc is None or proc.poll() is not None:
        proc = subprocess.Popen([sys.executable, "-m", "utils.cohort.sandbox", chapter], cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if json.loads(proc.stdout.readline() or "{}").get("ready") is not True:
            proc.kill()
            raise RuntimeError(f"the grader for {chapter} could not start on this worker")
        _zygotes[chapter] = proc
    return proc


def start_grader(chapter: str) -> bool:
    """Warm this worker's grader up before the first task reaches it."""
    with _lock:
        _zygote(chapter)
    return True


def grade_on_worker(chapter: str, request: dict) -> dict:
    """The Dask task: hand one submission to this worker's zygote, wait for its record."""
    _maybe_die(request["student"])
    with _lock:
        proc = _zygote(chapter)
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the worker's grader stopped while grading this submission")
    return json.loads(line)


def _maybe_die(student: str) -> None:
    for entry in filter(None, os.environ.get(KILL_WORKER_ENV, "").split(",")):
        name, _, when = entry.partition(":")
        if name != student:
            continue
        marker = Path(os.environ.get("COURSE_GRADE_CLASS_KILL_DIR", "/tmp")) / f"killed-{name}"
        if when == "once" and marker.exists():
            return
        marker.touch()
        os._exit(1)


# -- on the instructor's machine ---------------------------------------------------------------

@dataclass
class Report:
    chapter: str
    course: Path
    records: list[dict]
    graded: int = 0           # graded in this run
    reused: int = 0           # finished in an earlier run, not regraded
    seconds: float = 0.0      # wall-clock time of this run
    startup_seconds: float = 0.0   # of which starting the cluster and warming the graders up
    grading_seconds: float = 0.0   # of which grading, first task sent to last record back
    workers: int = 0
    outputs: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        rate = self.graded / (self.seconds / 60) / max(self.workers, 1) if self.graded and self.seconds else 0
        open_files = sum(1 for r in self.records if r["status"] == submissions.GRADED and not r.get("isolation"))
        warning = (f"\nwarning: {open_files} notebooks were graded without file isolation (this kernel has no "
                   "Landlock): their code could read and write what this user can; README \"Teaching a cohort\" "
                   "says how to grade in a container" if open_files else "")
        return (f"{self.chapter}: {records.summary(self.records)}\n"
                f"graded {self.graded}, reused {self.reused} from an earlier run, in {self.seconds:.1f} s on "
                f"{self.workers} workers ({rate:.1f} submissions per minute per worker)" + warning)


def course_folder(folder: Path, nbgrader_layout: bool, course: Path | None) -> Path:
    """Where results go: the nbgrader course (the folder above `submitted/`), or beside a plain folder."""
    if course is not None:
        return course
    if nbgrader_layout and folder.name == "submitted":
        return folder.parent
    return folder.parent / f"{folder.name}-graded"


def grade_class(chapter: str, folder: str | Path, *, course: str | Path | None = None, workers: int | None = None,
                scheduler: str | None = None, limits: Limits | None = None, log=print) -> Report:
    """Grade every learner's notebooks of `chapter` found in `folder`; see the module docstring."""
    from dask.distributed import Client, LocalCluster, as_completed
    import dask

    chapter = resolve_chapter(chapter)
    folder = Path(folder).resolve()
    found = submissions.find(chapter, folder)
    course = course_folder(folder, found.nbgrader_layout, Path(course).resolve() if course else None)
    if course.resolve().is_relative_to(folder):
        raise SystemExit(f"the results must not go inside the submissions folder {folder}: pass --course")
    store = records.Store(course, chapter)
    fingerprint = graders_fingerprint(chapter)
    limits = limits or Limits()
    started = time.monotonic()
    report = Report(chapter, course, [])
    todo: dict[str, tuple[submissions.Submission, str]] = {}
    for sub in found.submissions:
        sha = sub.sha256()
        if sub.path is None:
            report.records.append(_missing(sub, chapter))
        elif (old := store.reusable(sub, sha, fingerprint)) is not None:
            report.records.append(old)
            report.reused += 1
        else:
            todo[sub.key] = (sub, sha)
    for path in found.ignored:
        log(f"ignored {path}: it is none of {chapter}'s notebooks")
    if todo:
        # a task that kills its worker is retried once, then marked; a worker holds one task at a time,
        # so a dying worker takes no other learner's submission down with it
        with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0,
                              "distributed.worker.daemon": False, "distributed.logging.distributed": "error"}):
            cluster = None if scheduler else LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                                          threads_per_worker=1, processes=True,
                                                          dashboard_address=":0", silence_logs=40)
            with Client(scheduler or cluster) as client:
                report.workers = len(client.scheduler_info()["workers"])
                client.run(start_grader, chapter)
                report.startup_seconds = time.monotonic() - started
                log(f"{chapter}: grading {len(todo)} notebooks on {report.workers} workers "
                    f"({report.reused} already graded)")
                # one key prefix for all: Dask then queues them as one group, handing a worker a task at a time
                futures = {client.submit(grade_on_worker, chapter, _request(sub, limits), retries=1, pure=False,
                                         key=("grade-class", chapter, key, sha[:12])): key
                           for key, (sub, sha) in todo.items()}
                for future in as_completed(futures):
                    sub, sha = todo[futures[future]]
                    record = _collect(future, sub, chapter)
                    record.update(sha256=sha, graders=fingerprint)
                    if record["status"] not in (submissions.WORKER_DIED, submissions.NOT_GRADED):
                        store.save(sub, record)
                    report.records.append(record)
                    report.graded += 1
                report.grading_seconds = time.monotonic() - started - report.startup_seconds
            if cluster is not None:
                cluster.close()
    report.seconds = time.monotonic() - started
    report.outputs = write_results(course, chapter, report.records, folder if found.nbgrader_layout else None,
                                   {s.student: s.timestamp for s in found.submissions},
                                   {s.key: s.path for s in found.submissions if s.path is not None})
    return report


def _request(sub: submissions.Submission, limits: Limits) -> dict:
    return {"student": sub.student, "notebook": sub.notebook, "limits": asdict(limits),
            "data": base64.b64encode(sub.path.read_bytes()).decode()}


def _collect(future, sub: submissions.Submission, chapter: str) -> dict:
    from distributed.scheduler import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        return _unfinished(sub, chapter, submissions.WORKER_DIED,
                           "the Dask worker grading this notebook died, twice: it was not graded (run again to retry)")
    except Exception as exc:  # noqa: BLE001 — one task's failure must not stop the class
        return _unfinished(sub, chapter, submissions.NOT_GRADED, f"grading failed: {type(exc).__name__}: {exc}")


def _max_score(chapter: str, notebook: str) -> int:
    from utils.grading import registry

    return sum(ex.points for ex in registry.for_chapter(chapter) if ex.notebook_stem == notebook)


def _unfinished(sub: submissions.Submission, chapter: str, status: str, note: str) -> dict:
    return {"student": sub.student, "notebook": sub.notebook, "status": status, "score": 0,
            "max_score": _max_score(chapter, sub.notebook), "exercises": [], "notes": [note], "tampered": []}


def _missing(sub: submissions.Submission, chapter: str) -> dict:
    return _unfinished(sub, chapter, submissions.MISSING, f"no {sub.notebook}.ipynb was submitted")


def write_results(course: Path, chapter: str, all_records: list[dict], submitted: Path | None,
                  timestamps: dict[str, str | None], files: dict[str, Path]) -> dict[str, Path]:
    records.write_feedback(course, chapter, all_records, submitted)
    records.write_autograded(course, chapter, all_records, files, submitted)
    return {"csv": records.write_csv(course / "grade-class" / f"{chapter}.csv", all_records),
            "gradebook": records.write_gradebook(course, chapter, all_records, timestamps),
            "feedback": course / "feedback"}
