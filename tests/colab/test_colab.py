"""The course in Colab, as closely as this machine can reproduce it.

For Python 3.13 (Colab's default runtime) and 3.12 (its older pinned runtimes): an environment
holding Colab's versions of the packages the course touches (tests/colab/runtime.py, versions from
Colab's published list for its Python 3.13 CPU runtime), a stand-in `google.colab` imported at
kernel start-up as Colab does, and the repository served from a local path in place of GitHub
(git's `url.<local>.insteadOf`, so the notebook's Colab cell runs exactly as written). A whole
notebook then runs in a Jupyter kernel of that environment, Colab cell first, and the tests check
that the course installed, the notebook ran, the widget manager was switched on, the hint widget
and `interactive_view` work on Colab's ipywidgets 7.7.1, and no preinstalled package moved.

On Python 3.13 only, each in a fresh runtime whose /content holds a learner's files: the cell
against an unpublished repository (a local server answering 401, as GitHub does: one sentence, no
retry, nothing deleted), from an uploaded release archive (`course.py archive`), from a Drive folder
named in COURSE_SOURCE (copied, never changed), and with a conflict with Colab's IPython (pip's
explanation, no retry, nothing installed). tests/colab/test_cell.py covers the same decisions
quickly, with a stand-in installer.

Run with `python3 course.py colab`: on 2 cores, 3 to 4 minutes in all once the Colab environments
are cached, and about 3 minutes more per Python version the first time, to build them (torch and
its CUDA libraries, about 3 GB, from PyPI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from tests.colab import runtime
from tests.colab.test_cell import Server, snapshot
from utils.notebooks import pipeline

ROOT = pipeline.ROOT
NOTEBOOK = os.environ.get("COLAB_SIM_NOTEBOOK", "chapters/ch1_transformer_math/build_a_transformer.ipynb")
VERSIONS = ["3.13", "3.12"]

pytestmark = [pytest.mark.colab, pytest.mark.slow]

# A cell appended to the notebook: a wrong answer to the first exercise, so `check` fails and shows
# its hint button (an ipywidgets VBox), and a widget built through utils.notebook.interactive_view.
WIDGET_CELL = textwrap.dedent("""\
    import ipywidgets, IPython, google.colab.output
    from utils.notebook import interactive_view
    view = interactive_view(lambda n: n * 2, n=(0, 4))
    print("WIDGETS", ipywidgets.__version__, IPython.__version__, type(view).__name__,
          google.colab.output.enabled)
    """)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """This working tree as a git repository, tagged with the release the Colab cell asks for."""
    repo = tmp_path_factory.mktemp("origin") / "mechinterp-course"
    files = git("ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\n")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot", cwd=repo)
    git("tag", pipeline.colab_ref(), cwd=repo)
    return repo


def colab_kernel_env(origin: Path, home: Path) -> dict[str, str]:
    """The kernel's environment: IPython's start-up imports google.colab, git fetches the
    configured URL from `origin`, nothing of this repository's own environment leaks in."""
    startup = home / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # Colab's kernel imports it at start-up\n")
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "COURSE_THREADS"} and not k.startswith("PYTEST")}
    env.update(IPYTHONDIR=str(home / "ipython"), JUPYTER_CONFIG_DIR=str(home / "jupyter"),
               JUPYTER_DATA_DIR=str(home / "jupyter-data"), COLAB_STANDIN_LOG=str(home / "colab.log"),
               GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.{origin.as_uri()}.insteadOf",
               GIT_CONFIG_VALUE_0=pipeline.repository_url(), PIP_DISABLE_PIP_VERSION_CHECK="1",
               COURSE_HEADLESS="1", COURSE_DEVICE="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               MPLBACKEND="Agg")
    return env


# Runs inside the Colab environment, with Colab's nbclient and ipykernel: executes the notebook in
# /content-like `cwd` and writes it back with its outputs.
DRIVER = textwrap.dedent("""\
    import sys, nbformat
    from nbclient import NotebookClient
    src, dst, cwd = sys.argv[1:4]
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": cwd}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, dst)
    """)


def run_in_colab(python: Path, nb: nbformat.NotebookNode, workdir: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    src, dst = workdir / "in.ipynb", workdir / "out.ipynb"
    nbformat.write(nb, src)
    content = workdir / "content"
    content.mkdir(exist_ok=True)
    proc = subprocess.run([python, "-c", DRIVER, src, dst, content], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert dst.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return nbformat.read(dst, as_version=4)


def text_of(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}\n" + "\n".join(out.traceback)[-3000:])
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"])
    return "".join(parts)


def errors(cells) -> list[str]:
    return [f"cell {i}: {text_of(c)[-2000:]}" for i, c in enumerate(cells)
            if any(o.output_type == "error" for o in c.get("outputs", []))]


@pytest.fixture(scope="module", params=VERSIONS)
def colab(request, tmp_path_factory, origin):
    """Per Python version: the Colab stand-in, a notebook run in it, and what changed."""
    version = request.param
    if runtime.interpreter(version) is None:
        pytest.skip(f"no Python {version} on this machine")
    started = time.monotonic()
    base = runtime.base_env(version)
    built = time.monotonic() - started
    work = tmp_path_factory.mktemp(f"colab-{version}")
    python = runtime.session_env(base, work / "env")
    before = runtime.installed(python)
    env = colab_kernel_env(origin, work / "home")

    nb = pipeline.solved_notebook(ROOT / NOTEBOOK)
    nb.cells.append(nbformat.v4.new_code_cell(WIDGET_CELL))
    ex = next(iter(pipeline.notebook_exercises(ROOT / NOTEBOOK).values()))
    nb.cells.append(nbformat.v4.new_code_cell(f"def {ex.name}(*args, **kwargs):\n    return None\n\n"
                                              f"check({ex.name})"))
    started = time.monotonic()
    executed = run_in_colab(python, nb, work, env)
    ran = time.monotonic() - started
    after = runtime.installed(python)
    print(f"\nColab {version}: environment ready in {built:.0f} s, notebook with install in {ran:.0f} s")
    print(text_of(executed.cells[1]))
    return dict(version=version, python=python, work=work, env=env, nb=executed, before=before,
                after=after, log=work / "home" / "colab.log")


def test_the_environment_is_colabs(colab):
    pins = runtime.colab_versions()
    for name in ["torch", "ipython", "ipykernel", "ipywidgets", "traitlets", "jupyter-client", "numpy",
                 "transformers"]:
        assert colab["before"][name].split("+")[0] == pins[name], name
    assert colab["before"]["ipywidgets"] == "7.7.1"


def test_the_colab_cell_installs_the_course_and_says_so(colab):
    out = text_of(colab["nb"].cells[1])
    assert "Colab set-up: fetching" in out and pipeline.colab_ref() in out, out
    assert "Colab set-up: installed the course" in out, out
    assert "none of the" in out and "preinstalled packages changed" in out, out
    assert "Colab set-up: done" in out, out
    assert (colab["work"] / "content" / "mechinterp-course" / ".colab-done").read_text() == pipeline.colab_ref()
    assert "transformer-lens" in colab["after"] and "mechinterp-course" in colab["after"]


def test_the_whole_notebook_runs(colab):
    ran = colab["nb"].cells[:-1]  # the last cell is the deliberately failed check
    assert not errors(ran), "\n".join(errors(ran))
    assert "Course ready (Colab" in "".join(text_of(c) for c in ran)


def test_no_preinstalled_package_changes_version(colab):
    moved = {name: (v, colab["after"].get(name)) for name, v in colab["before"].items()
             if colab["after"].get(name) != v}
    assert not moved, moved


def test_widgets_use_colabs_manager_and_ipywidgets_7(colab):
    assert "enable_custom_widget_manager" in colab["log"].read_text()
    widget_out = text_of(colab["nb"].cells[-2])
    assert "WIDGETS 7.7.1 7.34.0 interactive True" in widget_out, widget_out
    hint = colab["nb"].cells[-1]
    views = [o for o in hint.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "a failed check shows its hint button: " + text_of(hint)


def test_a_failed_set_up_is_redone_and_a_done_one_is_not(colab):
    clone = colab["work"] / "content" / "mechinterp-course"
    cell = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(pipeline.colab_cell_source())])
    again = run_in_colab(colab["python"], cell, colab["work"], colab["env"])
    assert "already installed" in text_of(again.cells[0]) and not errors(again.cells)
    (clone / ".colab-done").unlink()  # as if the install had been interrupted
    (clone / "half-written").write_text("")
    redo = run_in_colab(colab["python"], cell, colab["work"], colab["env"])
    out = text_of(redo.cells[0])
    assert f"installing the course folder {clone} where it is" in out and not errors(redo.cells), out
    assert (clone / "half-written").exists() and (clone / ".colab-done").exists()  # nothing removed
    assert runtime.installed(colab["python"]) == colab["after"]


# -- Colab without a published repository (Python 3.13 only: each test installs the course afresh) --

@pytest.fixture(scope="module")
def base313():
    if runtime.interpreter("3.13") is None:
        pytest.skip("no Python 3.13 on this machine")
    return runtime.base_env("3.13")


class Runtime:
    """A fresh Colab runtime: an environment as Colab ships it, and /content with a learner's files."""

    def __init__(self, base: Path, work: Path, origin: Path):
        self.work, self.content = work, work / "content"
        self.python = runtime.session_env(base, work / "env")
        self.env = colab_kernel_env(origin, work / "home")
        self.before = runtime.installed(self.python)
        (self.content / "sample_data").mkdir(parents=True)
        (self.content / "my-notes.txt").write_text("the learner's own")
        (self.content / "sample_data" / "README.md").write_text("Colab's")
        self.learner = snapshot(self.content)

    def keep(self) -> None:
        """Count everything in /content now as the learner's."""
        self.learner = snapshot(self.content)

    def run(self, cell: str, *more: str) -> nbformat.NotebookNode:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (cell, *more)])
        return run_in_colab(self.python, nb, self.work, self.env)

    def learner_files_intact(self) -> bool:
        now = snapshot(self.content)
        return all(now.get(rel) == data for rel, data in self.learner.items())

    def moved(self) -> dict:
        after = runtime.installed(self.python)
        return {n: (v, after.get(n)) for n, v in self.before.items() if after.get(n) != v}


