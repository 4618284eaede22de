"""One learner's notebook, graded in a process that can touch nothing but its own folder.

A *zygote* (`python -m utils.cohort.sandbox CHAPTER`, one per Dask worker) imports torch, the
graders and the chapter's reference solutions once and grades every exercise once to warm
them up. For each submission it forks a child, which

1. limits itself (memory, CPU time, file size), starts a new process group, moves into the
   submission's own folder and locks itself in with Landlock (`landlock.py`): no other file,
   no network, no signals out;
2. runs the notebook's *definitions*: in the learner's answer cells every statement, elsewhere
   only imports, functions, classes and constants, so no model is loaded or trained (grading
   checks functions on the graders' own inputs, as `check()` does);
3. grades each exercise, reporting after each one down a pipe.

If the child dies (os._exit, a segfault, the CPU limit, a kill after the wall-clock limit), the
zygote knows from the last report what it was doing, records that step as the cause and forks
a fresh child for the rest: one runaway function costs that exercise, not the notebook.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
import resource
import select
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_CHILDREN = 8   # forks per submission: each crash costs one step, then the rest is graded


@dataclass
class Limits:
    """What one submission may use. Time limits are CPU seconds (a busy machine does not
    shorten them); the wall clock allows `WALL_FACTOR` times as much."""

    memory_mb: int = 2048            # on top of what the warmed-up grader already maps
    submission_seconds: float = 300  # CPU time for the whole notebook: a hard stop
    statement_seconds: float = 20    # one top-level statement of a cell
    exercise_scale: float = 1.0      # multiplies each exercise's own time limit (tests lower it)
    output_bytes: int = 20_000       # printed output kept for the feedback page
    file_mb: int = 64                # the largest file learner code may write in its folder


# -- which statements run --------------------------------------------------------------

DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_constant(node: ast.stmt) -> bool:
    """`N_FEATURES, N_HIDDEN = 5, 2`: an assignment of literals, cheap and safe to run anywhere."""
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return False
    try:
        ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


@dataclass
class Step:
    key: str          # "cell 5, line 3"
    source: str
    defines: str | None


def notebook_steps(cells: list[dict], answer_names: set[str]) -> tuple[list[Step], dict[str, str]]:
    """The statements to run, and the exercises whose cell cannot even be parsed (name → error)."""
    from IPython.core.inputtransformer2 import TransformerManager

    from utils.cohort.submissions import _grade_id, _source, course_checks
    from utils.notebooks.colab_cell import COLAB_MARKER

    transform = TransformerManager().transform_cell
    checks = course_checks()
    steps, broken = [], {}
    for index, cell in enumerate(cells):
        source = _source(cell)
        if (cell.get("cell_type") != "code" or _grade_id(cell) in checks or source.lstrip().startswith("check(")
                or source.startswith(COLAB_MARKER)):
            continue
        meta = cell.get("metadata", {})
        is_answer = isinstance(meta, dict) and bool(meta.get("nbgrader", {}).get("solution"))
        try:
            tree = ast.parse(transform(source))
        except (SyntaxError, ValueError) as exc:
            for name in answer_names:
                if f"def {name}(" in source:
                    line = getattr(exc, "lineno", None)
                    broken[name] = f"its cell has a {type(exc).__name__}" + (f" at line {line}" if line else "") \
                        + f": {getattr(exc, 'msg', exc)}"
            continue
        defined = {n.name for n in tree.body if isinstance(n, DEFINITIONS[2:])}
        is_answer = is_answer or bool(defined & answer_names)
        for node in tree.body:
            if is_answer or isinstance(node, DEFINITIONS) or _is_constant(node):
                name = node.name if isinstance(node, DEFINITIONS[2:]) else None
                steps.append(Step(f"cell {index}, line {node.lineno}", ast.unparse(node), name))
    return steps, broken


# -- the child: confined, runs the notebook's definitions, grades ----------------------

class CappedOutput(io.TextIOBase):
    """stdout for learner code: keeps the first `limit` characters, counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.kept, self.size = limit, [], 0

    def write(self, text: str) -> int:
        if self.size < self.limit:
            self.kept.append(text[: self.limit - self.size])
        self.size += len(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def text(self) -> str:
        return "".join(self.kept)


def readable_paths() -> list[str]:
    """What graded code may read: Python and its packages, the course's `utils/` (graders, shipped
    models), system libraries. Not the course root: the reference solutions live there."""
    import site

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), str(ROOT / "utils"),
             "/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/sys", "/dev", "/opt/conda"}
    for entry in sys.path:
        real = os.path.realpath(entry or ".")
        if os.path.isdir(real) and not (ROOT.is_relative_to(real)):
            paths.add(real)
    return sorted(p for p in paths if os.path.exists(p) and not ROOT.is_relative_to(os.path.realpath(p)))


