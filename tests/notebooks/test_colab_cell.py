"""The Colab set-up cell, run in this machine's course environment: a stand-in `google.colab`
module, a fresh environment layered on .venv, and a local repository in place of GitHub.

This is the quick version that runs with the rest of the suite; tests/colab runs a whole notebook
in an environment of Colab's own package versions on Python 3.12 and 3.13 (`course.py colab`)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from utils.notebooks import pipeline

ROOT = pipeline.ROOT
STANDIN = ROOT / "tests" / "colab" / "standin"

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding this working tree, tagged with the release the cell fetches."""
    repo = tmp_path_factory.mktemp("origin") / "mechinterp-course"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_bytes((ROOT / rel).read_bytes())
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot", cwd=repo)
    git("tag", pipeline.colab_ref(), cwd=repo)
    return repo


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory) -> Path:
    """A fresh virtual environment that sees this one's packages (Colab's preinstalled stack)
    but not the course itself."""
    env_dir = tmp_path_factory.mktemp("colab-venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "colab_preinstalled.pth").write_text(parent + "\n")
    # venv bundles an old setuptools that would shadow the stack's own
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True)
    return python


def run_cell_as_colab(python: Path, workdir: Path, origin: Path | None, *, colab: bool) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(STANDIN)!r})
        if {colab!r}:
            import google.colab
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell({pipeline.colab_cell_source()!r})
        result.raise_error()
        if {colab!r}:
            shell.run_cell("import utils.grading, utils.notebook; print('COURSE AT', utils.__file__)").raise_error()
    """)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    # (pip reads PIP_NO_BUILD_ISOLATION inverted: "0" turns build isolation off.)
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               COLAB_STANDIN_LOG=str(workdir / "colab.log"))
    if origin is not None:  # git fetches the configured URL from the local repository
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.{origin.as_uri()}.insteadOf",
                   GIT_CONFIG_VALUE_0=pipeline.repository_url())
    return subprocess.run([python, "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def test_colab_cell_fetches_the_release_installs_and_makes_the_course_importable(origin, colab_python, tmp_path):
    proc = run_cell_as_colab(colab_python, tmp_path, origin, colab=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    clone = tmp_path / "mechinterp-course"
    assert (clone / "utils" / "grading" / "__init__.py").exists()
    assert (clone / ".colab-done").read_text() == pipeline.colab_ref()
    assert f"COURSE AT {clone / 'utils' / '__init__.py'}" in proc.stdout
    assert "Colab set-up: installed the course and 0 packages" in proc.stdout, proc.stdout
    assert "preinstalled packages changed" in proc.stdout and "Colab set-up: done" in proc.stdout
    assert (tmp_path / "colab.log").read_text() == "enable_custom_widget_manager\n"
    shown = subprocess.run([colab_python, "-m", "pip", "show", "mechinterp-course"], capture_output=True,
                           text=True, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert "Name: mechinterp-course" in shown.stdout
    again = run_cell_as_colab(colab_python, tmp_path, origin, colab=True)
    assert again.returncode == 0 and "already installed" in again.stdout, again.stdout + again.stderr[-2000:]


def test_colab_cell_does_nothing_outside_colab(colab_python, tmp_path):
    proc = run_cell_as_colab(colab_python, tmp_path, None, colab=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "mechinterp-course").exists()


def test_colab_cell_clones_a_release_not_a_branch():
    source, (url, ref) = pipeline.colab_cell_source(), pipeline.course_settings()
    compile(source, "colab-cell", "exec")
    assert f'REPO, REF, COURSE = "{url}", "{ref}"' in source
    assert ref not in {"main", "master", "HEAD"} and "--branch" not in source
    assert f"/blob/{ref}/chapters/" in pipeline.colab_badge(ROOT / "chapters" / "ch1_transformer_math" / "x.ipynb")
    # success is marked only after the install, so an interrupted set-up is redone
    assert source.index("colab.py") < source.index('open(DONE, "w")')
    assert "enable_custom_widget_manager()" in source
