"""The Colab set-up cell: the second cell of every learner notebook, written by
`python -m utils.notebooks sync`, and the settings it is made from (pyproject.toml).

Kept apart from the rest of the notebook pipeline so that it imports nothing but the standard
library: the tests of the cell's decisions (tests/colab/test_cell.py) run in a second or two.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLAB_MARKER = "# Colab set-up"


def course_settings() -> tuple[str, str]:
    """Where the course is published and what Colab clones: pyproject.toml's
    [project.urls] Repository and [tool.course] colab-ref, the one place both are set."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        meta = tomllib.load(f)
    return meta["project"]["urls"]["Repository"].rstrip("/"), meta["tool"]["course"]["colab-ref"]


def repository_url() -> str:
    return course_settings()[0]


def colab_ref() -> str:
    return course_settings()[1]


def course_release() -> tuple[str, str]:
    """The project's name and version (pyproject.toml): the name of its folder in Colab and of the
    release archive `python3 course.py archive` builds."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return project["name"], project["version"]


def colab_cell_source() -> str:
    """The second cell of every learner notebook. In Colab it finds or fetches the course, installs
    what Colab lacks without moving Colab's own packages (utils/colab.py), marks the folder as done
    only once that worked, turns on Colab's widget manager for ipywidgets, and says what it did.

    It cannot import the course (it is what brings the course in), so the finding and fetching live
    here, in the cell's own text. It never deletes or overwrites a learner's file: it stages what it
    unpacks, copies or fetches in a hidden folder of its own, then moves it to a name nothing has."""
    url, ref = course_settings()
    name, version = course_release()
    return textwrap.dedent(f'''\
        {COLAB_MARKER} (written by `python -m utils.notebooks sync`). In Colab only: install the course and
        # turn on Colab's widget manager; locally it does nothing. It installs the first of:
        #  1. COURSE_SOURCE, if you set it below: a folder or .zip of the course, e.g. in Google Drive once
        #     mounted (`from google.colab import drive; drive.mount("/content/drive")`); it is copied, not changed;
        #  2. a course folder already in /content ({name}...), used where it is;
        #  3. an uploaded /content/{name}-{version}.zip (`python3 course.py archive` builds it);
        #  4. release {ref} of {url}.
        # It never deletes or overwrites a file of yours. Once done, running it again does nothing.
        COURSE_SOURCE = ""
        import glob, importlib.util, os, shutil, subprocess, sys, tempfile, tomllib, zipfile
        if "google.colab" in sys.modules:
            REPO, REF, COURSE = "{url}", "{ref}", None
            NAME, HERE = "{name}", os.getcwd()
            SOURCE = COURSE_SOURCE or os.environ.get("COURSE_SOURCE", "")
            INSTEAD = ("upload the release archive {name}-{version}.zip (`python3 course.py archive` builds it) to "
                       f"{{HERE}} with Colab's file browser, or mount Google Drive (`from google.colab import drive; "
                       "drive.mount('/content/drive')`) and set COURSE_SOURCE at the top of this cell to the course's "
                       "folder or .zip there, then run this cell again")

            class SetupError(Exception):
                def _render_traceback_(self):  # IPython shows this line instead of a traceback
                    return [f"Colab set-up stopped: {{self}}"]

            def is_course(folder):
                try:
                    with open(os.path.join(folder, "pyproject.toml"), "rb") as f:
                        named = tomllib.load(f)["project"]["name"] == NAME
                except (OSError, KeyError, tomllib.TOMLDecodeError):
                    return False
                return named and os.path.isfile(os.path.join(folder, "utils", "colab.py"))

            def git(*args):
                env = {{**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": ""}}  # never ask for a password
                proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env)
                said = (proc.stderr.strip().splitlines() or ["?"])[-1]
                if proc.returncode and any(s in proc.stderr.lower() for s in (
                        "could not resolve", "timed out", "failed to connect", "connection reset",
                        "temporary failure", "returned error: 5", "early eof", "rpc failed")):
                    raise SetupError(f"git could not reach {{REPO}} ({{said}}): a network problem, so run this "
                                     "cell again to retry.")
                if proc.returncode and "fetch" in args:
                    raise SetupError(f"the course's release is not reachable at {{REPO}}@{{REF}} (not published, "
                                     f"private, or no such tag), so nothing was installed; instead, {{INSTEAD}}.")
                if proc.returncode:
                    raise SetupError(f"git failed: {{said}}")

            def fetch(tmp):
                git("init", "--quiet", tmp)
                git("-C", tmp, "fetch", "--quiet", "--depth", "1", REPO, REF)
                git("-C", tmp, "checkout", "--quiet", "--detach", "FETCH_HEAD")
                return tmp

            def unpack(archive):
                def make(tmp):
                    try:
                        with zipfile.ZipFile(archive) as z:
                            z.extractall(tmp)
                    except zipfile.BadZipFile:
                        raise SetupError(f"{{archive}} is not a readable .zip; {{INSTEAD}}.") from None
                    inside = [tmp] + [os.path.join(tmp, d) for d in sorted(os.listdir(tmp))]
                    if not (found := [d for d in inside if is_course(d)]):
                        raise SetupError(f"{{archive}} does not hold the course; {{INSTEAD}}.")
                    return found[0]
                return make

            def copy(folder):
                skip = shutil.ignore_patterns(".git", ".colab-done", "*.egg-info", "__pycache__", ".venv*")
                return lambda tmp: shutil.copytree(folder, os.path.join(tmp, NAME), ignore=skip)

            def staged(make):  # build it in a hidden folder of ours, then move it to a name nothing has
                tmp = tempfile.mkdtemp(prefix=f".{{NAME}}-", dir=HERE)
                try:
                    root, target, n = make(tmp), os.path.join(HERE, NAME), 2
                    while os.path.lexists(target):
                        target, n = os.path.join(HERE, f"{{NAME}}-{{n}}"), n + 1
                    if target != os.path.join(HERE, NAME):
                        print(f"Colab set-up: {{os.path.join(HERE, NAME)}} is left as it is; the course goes into {{target}}")
                    os.rename(root, target)
                    return target
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)  # the staging folder made above, nothing else

            courses = [d for d in sorted(glob.glob(os.path.join(HERE, NAME + "*")), key=len) if is_course(d)]
            done = [d for d in courses if os.path.isfile(os.path.join(d, ".colab-done"))]
            archives = sorted(glob.glob(os.path.join(HERE, NAME + "*.zip")), key=os.path.getmtime)
            if done and importlib.util.find_spec("transformer_lens"):
                COURSE = done[0]
                print(f"Colab set-up: the course ({{open(os.path.join(COURSE, '.colab-done')).read()}}) is already installed in {{COURSE}}")
            else:
                source = SOURCE or (archives[-1] if archives and not courses else "")
                if source and not (source.endswith(".zip") and os.path.isfile(source) or is_course(source)):
                    raise SetupError(f"COURSE_SOURCE is {{source}}, which is neither the course's folder nor a .zip "
                                     + ("(is Google Drive mounted?)." if not os.path.exists(source) else "of it."))
                if source:
                    print(f"Colab set-up: installing the course from {{source}}, which stays as it is", flush=True)
                    COURSE = made = staged(unpack(source) if source.endswith(".zip") else copy(source))
                    what = os.path.basename(source)
                elif courses:
                    COURSE, what, made = courses[0], "a folder already there", None
                    print(f"Colab set-up: installing the course folder {{COURSE}} where it is; nothing in it is removed")
                else:
                    print(f"Colab set-up: fetching {{REF}} of {{REPO}}", flush=True)
                    COURSE = made = staged(fetch)
                    what = REF
                proc = subprocess.run([sys.executable, "-P", os.path.join(COURSE, "utils", "colab.py"), COURSE],
                                      capture_output=True, text=True)
                print(proc.stdout + proc.stderr[-3000:], end="", flush=True)
                if proc.returncode:
                    if made:
                        shutil.rmtree(made)  # made by this run, so a retry starts clean; nothing of yours
                    raise SetupError("a network problem stopped the install (above): run this cell again to retry."
                                     if proc.returncode == 75 else "the course could not be installed (above).")
                DONE = os.path.join(COURSE, ".colab-done")
                with open(DONE, "w") as f:
                    f.write(what)
            if COURSE not in sys.path:
                sys.path.insert(0, COURSE)
            from google.colab import output
            output.enable_custom_widget_manager()
            print("Colab set-up: done; widgets use Colab's custom widget manager.")''')