def confine(workdir: str, limits: Limits) -> int:
    """Limit and lock in this process; returns the Landlock ABI in force (0: none available)."""
    from utils.cohort import landlock

    os.setsid()
    mapped = _mapped_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + limits.memory_mb * 2**20,) * 2)
    cpu = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime + limits.submission_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir)
    import tempfile

    tempfile.tempdir = workdir
    return landlock.restrict(read=readable_paths(), write=[workdir, "/dev/null"])


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class SolutionsGuard:
    """Keeps the reference solutions' modules out of learner code's reach: out of `sys.modules`,
    and importable again only by the course's own code (a grader importing inside a function).

    A speed bump, not a wall: the graders hold the references in this same process's memory,
    and code determined to dig through it can find them (README "Teaching a cohort")."""

    def __init__(self):
        self.hidden = {}
        self.ours = (str(ROOT / "utils") + os.sep, str(ROOT / "solutions") + os.sep)
        self.hide()
        sys.meta_path.insert(0, self)

    def hide(self) -> None:
        for name in [m for m in sys.modules if m == "solutions" or m.startswith("solutions.")]:
            self.hidden[name] = sys.modules.pop(name)

    def find_spec(self, name, path=None, target=None):
        if name != "solutions" and not name.startswith("solutions."):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(("<frozen", os.path.dirname(os.__file__))):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(self.ours) and name in self.hidden:
            import importlib.util

            return importlib.util.spec_from_loader(name, self)
        raise ImportError(f"{name}: the reference solutions cannot be imported while your work is graded")

    def create_module(self, spec):
        return self.hidden[spec.name]

    def exec_module(self, module) -> None:
        pass


class GraderSeal:
    """Notices learner code that rewrites the grader in this process (`checker.grade = ...`,
    `Checker.case = ...`) and puts it back before each exercise is graded: what the graders'
    modules and classes held before any learner code ran is what grades."""

    def __init__(self):
        self.saved = {}
        for name, module in list(sys.modules.items()):
            if name.startswith("utils.") and module is not None:
                self._save(module)
                for value in list(vars(module).values()):
                    if isinstance(value, type) and getattr(value, "__module__", "") == name:
                        self._save(value)

    def _save(self, owner) -> None:
        self.saved[id(owner)] = (owner, dict(vars(owner)))

    def restore(self) -> list[str]:
        """Undo every change; returns what had been changed, e.g. ['utils.grading.checker.grade']."""
        changed = []
        for owner, before in self.saved.values():
            now = vars(owner)
            for key in set(before) | set(now):
                old, new = before.get(key, _MISSING), now.get(key, _MISSING)
                if old is not new and (callable(old) or callable(new)):   # data the graders cache may change
                    changed.append(f"{getattr(owner, '__name__', owner)}.{key}")
                    try:
                        if key in before:
                            setattr(owner, key, before[key])
                        else:
                            delattr(owner, key)
                    except (AttributeError, TypeError):
                        pass
        return changed


_MISSING = object()


def is_reference(fn, exercise) -> bool:
    """Whether the learner's function is the reference itself (imported or fished out of memory)."""
    ref = exercise.reference
    return fn is ref or getattr(fn, "__code__", None) is getattr(ref, "__code__", False)


def run_definitions(cells: list[dict], exercises: list, limits: Limits, report, skip=()) -> tuple[dict, dict]:
    """Run what `notebook_steps` selects, each statement under the time limit; returns the notebook's
    namespace, and the exercises whose definition failed (name → why)."""
    from utils.grading.safety import TimeLimitReached, time_limit

    steps, broken = notebook_steps(cells, {ex.name for ex in exercises})
    failed_defs = dict(broken)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    for step in steps:
        if step.key in skip:
            continue
        report({"at": step.key})
        try:
            with time_limit(limits.statement_seconds):
                exec(compile(step.source, f"<{step.key}>", "exec"), namespace)
        except TimeLimitReached:
            report({"note": f"{step.key} ran past {limits.statement_seconds:g} s of CPU time and was stopped"})
        except BaseException as exc:  # learner code: SystemExit and KeyboardInterrupt included
            what = f"{type(exc).__name__}: {str(exc)[:200]}"
            report({"note": f"{step.key} raised {what}"})
            if step.defines:
                failed_defs[step.defines] = f"its definition raised {what}"
    return namespace, failed_defs


