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
LOCAL = {"utils", "solutions", "tests"}  # (and google.colab, which only Colab has)


def name_of(spec: str) -> str:
    return re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, str]:
    """Every dependency, the extras' too (the course's reference to its own extra left out)."""
    deps = PYPROJECT["project"]["dependencies"] + [
        d for extra in PYPROJECT["project"]["optional-dependencies"].values() for d in extra]
    return {name_of(d): d for d in deps if name_of(d) != PYPROJECT["project"]["name"]}


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
                    if top in LOCAL or top in sys.stdlib_module_names or name.startswith("google.colab"):
                        continue
                    for dist in owners.get(top, [top]):
                        found.setdefault(dist.lower().replace("_", "-"), str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    missing = {d: f for d, f in imported_distributions().items() if d not in declared()}
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"


def test_every_dependency_states_a_lower_bound():
    assert all(">=" in spec for spec in declared().values()), declared()


def test_the_base_install_is_what_notebooks_need_and_colab_already_satisfies():
    """Colab installs only the base list (utils/colab.py), pinning what it ships: so the base list
    holds no tooling, and each lower bound is met by Colab's own version where Colab has the package."""
    from tests.colab.runtime import colab_versions

    base = {name_of(d): d for d in PYPROJECT["project"]["dependencies"]}
    assert not base.keys() & {"jupyterlab", "nbgrader", "pytest", "ipykernel", "nbclient", "nbformat"}
    assert "lab,test" in (ROOT / "course.py").read_text()
    colab = colab_versions()
    version = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])  # noqa: E731
    for name, spec in base.items():
        if name in colab:
            lower = spec.split(">=", 1)[1].split(",")[0].split()[0]
            assert version(colab[name]) >= version(lower), f"Colab has {name} {colab[name]}, the course asks {spec}"


def test_environment_yml_installs_from_pyproject_not_its_own_list():
    text = (ROOT / "environment.yml").read_text()
    assert "-e .[lab,test,teach]" in text
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
