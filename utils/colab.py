"""Install the course into a running Colab runtime without moving any package Colab ships.

Every notebook's Colab cell (written by `python -m utils.notebooks sync`) fetches the course and
then runs this file with the kernel's own Python:

    python utils/colab.py /content/mechinterp-course

Before installing, it pins every package already installed to its installed version (a pip
constraints file), so pip adds only what the runtime lacks (TransformerLens, circuitsvis,
jaxtyping...) and stops with an error rather than upgrade or downgrade what Colab ships: its
IPython, ipykernel and ipywidgets, which its front end depends on, and its torch. It then says
what it added and checks that nothing else changed. Standard library only: it runs before the
course and its dependencies are importable.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

# A version pip can parse (PEP 440, as Colab's packages use it); anything else is left unpinned.
PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?$", re.I)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    """Every distribution this Python imports (normalised name -> version); the first on the path wins."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normal(name), dist.version)
    return found


def constraints(present: dict[str, str], course: str) -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(present.items())
                   if name != course and PEP440.match(version))


def install(course_dir: Path) -> int:
    with open(course_dir / "pyproject.toml", "rb") as f:
        course = normal(tomllib.load(f)["project"]["name"])
    before = installed()
    pins = course_dir / ".colab-constraints.txt"
    pins.write_text(constraints(before, course))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--constraint", str(pins), "--editable", str(course_dir)],
                          capture_output=True, text=True)
    took = time.monotonic() - started
    if proc.returncode:
        print(proc.stdout[-4000:] + proc.stderr[-4000:])
        print(f"Colab set-up: pip could not install the course without changing Colab's own packages "
              f"(exit {proc.returncode}, {took:.0f} s). Nothing was marked as done: run the cell again to retry.")
        return 1
    after = installed()
    added = sorted(f"{name} {after[name]}" for name in after.keys() - before.keys() if name != course)
    moved = sorted(f"{name} {before[name]} -> {after[name]}" for name in before.keys() & after.keys()
                   if before[name] != after[name] and name != course)
    print(f"Colab set-up: installed the course and {len(added)} packages the runtime lacked in {took:.0f} s: "
          + (", ".join(added) or "none"))
    if moved:
        print("Colab set-up: these preinstalled packages changed version, which should not happen: "
              + ", ".join(moved))
        return 1
    print(f"Colab set-up: none of the {len(before)} preinstalled packages changed "
          f"(torch {before.get('torch', '?')}, IPython {before.get('ipython', '?')}, "
          f"ipywidgets {before.get('ipywidgets', '?')}).")
    return 0


if __name__ == "__main__":
    sys.exit(install(Path(sys.argv[1]).resolve()))
