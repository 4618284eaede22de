#!/usr/bin/env python3
"""Set up the course in ./.venv, then open it or test it.

    python3 course.py lab     # set up, then open JupyterLab on the course index
    python3 course.py test    # set up, then run the whole test suite on every core (extra args go to pytest)
    python3 course.py setup   # set up only
    python3 course.py colab   # set up, then run the Colab simulation (tests/colab: slow, needs Python 3.12 and 3.13)

Uses only the standard library, so it runs on a fresh Python 3.11, 3.12 or 3.13.
Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
COURSE_VENV puts the environment elsewhere (CI keeps a second one for Python 3.13 that way).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("COURSE_VENV", ROOT / ".venv"))
# The CPU build keeps a fresh install small; set COURSE_TORCH="torch" (or a CUDA
# build's spec) to let pip choose. pyproject.toml only states the lower bound.
TORCH_SPEC = os.environ.get("COURSE_TORCH", "torch==2.13.0")
# What to install besides the notebooks' own dependencies (pyproject.toml's extras): JupyterLab and
# nbgrader, and the test suite. CI's Python 3.13 run needs only "test".
EXTRAS = os.environ.get("COURSE_EXTRAS", "lab,test")


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def run(*cmd: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def has_module(python: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", probe]).returncode == 0


def setup() -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"The course needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        print(f"Creating the virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = venv_python()
    stamp = VENV / ".course-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and has_module(python, "utils.grading"):
        return python
    if not has_module(python, "torch"):
        run(python, "-m", "pip", "install", "--quiet", TORCH_SPEC)
    run(python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{EXTRAS}]")
    stamp.write_text(wanted)
    return python


def parallel(extra: list[str]) -> list[str]:
    """pytest-xdist options: one worker per core, a chapter's notebook tests kept together
    (they share one run), in the order pytest collects them (the slowest chapters first)."""
    if (os.cpu_count() or 1) < 2 or any(a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in extra):
        return []
    return ["-n", str(os.cpu_count()), "--dist", "loadgroup", "--no-loadscope-reorder"]


def lab_env() -> dict[str, str]:
    """The environment JupyterLab starts in: utils/jupyter_config/ first on JUPYTER_CONFIG_PATH,
    which turns nbgrader's JupyterLab and server extensions off for learners (its README says why)."""
    path = [str(ROOT / "utils" / "jupyter_config"), *filter(None, [os.environ.get("JUPYTER_CONFIG_PATH")])]
    return {**os.environ, "JUPYTER_CONFIG_PATH": os.pathsep.join(path)}


def main(argv: list[str]) -> int:
    command, extra = (argv[0], argv[1:]) if argv else ("lab", [])
    if command not in {"lab", "test", "setup", "colab"}:
        print(__doc__)
        return 2
    python = setup()
    if command == "lab":
        return subprocess.call([str(python), "-m", "jupyter", "lab", "chapters/index.ipynb", *extra],
                               cwd=ROOT, env=lab_env())
    if command == "test":
        return subprocess.call([str(python), "-m", "pytest", *parallel(extra), *extra], cwd=ROOT)
    if command == "colab":
        env = {**os.environ, "COURSE_COLAB": "1"}
        return subprocess.call([str(python), "-m", "pytest", "tests/colab", "-p", "no:xdist", "-s", *extra],
                               cwd=ROOT, env=env)
    print(f"Ready: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
