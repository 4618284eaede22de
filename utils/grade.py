"""Grade saved notebooks: python -m utils.grade PATH.ipynb [PATH ...] [--json]

Each notebook runs top to bottom in a fresh kernel (its check cells skipped;
errors don't stop the run), then every exercise it contains is graded in that
kernel. The notebook file is only read, never written. Exit status: 0 when
every exercise passed, 1 otherwise, 2 when a file can't be graded at all.

    python -m utils.grade --list          # every exercise: id, difficulty, where it lives
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from utils.grading import registry
from utils.grading.feedback import ERROR, FAILED, NOT_ATTEMPTED, PASSED, TIMEOUT

STATUSES = (PASSED, FAILED, NOT_ATTEMPTED, ERROR, TIMEOUT)

KERNEL_GRADE = """\
import json as _json
from utils.grading.kernel import grade_by_name as _grade_by_name
print("@@GRADE@@" + _json.dumps(_grade_by_name({exercise_id!r}, globals(), cell_error={cell_error!r})))
"""


class Ungradable(Exception):
    """The file is not a notebook we can grade; the message is one line."""


def read_notebook(path: Path):
    import nbformat

    if not path.exists():
        raise Ungradable(f"{path}: no such file")
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises many kinds for corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Ungradable(f"{path}: not a readable Jupyter notebook ({reason[:120]})") from None
    if not isinstance(nb.get("cells"), list):
        raise Ungradable(f"{path}: not a Jupyter notebook (no cells)")
    return nb


def exercises_in(path: Path, nb) -> list[registry.Exercise]:
    """The notebook's exercises: from its check cells' nbgrader ids, else from its file name."""
    from utils.notebooks.pipeline import grade_id

    exercises = registry.load_all()
    by_grade_id = {grade_id(ex.id): ex for ex in exercises.values()}
    ids = [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells]
    found = [by_grade_id[i] for i in ids if i in by_grade_id]
    return found or [ex for ex in exercises.values() if ex.notebook_stem == path.stem]


def grade_notebook(path: Path, *, cell_timeout: int = 300, exercise_timeout: int = 120) -> list[dict]:
    """Run the notebook in a fresh kernel and grade each of its exercises there."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from utils.notebooks.execute import kernel_env
    from utils.notebooks.pipeline import checked_exercise, defined_function

    nb = read_notebook(path)
    exercises = exercises_in(path, nb)
    if not exercises:
        raise Ungradable(f"{path}: no course exercises found in this notebook")
    by_id = {ex.id: ex for ex in exercises}
    stub_errors: dict[str, str] = {}
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(path.parent.resolve())}})
    results = []
    with client.setup_kernel(env=kernel_env()):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or checked_exercise(cell, by_id) is not None:
                continue
            try:
                client.execute_cell(cell, index)
            except CellTimeoutError:
                pass  # interrupted; the exercises it affects are graded below
            name = defined_function(cell) or _intended_function(cell.source)
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if name and errors:
                stub_errors[name] = f"its cell raised {errors[0].get('ename')}: {errors[0].get('evalue', '')[:200]}"
        for ex in exercises:
            probe = nbformat.v4.new_code_cell(
                KERNEL_GRADE.format(exercise_id=ex.id, cell_error=stub_errors.get(ex.name)))
            try:
                client.timeout = exercise_timeout
                nb.cells.append(probe)
                client.execute_cell(probe, len(nb.cells) - 1)
                text = "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream")
                line = next(line for line in text.splitlines() if line.startswith("@@GRADE@@"))
                results.append(json.loads(line.removeprefix("@@GRADE@@")))
            except CellTimeoutError:
                results.append({"exercise": ex.id, "status": TIMEOUT, "detail": "grading did not finish"})
            except (StopIteration, DeadKernelError) as exc:
                results.append({"exercise": ex.id, "status": ERROR, "detail": f"the kernel failed ({exc!r})"})
            finally:
                if nb.cells and nb.cells[-1] is probe:
                    nb.cells.pop()
    for r in results:
        r["notebook"] = str(path)
    return results


def _intended_function(source: str) -> str | None:
    """The function a cell means to define, even when the cell doesn't parse."""
    match = re.search(r"^def (\w+)\(", source, flags=re.MULTILINE)
    return match.group(1) if match else None


def table(results: list[dict]) -> str:
    width = max([len(r["exercise"]) for r in results] + [8])
    lines = [f"{'exercise':<{width}}  {'status':<13}  detail", "-" * (width + 40)]
    for r in results:
        detail = (r.get("detail") or "").splitlines()[0] if r.get("detail") else ""
        if r.get("case"):
            detail = f"[{r['case']}] {detail}"
        lines.append(f"{r['exercise']:<{width}}  {r['status']:<13}  {detail[:90]}")
    lines.append("")
    per_chapter: dict[str, Counter] = {}
    for r in results:
        per_chapter.setdefault(r["exercise"].split(".")[0], Counter())[r["status"]] += 1
    for chapter, counts in per_chapter.items():
        parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
        lines.append(f"{chapter}: {parts} (of {sum(counts.values())})")
    return "\n".join(lines)


def list_exercises() -> str:
    rows = [("id", "level", "min", "notebook", "reference", "grader")]
    for ex in registry.load_all().values():
        rel = lambda p: p.relative_to(registry.ROOT).as_posix()  # noqa: E731
        rows.append((ex.id, "★" * ex.difficulty, str(ex.minutes), rel(ex.notebook_path),
                     f"{rel(ex.solution_path)}::{ex.name}", f"{rel(ex.grader_path)}::test_{ex.name}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--list", action="store_true", help="list every exercise and where it lives")
    parser.add_argument("--cell-timeout", type=int, default=300, help="seconds per notebook cell")
    args = parser.parse_args(argv)
    if args.list:
        print(list_exercises())
        return 0
    if not args.notebooks:
        parser.print_usage()
        return 2
    results, broken = [], []
    for path in args.notebooks:
        try:
            results.extend(grade_notebook(path, cell_timeout=args.cell_timeout))
        except Ungradable as exc:
            broken.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({"results": results, "errors": broken}, indent=2))
    elif results:
        print(table(results))
    if broken:
        return 2
    return 0 if all(r["status"] == PASSED for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
