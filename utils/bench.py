"""Measure the course against its budgets: python -m utils.bench [--only STEM] [--json PATH] [--device D]

- each solved notebook, top to bottom in a fresh kernel: wall time and the
  kernel's peak memory (budget: 5 minutes and 4 GB each, 20 minutes in all);
- `check()` on every exercise's reference: median latency, the CPU grading and
  the second run on the stand-in GPU together, as check() does (budget: under 1 s).

Timings are for this machine; the budgets are for 2 CPU cores and no GPU. `--device cuda`
runs the notebooks on a GPU (their setup() returns it) for the GPU-beside-CPU figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

NOTEBOOK_SECONDS, NOTEBOOK_GB, COURSE_SECONDS, CHECK_SECONDS = 300, 4.0, 1200, 1.0
PEAK_KB = "__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss"


def bench_notebook(path: Path, device: str = "cpu") -> dict:
    from utils.notebooks.execute import run_notebook
    from utils.notebooks.pipeline import solved_notebook

    start = time.perf_counter()
    _, values = run_notebook(solved_notebook(path), cwd=path.parent, read={"peak_kb": PEAK_KB},
                             env={"COURSE_DEVICE": device})
    seconds = time.perf_counter() - start
    gb = values["peak_kb"] / 1024**2
    return {"notebook": path.relative_to(path.parents[1]).as_posix(), "seconds": round(seconds, 1),
            "peak_gb": round(gb, 2), "device": device,
            "within_budget": seconds <= NOTEBOOK_SECONDS and gb <= NOTEBOOK_GB}


def bench_checks(repeats: int = 5) -> list[dict]:
    from utils.grading import grade, registry
    from utils.grading.devices import GRADING_DEVICE, gpu_note

    rows = []
    for ex in registry.load_all().values():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = grade(ex, ex.reference, device=GRADING_DEVICE)
            gpu_note(ex, ex.reference)
            times.append(time.perf_counter() - start)
        rows.append({"exercise": ex.id, "median_s": round(statistics.median(times), 4), "passed": result.passed})
    return rows


def main(argv: list[str] | None = None) -> int:
    from utils.notebooks.pipeline import learner_notebooks

    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="bench only notebooks whose file name contains this")
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--device", default="cpu", help="where the notebooks compute: cpu, cuda, or meta "
                                                          "(the stand-in GPU)")
    args = parser.parse_args(argv)

    notebooks = [] if args.skip_notebooks else [p for p in learner_notebooks() if not args.only or args.only in p.name]
    rows = []
    for path in notebooks:
        print(f"running {path.name} …", flush=True)
        rows.append(bench_notebook(path, args.device))
    checks = bench_checks()

    print("\nnotebook                                          time (s)   peak (GB)   budget")
    for r in rows:
        print(f"{r['notebook']:<48}  {r['seconds']:>8}   {r['peak_gb']:>9}   {'ok' if r['within_budget'] else 'OVER'}")
    total = sum(r["seconds"] for r in rows)
    if rows:
        print(f"{'whole course':<48}  {round(total, 1):>8}               "
              f"{'ok' if total <= COURSE_SECONDS else 'OVER'}")
    medians = [c["median_s"] for c in checks]
    overall = statistics.median(medians) if medians else 0.0
    slowest = max(checks, key=lambda c: c["median_s"]) if checks else None
    print(f"\ncheck(): {len(checks)} exercises, median {overall * 1000:.1f} ms"
          + (f", slowest {slowest['exercise']} {slowest['median_s'] * 1000:.0f} ms" if slowest else "")
          + f" ({'ok' if all(m < CHECK_SECONDS for m in medians) else 'OVER'} budget {CHECK_SECONDS:g} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"notebooks": rows, "course_seconds": round(total, 1),
                                     "checks": checks, "check_median_s": overall}, indent=2))
    print(f"wrote {args.json}")
    over = [r for r in rows if not r["within_budget"]] or total > COURSE_SECONDS \
        or any(m >= CHECK_SECONDS for m in medians)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
