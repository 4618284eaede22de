"""A stand-in for Colab's runtime, built on this machine for the Colab simulation tests.

Colab publishes the packages of its runtime (`colab-pip-freeze.txt` beside this file is that list
for the default CPU runtime, Python 3.13, as of googlecolab/backend-info commit a724079,
2026-08-19). `base_env(version)` builds a virtual environment on that Python version holding
Colab's versions of the packages the course touches (its front end: IPython, ipykernel,
ipywidgets, traitlets...; and what the notebooks use: torch, numpy, transformers, plotly...),
with every other package pinned to Colab's version too. It is slow to build (torch alone is
2-3 GB) and read-only afterwards, so it is cached between runs (COLAB_SIM_CACHE, by default
~/.cache/mechinterp-course/colab-sim), keyed by the Python version and the package list.

`session_env(base, where)` is what each test gets: a fresh, empty environment layered on the base
(a .pth file puts the base's site-packages on its path), so that installing the course there
leaves the base as Colab shipped it.

    python -m tests.colab.runtime 3.13     # build (or find) the base environment, print its path
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FREEZE = HERE / "colab-pip-freeze.txt"
STANDIN = HERE / "standin"
CACHE = Path(os.environ.get("COLAB_SIM_CACHE") or Path.home() / ".cache" / "mechinterp-course" / "colab-sim")

# What Colab has preinstalled that the course or its install touches, installed at Colab's
# versions. The front end is what must never move; the rest is what the notebooks import.
FRONT_END = ["ipython", "ipykernel", "ipywidgets", "traitlets", "jupyter_client", "jupyter_core",
             "widgetsnbextension", "jupyterlab_widgets", "notebook", "tornado", "pyzmq",
             "matplotlib-inline", "prompt_toolkit", "nbformat", "nbclient"]
RUNTIME = ["torch", "numpy", "transformers", "tokenizers", "huggingface_hub", "safetensors", "accelerate",
           "datasets", "pandas", "einops", "plotly", "tqdm", "rich", "beartype", "typeguard", "wandb",
           "sentencepiece", "protobuf", "typing_extensions", "packaging", "importlib_metadata"]
# Colab's torch is the CPU build from PyTorch's own index, which this machine cannot reach; PyPI's
# build of the same release stands in for it (larger, same Python API). That build brings its own
# CUDA libraries at the versions it was built against, so Colab's pins of those are left out.
TORCH_BUILD = re.compile(r"^(nvidia-|cuda-|triton$)")
URL_VERSION = re.compile(r"/(?P<name>[A-Za-z0-9_]+)-(?P<version>[^-/]+?)(?:%2B|\+)[a-z0-9]+-cp")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_versions() -> dict[str, str]:
    """Colab's version of each package it lists (normalised name -> version)."""
    versions: dict[str, str] = {}
    for line in FREEZE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            name, version = line.split("==", 1)
            versions[normal(name)] = version.strip()
        elif " @ " in line and (m := URL_VERSION.search(line)):
            versions[normal(line.split(" @ ", 1)[0])] = m["version"]
    return versions


def constraints() -> str:
    """Every package Colab lists, pinned to its version (a pip constraints file)."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(colab_versions().items())
                   if not TORCH_BUILD.match(name))


def interpreter(version: str) -> Path | None:
    """A CPython of that minor version: COLAB_PYTHON_<3_13>, pyenv's, or one on PATH."""
    if explicit := os.environ.get("COLAB_PYTHON_" + version.replace(".", "_")):
        return Path(explicit)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    if found:
        return found[-1]
    which = shutil.which(f"python{version}")
    return Path(which) if which else None


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def site_packages(python: Path) -> Path:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PIP_CONSTRAINT"}}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_PROGRESS_BAR="off")
    return env


def base_env(version: str, log=print) -> Path:
    """The cached Colab stand-in for Python `version`, built if missing."""
    python = interpreter(version)
    if python is None:
        raise FileNotFoundError(f"no Python {version} here (pyenv install {version}, or set "
                                f"COLAB_PYTHON_{version.replace('.', '_')})")
    wanted = [normal(n) for n in FRONT_END + RUNTIME]
    key = hashlib.sha256("\n".join([version, constraints(), *wanted]).encode()).hexdigest()[:12]
    env = CACHE / f"py{version}-{key}"
    if (env / ".complete").exists():
        return env
    if env.exists():
        shutil.rmtree(env)  # an interrupted build
    env.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the Colab stand-in for Python {version} in {env} (several minutes: torch is 2-3 GB)")
    subprocess.run([python, "-m", "venv", env], check=True)
    pins = colab_versions()
    cfile = env / "colab-constraints.txt"
    cfile.write_text(constraints())
    # Colab's pip, then its packages; the freeze pins every dependency they pull in as well.
    subprocess.run([env_python(env), "-m", "pip", "install", "-q", f"pip=={pins['pip']}"], check=True, env=pip_env())
    subprocess.run([env_python(env), "-m", "pip", "install", "-q", "-c", cfile,
                    *[f"{n}=={pins[n]}" for n in wanted]], check=True, env=pip_env())
    site = site_packages(env_python(env))
    shutil.copytree(STANDIN / "google" / "colab", site / "google" / "colab", dirs_exist_ok=True)
    (env / ".complete").write_text(key + "\n")
    return env


def session_env(base: Path, where: Path) -> Path:
    """A fresh environment at `where` that sees `base`'s packages; returns its python."""
    base_python = env_python(base).resolve()
    subprocess.run([base_python, "-m", "venv", "--without-pip", where], check=True)
    python = env_python(where)
    site = site_packages(python)
    (site / "colab_preinstalled.pth").write_text(f"{site_packages(env_python(base))}\n")
    return python


def installed(python: Path) -> dict[str, str]:
    """Every distribution `python` can import (normalised name -> version), first one on the path wins."""
    code = ("import importlib.metadata as m, json\n"
            "seen = {}\n"
            "for d in m.distributions():\n"
            "    seen.setdefault(d.metadata['Name'], d.version)\n"
            "print(json.dumps(seen))")
    import json
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    return {normal(k): v for k, v in json.loads(out).items() if k}


if __name__ == "__main__":
    for v in sys.argv[1:] or ["3.13"]:
        print(base_env(v))
