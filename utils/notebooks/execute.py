"""Execute a notebook in a fresh kernel and read values back out of it.

Tests use this to check what the prose claims: run the solved notebook top to
bottom, then evaluate expressions (e.g. `float(induction_scores.max())`) in the
same kernel. Nothing is written back to the notebook file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]


class NotebookFailed(RuntimeError):
    """A cell raised: which one, and the error it printed."""


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a grading or test kernel: the repository importable, offline, CPU unless told."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("COURSE_HEADLESS", "1")  # see utils.notebook.interactive_view
    env.update(extra or {})
    return env


def scripts_first(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (os.environ by default) with this interpreter's scripts first on PATH: nbgrader runs
    `alembic` from PATH, and a virtual environment that is not activated is not on it."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_notebook(notebook: nbformat.NotebookNode | str | Path, *, read: dict[str, str] | None = None,
                 cwd: str | Path | None = None, timeout: int = 1800, allow_errors: bool = False,
                 env: dict[str, str] | None = None) -> tuple[nbformat.NotebookNode, dict]:
    """Run every cell; return the executed notebook and `{name: value}` for each expression in `read`.

    Values come back through JSON, so expressions should evaluate to numbers, strings, lists or dicts.
    """
    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    if isinstance(notebook, (str, Path)) and cwd is None:
        cwd = Path(notebook).parent
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd or ROOT)}})
    values: dict = {}
    with client.setup_kernel(env=kernel_env(env)):
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                raise NotebookFailed(f"cell {index} failed:\n{cell.source[:300]}\n---\n{error}") from None
        if read:
            probe = probe_cell(read)
            nb.cells.append(probe)
            client.execute_cell(probe, len(nb.cells) - 1)
            nb.cells.pop()
            values = probed_values(probe)
    return nb, values


PROBE_MARKER = "@@PROBE@@"


def probe_cell(read: dict[str, str]) -> nbformat.NotebookNode:
    """A code cell that prints `{name: value}` for each expression, as one JSON line."""
    code = "import json as _json\nprint(" + repr(PROBE_MARKER) + " + _json.dumps({" + ", ".join(
        f"{name!r}: ({expr})" for name, expr in read.items()) + "}))"
    return nbformat.v4.new_code_cell(code, metadata={"course_probe": True})


def probed_values(cell: nbformat.NotebookNode) -> dict:
    """The values a probe cell printed once it has run (anywhere: here, or in nbgrader's kernel)."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise NotebookFailed(f"the probe failed: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    lines = [line for line in text.splitlines() if line.startswith(PROBE_MARKER)]
    if not lines:
        raise NotebookFailed(f"the probe printed nothing it could read: {text[-300:]!r}")
    return json.loads(lines[-1].removeprefix(PROBE_MARKER))
