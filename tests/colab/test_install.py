"""utils/colab.py, quickly: how it reads pip's output (a conflict recurs, a network failure may not),
that it refuses a moved package before pip changes anything, and one real conflict from pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from utils import colab

CONFLICT = textwrap.dedent("""\
    Obtaining file:///content/mechinterp-course
      Preparing editable metadata (pyproject.toml): finished with status 'done'
    Collecting transformer-lens>=4.3 (from mechinterp-course==0.1.0)
    INFO: pip is looking at multiple versions of mechinterp-course to determine which version is compatible with other requirements. This could take a while.
    ERROR: Cannot install mechinterp-course==0.1.0 because these package versions have conflicting dependencies.

    The conflict is caused by:
        mechinterp-course 0.1.0 depends on ipython>=8.12
        The user requested (constraint) ipython==7.34.0

    To fix this you could try to:
    1. loosen the range of package versions you've specified
    2. remove package versions to allow pip to attempt to solve the dependency conflict

    ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
    """)
OFFLINE = textwrap.dedent("""\
    Obtaining file:///content/mechinterp-course
    WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/transformer-lens/
    ERROR: Could not find a version that satisfies the requirement transformer-lens>=4.3 (from mechinterp-course) (from versions: none)
    ERROR: No matching distribution found for transformer-lens>=4.3
    """)
OUTAGE = "ERROR: HTTP error 503 while getting https://files.pythonhosted.org/packages/x/transformer_lens-4.3.0.whl\n"
TIMEOUT = "pip._vendor.urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Read timed out.\n"
UNSUPPORTED = ("ERROR: Package 'mechinterp-course' requires a different Python: 3.10.12 not in '>=3.11'\n")
# A conflict found after a download was retried is still a conflict.
RETRIED_THEN_CONFLICT = OFFLINE.splitlines()[1] + "\n" + CONFLICT


@pytest.mark.parametrize("output, kind", [(CONFLICT, "conflict"), (OFFLINE, "network"), (OUTAGE, "network"),
                                          (TIMEOUT, "network"), (UNSUPPORTED, "other"),
                                          (RETRIED_THEN_CONFLICT, "conflict")],
                         ids=["conflict", "offline", "http-503", "timeout", "other", "retried-then-conflict"])
def test_pip_failures_are_told_apart(output, kind):
    assert colab.classify(output) == kind


def test_the_explanation_shown_is_pips_own_without_its_generic_advice():
    shown = colab.explanation(CONFLICT)
    assert shown.startswith("ERROR: Cannot install mechinterp-course==0.1.0")
    assert "The conflict is caused by:" in shown and "The user requested (constraint) ipython==7.34.0" in shown
    assert "loosen the range" not in shown and "Collecting" not in shown
    assert colab.explanation(OFFLINE).endswith("No matching distribution found for transformer-lens>=4.3")


def test_the_report_names_the_packages_that_would_move():
    report = {"install": [{"metadata": {"name": "IPython", "version": "8.12.0"}},
                          {"metadata": {"name": "jaxtyping", "version": "0.3.0"}},
                          {"metadata": {"name": "mechinterp_course", "version": "0.1.0"}}]}
    present = {"ipython": "7.34.0", "torch": "2.11.0", "mechinterp-course": "0.0.1"}
    assert colab.moves(report, present, "mechinterp-course") == ["ipython 7.34.0 -> 8.12.0"]


class FakePip:
    """pip as utils/colab.py runs it: each call answers with the next (exit status, output); a dry
    run writes `report` to the file --report names."""

    def __init__(self, *answers, report=None):
        self.answers, self.report, self.calls = list(answers), report or {"install": []}, []

    def __call__(self, *args):
        args = [str(a) for a in args]
        self.calls.append(args)
        if "--report" in args:
            Path(args[args.index("--report") + 1]).write_text(json.dumps(self.report))
        status, output = self.answers.pop(0)
        return subprocess.CompletedProcess(args, status, output, None)


@pytest.fixture
def course(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mechinterp-course"\nversion = "0.1.0"\n')
    monkeypatch.setattr(colab, "installed", lambda: {"ipython": "7.34.0", "torch": "2.11.0"})
    return tmp_path


def test_a_conflict_shows_pips_explanation_installs_nothing_and_says_a_retry_will_not_help(course, monkeypatch,
                                                                                              capsys):
    pip = FakePip((1, CONFLICT))
    monkeypatch.setattr(colab, "pip", pip)
    assert colab.install(course) == 1
    out = capsys.readouterr().out
    assert "The conflict is caused by:" in out and "ipython==7.34.0" in out
    assert "not a network problem: running the cell again will fail the same way" in out
    assert "Runtime > Change runtime type" in out and "python3 course.py lab" in out
    assert len(pip.calls) == 1 and "--dry-run" in pip.calls[0]  # resolved only, never installed
    assert "--quiet" not in pip.calls[0] and "-q" not in pip.calls[0]


def test_a_network_failure_asks_the_cell_to_offer_a_retry(course, monkeypatch, capsys):
    monkeypatch.setattr(colab, "pip", FakePip((0, "resolved"), (1, OFFLINE)))
    assert colab.install(course) == colab.TRANSIENT == 75
    out = capsys.readouterr().out
    assert "a network problem" in out and "Temporary failure in name resolution" in out


def test_a_package_that_would_move_is_refused_before_pip_installs(course, monkeypatch, capsys):
    pip = FakePip((0, "Would install ipython-8.12.0"),
                  report={"install": [{"metadata": {"name": "ipython", "version": "8.12.0"}}]})
    monkeypatch.setattr(colab, "pip", pip)
    assert colab.install(course) == 1
    assert "would change these packages Colab ships: ipython 7.34.0 -> 8.12.0" in capsys.readouterr().out
    assert len(pip.calls) == 1  # the dry run only


def test_an_install_resolves_first_then_installs_with_every_package_pinned(course, monkeypatch, capsys):
    pins = []
    pip = FakePip((0, "Would install jaxtyping-0.3.0"), (0, "Successfully installed jaxtyping-0.3.0"),
                  report={"install": [{"metadata": {"name": "jaxtyping", "version": "0.3.0"}}]})

    def recording(*args):
        args = [str(a) for a in args]
        pins.append(Path(args[args.index("--constraint") + 1]).read_text())
        return pip(*args)

    monkeypatch.setattr(colab, "pip", recording)
    assert colab.install(course) == 0
    assert [("--dry-run" in c) for c in pip.calls] == [True, False]
    assert pins == ["ipython==7.34.0\ntorch==2.11.0\n"] * 2
    assert not list(course.glob(".colab-constraints*"))  # nothing written into the course folder
    assert "none of the 2 preinstalled packages changed" in capsys.readouterr().out


def test_pips_real_conflict_message_is_shown(tmp_path):
    """The real pip, offline, in a fresh environment layered on this one: a course that needs an
    IPython newer than the one installed gets pip's own explanation, and nothing is installed."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "layered.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    course = tmp_path / "course"
    (course / "utils").mkdir(parents=True)
    (course / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "mechinterp-course"
        version = "0.1.0"
        dependencies = ["ipython>=99"]
        [tool.setuptools]
        packages = []
        """))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_NO_INDEX": "1",
           "PIP_NO_BUILD_ISOLATION": "0", "PIP_CONFIG_FILE": os.devnull}
    proc = subprocess.run([python, "-P", Path(colab.__file__), course], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "The conflict is caused by:" in proc.stdout and "depends on ipython>=99" in proc.stdout, proc.stdout
    assert "running the cell again will fail the same way" in proc.stdout
    assert not list(Path(site).glob("*mechinterp*")), "nothing is installed"
