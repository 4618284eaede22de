"""How fast `grade-class` grades, against `nbgrader autograde`, and what a large class would take.

    python -m utils.cohort.bench                      # chapter 2's simulated class, both graders
    python -m utils.cohort.bench --projection         # also: every chapter, projected to 300 learners on 16 cores

Side by side, in one run, on one simulated class (`simulate.py`): `grade-class` grades every
submission; `nbgrader autograde`, which re-executes each notebook top to bottom, grades a sample of
its ordinary submissions (reference, partial, stubs; the misbehaving ones would only add nbgrader's
time-outs). Throughput is submissions per minute per core. The projection grades a small class of
every chapter on one worker and scales its per-notebook time to 300 learners on 16 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from utils.cohort import Limits, grade_class, simulate
from utils.cohort.cluster import resolve_chapter


def nbgrader_autograde(course: Path, chapter: str) -> float:
    """Seconds `nbgrader autograde` takes for every submission under `course/submitted/` (one process, serial)."""
    from utils.notebooks.execute import kernel_env, scripts_first

    env = kernel_env({"PATH": scripts_first()["PATH"], "COURSE_DEVICE": "cpu"})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", chapter, "--create", "--force",
                           "--Execute.timeout=600", f"--CourseDirectory.root={course}"],
                          cwd=course, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return time.monotonic() - started


def release(chapter: str, out: Path) -> Path:
    """An nbgrader course with the chapter generated (what an instructor starts from)."""
    from utils.notebooks import pipeline
    from utils.notebooks.execute import scripts_first

    pipeline.build(out=out, chapters=[chapter])
    course = out / "nbgrader"
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", chapter, "--create", "--force"],
                   cwd=course, env=scripts_first(), check=True, capture_output=True)
    return course


def side_by_side(chapter: str, sample: int, workers: int, tmp: Path) -> dict:
    course = release(chapter, tmp / "build")
    nbgrader_course = tmp / "nbgrader-course"
    shutil.copytree(course, nbgrader_course)
    learners = simulate.simulated_class(chapter, course / "submitted", course, copies=4)
    ordinary = [learner for learner in learners if learner.kind in ("reference", "partial", "stubs")][:sample]
    for learner in ordinary:
        shutil.copytree(course / "submitted" / learner.name, nbgrader_course / "submitted" / learner.name)
    report = grade_class(chapter, course / "submitted", workers=workers, limits=Limits(), log=lambda *_: None)
    ours = len(report.records) / (report.seconds / 60) / report.workers
    theirs_seconds = nbgrader_autograde(nbgrader_course, chapter)
    notebooks = len(ordinary) * len(simulate.exercises_by_notebook(chapter))
    theirs = notebooks / (theirs_seconds / 60)
    return {"chapter": chapter, "class": len(learners), "grade_class_notebooks": len(report.records),
            "grade_class_seconds": round(report.seconds, 1), "grade_class_workers": report.workers,
            "grade_class_startup_seconds": round(report.startup_seconds, 1),
            "grade_class_per_min_per_core": round(ours, 1),
            "nbgrader_notebooks": notebooks, "nbgrader_seconds": round(theirs_seconds, 1),
            "nbgrader_per_min_per_core": round(theirs, 2), "speedup": round(ours / theirs, 1)}


def projection(tmp: Path, learners: int = 300, cores: int = 16) -> dict:
    """Every chapter's per-notebook grading time on one worker, scaled to `learners` on `cores`."""
    from utils.notebooks.pipeline import CHAPTERS

    chapters = sorted(p.name for p in CHAPTERS.glob("ch*_*") if p.is_dir())
    rows, total, startup = [], 0.0, 0.0
    for chapter in chapters:
        folder = tmp / chapter / "submitted"
        small = simulate.ordinary_class(chapter, folder, copies=2)
        report = grade_class(chapter, folder, workers=1, limits=Limits(), log=lambda *_: None)
        per_notebook = report.grading_seconds / max(report.graded, 1)
        notebooks = len(simulate.exercises_by_notebook(chapter))
        rows.append({"chapter": chapter, "notebooks": notebooks, "graded": report.graded, "learners": len(small),
                     "seconds_per_notebook": round(per_notebook, 3), "startup_seconds": round(report.startup_seconds, 1)})
        total += learners * notebooks * per_notebook
        startup = max(startup, report.startup_seconds)
    minutes = (total / cores + startup * len(chapters)) / 60
    return {"learners": learners, "cores": cores, "notebooks": sum(r["notebooks"] for r in rows),
            "chapters": rows, "projected_minutes": round(minutes, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.cohort.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapter", default="ch2")
    parser.add_argument("--sample", type=int, default=6, help="submissions nbgrader autograde grades")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--projection", action="store_true", help="every chapter, scaled to 300 learners on 16 cores")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grade-class-bench-") as tmp:
        figures = {"side_by_side": side_by_side(resolve_chapter(args.chapter), args.sample, args.workers,
                                                Path(tmp) / "side")}
        if args.projection:
            figures["projection"] = projection(Path(tmp) / "projection")
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
