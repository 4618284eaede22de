"""The Colab set-up cell, run as Colab would: a stand-in `google.colab` module,
a fresh environment, and a local clone of this repository in place of GitHub."""

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

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding this working tree, standing in for the GitHub repository."""
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


def run_cell_as_colab(python: Path, workdir: Path, source: str, *, colab: bool) -> subprocess.CompletedProcess:
    fake = workdir / "fake_colab"
    (fake / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(fake)!r})
        if {colab!r}:
            import google.colab
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell({source!r})
        result.raise_error()
        if {colab!r}:
            shell.run_cell("import utils.grading, utils.notebook; print('COURSE AT', utils.__file__)").raise_error()
    """)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    # (pip reads PIP_NO_BUILD_ISOLATION inverted: "0" turns build isolation off.)
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([python, "-c", script], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def test_colab_cell_clones_installs_and_makes_the_course_importable(origin, colab_python, tmp_path):
    source = pipeline.colab_cell_source().replace(pipeline.repository_url(), origin.as_uri())
    assert source != pipeline.colab_cell_source(), "the cell must use the repository URL from pyproject.toml"
    proc = run_cell_as_colab(colab_python, tmp_path, source, colab=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    clone = tmp_path / "mechinterp-course"
    assert (clone / "utils" / "grading" / "__init__.py").exists()
    assert f"COURSE AT {clone / 'utils' / '__init__.py'}" in proc.stdout
    shown = subprocess.run([colab_python, "-m", "pip", "show", "mechinterp-course"], capture_output=True,
                           text=True, env={**os.environ, "PIP_NO_INDEX": "1"})
    assert "Name: mechinterp-course" in shown.stdout


def test_colab_cell_does_nothing_outside_colab(colab_python, tmp_path):
    proc = run_cell_as_colab(colab_python, tmp_path, pipeline.colab_cell_source(), colab=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "mechinterp-course").exists()