IMPORTS = "import utils.grading, jaxtyping, transformer_lens; print('COURSE AT', utils.grading.__file__)"


def error_lines(cell) -> list[str]:
    return [line for o in cell.outputs if o.output_type == "error" for line in o.traceback]


def tree_state(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_an_unpublished_repository_gets_one_sentence_and_nothing_is_deleted(base313, origin, tmp_path):
    colab = Runtime(base313, tmp_path, origin)
    mine = colab.content / "mechinterp-course"
    mine.mkdir()
    (mine / "essay.md").write_text("a folder of the learner's with the course's name")
    colab.keep()
    server = Server(401)  # GitHub's answer for a repository that does not exist or is private
    try:
        colab.env["GIT_CONFIG_KEY_0"] = f"url.{server.url}.insteadOf"
        ran = colab.run(pipeline.colab_cell_source(), IMPORTS)
    finally:
        server.shutdown()
        server.server_close()
    out, shown = text_of(ran.cells[0]), error_lines(ran.cells[0])
    url, ref = pipeline.course_settings()
    assert len(shown) == 1 and shown[0].startswith(f"Colab set-up stopped: the course's release is not reachable "
                                                   f"at {url}@{ref}"), shown
    assert "retry" not in out + shown[0] and "Username" not in out + shown[0]
    assert "course.py archive" in shown[0] and "COURSE_SOURCE" in shown[0]
    assert colab.learner_files_intact() and sorted(p.name for p in colab.content.iterdir()) == [
        "mechinterp-course", "my-notes.txt", "sample_data"]
    assert not colab.moved()
    print("\nunpublished:", shown[0])


def test_an_uploaded_release_archive_is_installed(base313, origin, tmp_path):
    colab = Runtime(base313, tmp_path, origin)
    built = subprocess.run(["python3", ROOT / "course.py", "archive", colab.content], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    archive = next(colab.content.glob("mechinterp-course-*.zip"))
    colab.keep()
    ran = colab.run(pipeline.colab_cell_source(), IMPORTS)
    out = text_of(ran.cells[0])
    course = colab.content / "mechinterp-course"
    assert not errors(ran.cells), "\n".join(errors(ran.cells))
    assert f"installing the course from {archive}, which stays as it is" in out and "fetching" not in out, out
    assert "Colab set-up: installed the course" in out and "none of the" in out
    assert (course / ".colab-done").read_text() == archive.name
    assert f"COURSE AT {course}" in text_of(ran.cells[1])
    assert colab.learner_files_intact() and not colab.moved()
    print("\narchive:", out)


def test_a_drive_folder_is_copied_installed_and_left_unchanged(base313, origin, tmp_path):
    colab = Runtime(base313, tmp_path, origin)
    drive = colab.content / "drive" / "MyDrive" / "mechinterp-course"
    shutil.copytree(origin, drive, ignore=shutil.ignore_patterns(".git"))
    (drive / "my-answers.ipynb").write_text("{}")
    colab.keep()
    before = tree_state(drive)
    cell = pipeline.colab_cell_source().replace('COURSE_SOURCE = ""', f'COURSE_SOURCE = "{drive}"', 1)
    ran = colab.run(cell, IMPORTS)
    out = text_of(ran.cells[0])
    course = colab.content / "mechinterp-course"
    assert not errors(ran.cells), "\n".join(errors(ran.cells))
    assert f"installing the course from {drive}, which stays as it is" in out and "none of the" in out, out
    assert f"COURSE AT {course}" in text_of(ran.cells[1])
    assert tree_state(drive) == before and colab.learner_files_intact() and not colab.moved()
    print("\ndrive:", out)


def test_a_conflict_shows_pips_explanation_and_no_retry(base313, origin, tmp_path):
    """A course that needs a newer IPython than Colab's 7.34: pip's own explanation, no retry offered,
    nothing installed, and the learner's Drive folder as it was."""
    colab = Runtime(base313, tmp_path, origin)
    drive = colab.content / "drive" / "MyDrive" / "mechinterp-course"
    shutil.copytree(origin, drive, ignore=shutil.ignore_patterns(".git"))
    pyproject = drive / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"ipython>=7.34",', '"ipython>=8.12",', 1))
    assert '"ipython>=8.12"' in pyproject.read_text()
    colab.keep()
    before = tree_state(drive)
    cell = pipeline.colab_cell_source().replace('COURSE_SOURCE = ""', f'COURSE_SOURCE = "{drive}"', 1)
    ran = colab.run(cell)
    out, shown = text_of(ran.cells[0]), error_lines(ran.cells[0])
    assert "The conflict is caused by:" in out and "ipython>=8.12" in out and "ipython==7.34.0" in out, out
    assert "running the cell again will fail the same way" in out and "retry" not in out
    assert shown == ["Colab set-up stopped: the course could not be installed (above)."], shown
    assert not (colab.content / "mechinterp-course").exists()  # the copy this run made, removed again
    assert tree_state(drive) == before and colab.learner_files_intact() and not colab.moved()
    print("\nconflict:", out)


def test_the_notebooks_colab_cell_is_the_one_run_here():
    for path in pipeline.learner_notebooks():
        assert nbformat.read(path, as_version=4).cells[1].source == pipeline.colab_cell_source(), path
