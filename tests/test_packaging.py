"""Set-up and packaging: one dependency list, and it covers what the course imports."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCAL = {"utils", "solutions", "tests"}


def declared() -> dict[str, str]:
    deps = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]
    return {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-"): d for d in deps}


def imported_distributions() -> dict[str, str]:
    """Distribution → an example file, for every third-party import in utils/ and solutions/."""
    owners = md.packages_distributions()
    found: dict[str, str] = {}
    for folder in ("utils", "solutions"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                for name in names:
                    top = name.split(".")[0]
                    if top in LOCAL or top in sys.stdlib_module_names:
                        continue
                    for dist in owners.get(top, [top]):
                        found.setdefault(dist.lower().replace("_", "-"), str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    missing = {d: f for d, f in imported_distributions().items() if d not in declared()}
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"


def test_every_dependency_states_a_lower_bound():
    assert all(">=" in spec for spec in declared().values()), declared()


def test_environment_yml_installs_from_pyproject_not_its_own_list():
    text = (ROOT / "environment.yml").read_text()
    assert "-e .[test]" in text
    assert not any(name in text for name in ("torch", "transformer-lens", "nbgrader"))


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "python3 course.py test" in readme and "python3 course.py test" in ci
    assert "python3 course.py lab" in readme


def test_course_script_rejects_unknown_commands_with_usage():
    proc = subprocess.run([sys.executable, str(ROOT / "course.py"), "bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "course.py lab" in proc.stdout


def test_checkpoints_are_never_pickles():
    shipped = list((ROOT / "utils" / "models" / "checkpoints").glob("*"))
    assert not [p for p in shipped if p.suffix in {".pt", ".pth", ".pkl", ".bin", ".ckpt"}]
    offenders = [str(p.relative_to(ROOT)) for folder in ("utils", "solutions", "chapters")
                 for p in (ROOT / folder).rglob("*.py") if re.search(r"torch\.load\(|pickle\.load", p.read_text())]
    assert not offenders, f"loading must never unpickle: {offenders}"
