"""python -m utils.cohort CHAPTER SUBMISSIONS [--course DIR] [--workers N | --scheduler tcp://HOST:8786]

Grade every learner's notebooks of CHAPTER (ch2, or ch2_superposition) found in SUBMISSIONS:
nbgrader's `<course>/submitted/` folder, or a plain folder of `<student>/<notebook>.ipynb` (or
`<student>.ipynb`). Scores go into nbgrader's gradebook, a CSV and a feedback page per learner, in
the course folder (the one above `submitted/`, or `<SUBMISSIONS>-graded/` beside a plain folder).
Running it again grades only what changed. Exit status 0 when every notebook was graded (whatever
its score), 1 when some could not be (a dead worker, a failure of the grader), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.cohort.cluster import grade_class
from utils.cohort.sandbox import Limits
from utils.cohort.submissions import NOT_GRADED, WORKER_DIED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 course.py grade-class", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter")
    parser.add_argument("submissions", type=Path)
    parser.add_argument("--course", type=Path, help="where the gradebook, CSV and feedback go")
    parser.add_argument("--workers", type=int, help="local Dask workers (default: one per core)")
    parser.add_argument("--scheduler", help="an existing Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb, help="memory per submission")
    parser.add_argument("--seconds", type=float, default=Limits.submission_seconds,
                        help="CPU seconds per submission")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    report = grade_class(args.chapter, args.submissions, course=args.course, workers=args.workers,
                         scheduler=args.scheduler,
                         limits=Limits(memory_mb=args.memory_mb, submission_seconds=args.seconds))
    print(report.summary())
    for name, path in report.outputs.items():
        print(f"{name}: {path}")
    return 1 if any(r["status"] in (WORKER_DIED, NOT_GRADED) for r in report.records) else 0


if __name__ == "__main__":
    sys.exit(main())
