"""Install the course into a running Colab runtime without moving any package Colab ships.

Every notebook's Colab cell (written by `python -m utils.notebooks sync`) finds or fetches the
course and then runs this file with the kernel's own Python:

    python utils/colab.py /content/mechinterp-course

It pins every package already installed to its installed version (a pip constraints file), so pip
adds only what the runtime lacks (TransformerLens, circuitsvis, jaxtyping...) and never upgrades or
downgrades what Colab ships: its IPython, ipykernel and ipywidgets, which its front end depends on,
and its torch. pip first resolves without installing (`--dry-run --report`), so a package that
would move is refused before anything changes; then it installs and says what it added.

When pip fails, it shows why, and the exit status tells the cell whether running it again can
help: 75 for a network problem (worth a retry), 1 for anything else (a conflict recurs every time).
Standard library only: it runs before the course and its dependencies are importable.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

# A version pip can parse (PEP 440, as Colab's packages use it); anything else is left unpinned.
PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?$", re.I)
TRANSIENT = 75  # exit status for "a network problem: run the cell again" (sysexits' EX_TEMPFAIL)

# How pip says it could not find versions that fit together: the same every time it runs.
CONFLICT = re.compile(r"ResolutionImpossible|conflict is caused by|conflicting dependencies", re.I)
# How pip says the network failed: a retry may work.
NETWORK = re.compile(r"NewConnectionError|ConnectTimeoutError|ReadTimeoutError|Read timed out|timed out"
                     r"|Temporary failure in name resolution|Name or service not known|Failed to resolve"
                     r"|Max retries exceeded|Connection (reset|aborted|refused)|RemoteDisconnected"
                     r"|IncompleteRead|ProtocolError|Network is unreachable|ProxyError"
                     r"|HTTP error 5\d\d|\b5\d\d (Server Error|Service Unavailable|Bad Gateway|Gateway Time)",
                     re.I)

WHAT_TO_DO = ("This is not a network problem: running the cell again will fail the same way. If you chose an "
              "older runtime version, try the latest (Runtime > Change runtime type); otherwise run the course on "
              "your own machine (`python3 course.py lab`), and please send this output to the course's maintainers.")


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


def classify(output: str) -> str:
    """'conflict', 'network' or 'other': whether a failed pip run is worth repeating.
    A conflict is checked first: pip may have retried a download before it found one."""
    if CONFLICT.search(output):
        return "conflict"
    if NETWORK.search(output):
        return "network"
    return "other"


def explanation(output: str, limit: int = 60) -> str:
    """The part of pip's output a learner needs: for a conflict, from "Cannot install" (or "The
    conflict is caused by") to pip's generic advice; otherwise its last lines."""
    lines = output.rstrip().splitlines()
    start = next((i for i, line in enumerate(lines)
                  if "Cannot install" in line or "conflict is caused by" in line), None)
    if start is None:
        return "\n".join(lines[-limit:])
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("To fix this")), len(lines))
    return "\n".join(lines[start:end][:limit]).rstrip()


def moves(report: dict, present: dict[str, str], course: str) -> list[str]:
    """The installed packages whose version pip's --report says the install would change."""
    planned = {normal(item["metadata"]["name"]): item["metadata"]["version"] for item in report.get("install", [])}
    return sorted(f"{name} {present[name]} -> {version}" for name, version in planned.items()
                  if name in present and name != course and present[name] != version)


def pip(*args: str | Path) -> subprocess.CompletedProcess:
    """pip in this Python, its output (stdout and stderr in order) captured. Not --quiet: that hides
    the lines that explain a conflict."""
    return subprocess.run([sys.executable, "-m", "pip", *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def failed(proc: subprocess.CompletedProcess, took: float) -> int:
    """Say why pip failed and return the exit status that tells the cell whether to offer a retry."""
    kind = classify(proc.stdout)
    print(explanation(proc.stdout))
    if kind == "conflict":
        print(f"Colab set-up: pip cannot install the course in this runtime without changing one of Colab's "
              f"own packages (pip's explanation is above), so it installed nothing. {WHAT_TO_DO}")
        return 1
    if kind == "network":
        print(f"Colab set-up: pip could not download what the course needs ({took:.0f} s; a network "
              f"problem, above); nothing was installed.")
        return TRANSIENT
    print(f"Colab set-up: pip failed (exit {proc.returncode}, {took:.0f} s; its output is above).")
    return 1


def install(course_dir: Path) -> int:
    with open(course_dir / "pyproject.toml", "rb") as f:
        course = normal(tomllib.load(f)["project"]["name"])
    before = installed()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:  # outside the course folder, which may be the learner's
        pins, report = Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        pins.write_text(constraints(before, course))
        request = ["install", "--disable-pip-version-check", "--constraint", pins, "--editable", course_dir]
        plan = pip(*request, "--dry-run", "--report", report)
        if plan.returncode:
            return failed(plan, time.monotonic() - started)
        if moved := moves(json.loads(report.read_text()), before, course):
            print(f"Colab set-up: installing the course would change these packages Colab ships: "
                  f"{', '.join(moved)}; nothing was installed. {WHAT_TO_DO}")
            return 1
        proc = pip(*request)
        if proc.returncode:
            return failed(proc, time.monotonic() - started)
    took = time.monotonic() - started
    after = installed()
    added = sorted(f"{name} {after[name]}" for name in after.keys() - before.keys() if name != course)
    moved = sorted(f"{name} {before[name]} -> {after[name]}" for name in before.keys() & after.keys()
                   if before[name] != after[name] and name != course)
    print(f"Colab set-up: installed the course and {len(added)} packages the runtime lacked in {took:.0f} s: "
          + (", ".join(added) or "none"))
    if moved:  # pip's plan said otherwise, so this would be a pip bug: say so all the same
        print("Colab set-up: these preinstalled packages changed version, which should not happen: "
              + ", ".join(moved))
        return 1
    print(f"Colab set-up: none of the {len(before)} preinstalled packages changed "
          f"(torch {before.get('torch', '?')}, IPython {before.get('ipython', '?')}, "
          f"ipywidgets {before.get('ipywidgets', '?')}).")
    return 0


if __name__ == "__main__":
    sys.exit(install(Path(sys.argv[1]).resolve()))