def run_child(request: dict, report) -> None:
    """Everything a child does after the fork; `report(dict)` sends one line to the zygote."""
    from utils.grading import registry
    from utils.grading.feedback import ERROR
    from utils.grading.kernel import grade_by_name

    limits = Limits(**request.get("limits", {}))
    isolation = confine(request["workdir"], limits)
    report({"isolation": isolation})
    guard, seal = SolutionsGuard(), GraderSeal()
    out = CappedOutput(limits.output_bytes)
    sys.stdout = sys.stderr = out
    chapter = {ex.id: ex for ex in registry.for_chapter(request["chapter"])}
    exercises = [chapter[i] for i in request["exercises"]]
    for ex in exercises:
        ex.timeout *= limits.exercise_scale
    with open("submission.ipynb", encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    namespace, failed_defs = run_definitions(cells, exercises, limits, report, skip=request["skip"])
    for ex in exercises:
        if ex.id in request["done"]:
            continue
        report({"at": ex.id})
        if changed := seal.restore():
            report({"note": f"your code changed the grader ({', '.join(sorted(changed)[:3])}): it was put back "
                            "before grading, and your instructor sees this note"})
        if is_reference(namespace.get(ex.name), ex):
            report({"result": {"exercise": ex.id, "status": ERROR, "detail": f"{ex.name} is the course's reference "
                               "solution, not your own code: a copied solution scores nothing"}})
            continue
        result = grade_by_name(ex.id, namespace, cell_error=failed_defs.get(ex.name))
        if "MemoryError" in (result.get("detail") or ""):
            result["hint"] = (f"Your code asked for more memory than grading allows ({limits.memory_mb} MB): look for "
                              "a list or tensor that keeps growing, or one far larger than the inputs.")
        if changed := seal.restore():   # while it was being graded: its verdict cannot be trusted
            result = {"exercise": ex.id, "status": ERROR, "detail": f"{ex.name} changed the grader while it was "
                      f"being graded ({', '.join(sorted(changed)[:3])}): it scores nothing"}
        report({"result": result})
        guard.hide()
    report({"output": out.text(), "output_size": out.size})


# -- the zygote: forks a child per attempt, survives whatever the child does ---------------

def describe_exit(status: int, killed_for_time: bool) -> str:
    if killed_for_time:
        return "ran past the wall-clock limit and was stopped"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "used up the submission's CPU time (SIGXCPU)"
        return f"ended the grading process with {signal.Signals(sig).name}"
    return f"ended the grading process (exit code {os.WEXITSTATUS(status)}: os._exit or a crash)"


def grade_in_children(request: dict) -> dict:
    """Grade one submission whatever its code does; returns results, notes and costs."""
    from utils.grading.feedback import ERROR, TIMEOUT

    limits = Limits(**request.get("limits", {}))
    state = {"skip": [], "done": {}, "notes": [], "output": "", "output_size": 0, "isolation": 0}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    deadline = started + limits.submission_seconds * 4
    for attempt in range(1, MAX_CHILDREN + 1):
        child_request = {**request, "skip": state["skip"], "done": list(state["done"])}
        last, finished, status, timed_out = _one_child(child_request, state, deadline)
        if finished:
            break
        cause = describe_exit(status, timed_out)
        if last is None:
            state["notes"].append(f"the grading process {cause.removeprefix('ended the grading process ')}"
                                  if state["isolation"] else f"the grading process could not start: it {cause}")
            break
        if last.startswith("cell "):
            state["skip"].append(last)
            state["notes"].append(f"{last} {cause}; the rest was graded without it")
        else:
            why = f"your code {cause}"
            state["done"][last] = {"exercise": last, "status": TIMEOUT if timed_out or "CPU" in cause else ERROR,
                                   "detail": why}
        if time.monotonic() > deadline:
            state["notes"].append("the submission ran out of time; exercises not reached count as not graded")
            break
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (used.ru_utime - cpu_before.ru_utime) + (used.ru_stime - cpu_before.ru_stime)
    return {"results": list(state["done"].values()), "notes": state["notes"], "output": state["output"],
            "output_size": state["output_size"], "isolation": state["isolation"], "attempts": attempt,
            "cpu_seconds": round(cpu, 3), "wall_seconds": round(time.monotonic() - started, 3)}


def _one_child(request: dict, state: dict, deadline: float) -> tuple[str | None, bool, int, bool]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, write_end)
            os.closerange(write_end + 1, 1024)

            def report(message: dict) -> None:
                data = (json.dumps(message, default=str) + "\n").encode()
                while data:
                    data = data[os.write(write_end, data):]

            run_child(request, report)
        except BaseException:  # noqa: BLE001 — anything here ends the child; the zygote says why
            code = 70
        os._exit(code)
    os.close(write_end)
    last, finished, timed_out, buffer = None, False, False, b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pipe], [], [], min(wait, 1.0))
            if not ready:
                continue
            chunk = pipe.read(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                last, finished = _absorb(json.loads(line), state, last, finished)
    if timed_out:
        _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    _kill_group(pid)   # whatever the learner's code started in its group
    return last, finished and not timed_out and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status, timed_out


def _absorb(message: dict, state: dict, last: str | None, finished: bool) -> tuple[str | None, bool]:
    if "at" in message:
        return message["at"], finished
    if "result" in message:
        state["done"][message["result"]["exercise"]] = message["result"]
        return None if last == message["result"]["exercise"] else last, finished
    if "note" in message:
        state["notes"].append(message["note"])
    if "isolation" in message:
        state["isolation"] = message["isolation"]
    if "output" in message:
        state["output"], state["output_size"] = message["output"], message["output_size"]
        return None, True
    return last, finished


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def warm_up(chapter: str) -> list[str]:
    """Import and grade every exercise of the chapter once with its reference, so that each forked
    child finds models built, modules imported and solution files already read (it cannot read them)."""
    import torch

    torch.set_num_threads(1)   # one submission per core; and OpenMP thread pools do not survive fork
    from utils.grading import registry
    from utils.grading.checker import grade

    exercises = registry.for_chapter(chapter)
    for ex in exercises:
        grade(ex, ex.reference)
    for path in sorted((ROOT / "chapters" / chapter).glob("*.ipynb")):   # the notebooks' own imports (plotly...)
        steps, _ = notebook_steps(json.loads(path.read_text())["cells"], set())
        for step in steps:
            if step.source.startswith(("import ", "from ")):
                exec(step.source, {})
    return [ex.id for ex in exercises]


def serve(request: dict, chapter: str) -> dict:
    """One submission, start to end: inspect it as data, then grade it in children in a folder of its own."""
    import base64
    import shutil
    import tempfile

    from utils.cohort import submissions
    from utils.grading import registry
    from utils.grading.feedback import PASSED

    data = base64.b64decode(request["data"])
    exercises = [ex for ex in registry.for_chapter(chapter) if ex.notebook_stem == request["notebook"]]
    record = {"student": request["student"], "notebook": request["notebook"], "exercises": [], "notes": [],
              "tampered": [], "max_score": sum(ex.points for ex in exercises), "score": 0}
    seen = submissions.inspect(data, chapter, request["notebook"])
    record.update(status=seen.status, notes=seen.notes, tampered=seen.tampered)
    if seen.status != submissions.GRADED:
        return record
    workdir = tempfile.mkdtemp(prefix="submission-", dir=_private_base())
    try:
        Path(workdir, "submission.ipynb").write_bytes(data)
        graded = grade_in_children({"workdir": workdir, "chapter": chapter, "exercises": [ex.id for ex in exercises],
                                    "limits": request.get("limits", {})})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_id = {r["exercise"]: r for r in graded.pop("results")}
    record["exercises"] = [by_id.get(ex.id, {"exercise": ex.id, "status": submissions.NOT_GRADED,
                                             "detail": "grading did not reach this exercise"}) for ex in exercises]
    record["score"] = sum(ex.points for ex in exercises if by_id.get(ex.id, {}).get("status") == PASSED)
    record["notes"] += graded.pop("notes")
    record.update(graded)
    return record


_BASE: list[str] = []


def _private_base() -> str:
    """A folder only this user can enter, holding every submission's working folder."""
    import tempfile

    if not _BASE:
        _BASE.append(tempfile.mkdtemp(prefix="course-grading-"))
    return _BASE[0]


def zygote(chapter: str) -> None:
    """Serve requests, one JSON line each on stdin, one JSON line of results each on stdout."""
    import shutil

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # anything printed while warming up goes to stderr, never into the protocol
    warm_up(chapter)
    protocol.write(json.dumps({"ready": True}) + "\n")
    try:
        for line in sys.stdin:
            protocol.write(json.dumps(serve(json.loads(line), chapter)) + "\n")
    finally:
        if _BASE:
            shutil.rmtree(_BASE[0], ignore_errors=True)


if __name__ == "__main__":
    zygote(sys.argv[1])
