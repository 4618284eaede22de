"""A class on a real JupyterHub: utils/cohort/jupyterhub/jupyterhub_config.py, with
configurable-http-proxy, the dummy login and one local process per learner, in a temporary folder on
free ports.

The instructor releases a chapter to nbgrader's exchange; three learners log in through the hub, and
their own servers, reached through the hub's proxy as their browser would, fetch it, save their work
and submit it with the handlers behind JupyterLab's Assignments tab; the instructor collects, grades with
`python -m utils.cohort` and releases the feedback, which each learner fetches into their own home.

configurable-http-proxy comes from npm (`npm install --prefix .cache/npm configurable-http-proxy@4`,
as .ci/run does, or anywhere on PATH). Without it the test is skipped, except where
COURSE_HUB_REQUIRED=1 (CI sets it): then it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from utils.notebooks import pipeline

CHAPTER = "ch2_superposition"   # the cheapest chapter to grade: one notebook
COURSE_ID = "mechinterp"
LEARNERS = ("alice", "bob", "carol")
SHARE_ANSWERED = {"alice": 1.0, "bob": 0.5, "carol": 0.0}
INSTRUCTOR = "instructor"
ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG = ROOT / "utils" / "cohort" / "jupyterhub" / "jupyterhub_config.py"
BIN = Path(sys.executable).parent
INSTALL = "npm install --prefix .cache/npm configurable-http-proxy@4 --no-audit --no-fund"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("jupyterhub")]


def proxy_command() -> str:
    """configurable-http-proxy: the project's npm folder first, then PATH; skip (or fail) without it."""
    local = ROOT / ".cache" / "npm" / "node_modules" / ".bin" / "configurable-http-proxy"
    found = str(local) if local.exists() else shutil.which("configurable-http-proxy")
    if not found or not shutil.which("node"):
        message = f"configurable-http-proxy (Node.js) is not installed; install it with: {INSTALL}"
        if os.environ.get("COURSE_HUB_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instructor(*args: str, course: Path) -> str:
    """An nbgrader command in the course directory, as the instructor runs it in their terminal."""
    # nbgrader runs `alembic` from PATH: put this interpreter's scripts first (venv not activated in CI)
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def jupyterhub(tmp: Path, course: Path, exchange: Path):
    """The hub (and, through it, the proxy and the learners' servers), stopped with SIGTERM, as a service
    manager stops it; whatever it leaves running is killed and reported in `hub["leftovers"]`."""
    import psutil
    import requests

    state, homes = tmp / "hub", tmp / "home"
    state.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "COURSE_HUB_URL": url, "COURSE_HUB_INTERNAL_PORT": str(free_port()),
           "COURSE_HUB_PROXY_API_PORT": str(free_port()), "COURSE_HUB_PROXY": proxy_command(),
           "COURSE_HUB_STATE": str(state), "COURSE_HUB_HOMES": str(homes),
           "COURSE_HUB_COURSE_ID": COURSE_ID, "COURSE_HUB_EXCHANGE": str(exchange),
           "COURSE_HUB_COURSE_DIR": str(course), "COURSE_HUB_INSTRUCTORS": INSTRUCTOR,
           "COURSE_HUB_LEARNERS": ",".join(LEARNERS)}
    log = open(state / "hub.log", "w")
    proc = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(HUB_CONFIG)], cwd=state, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hub = {"url": url, "homes": homes, "log": state / "hub.log", "proc": proc, "leftovers": []}

    def ready() -> None:
        """Wait until the hub answers through its proxy."""
        deadline = time.monotonic() + 120   # a busy CI machine
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/hub/api", timeout=5).ok:
                    return
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"JupyterHub did not start:\n{hub['log'].read_text()[-5000:]}"
            time.sleep(0.3)

    hub["ready"] = ready
    try:
        yield hub
    finally:
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)   # the hub stops the learners' servers and the proxy
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        gone, alive = psutil.wait_procs(children, timeout=10)
        for p in alive:
            hub["leftovers"].append(" ".join(p.cmdline()))
            p.kill()
        log.close()


class Person:
    """Someone at a browser: logs in with the hub's form, then talks to the hub with that login and to
    their own server (through the proxy) with a token the hub gives them."""

    def __init__(self, hub_url: str, name: str):
        import requests

        self.hub, self.name = hub_url, name
        self.session = requests.Session()
        self.server_url = f"{hub_url}/user/{name}"

    def login(self) -> None:
        form = self.session.get(f"{self.hub}/hub/login")
        assert form.ok, form.text
        r = self.session.post(f"{self.hub}/hub/login", allow_redirects=False,
                              data={"username": self.name, "password": "anything",
                                    "_xsrf": self.session.cookies.get("_xsrf", path="/hub/")})
        assert r.status_code == 302 and "login" not in r.headers["location"], (r.status_code, r.text[-2000:])

    def hub_api(self, method: str, path: str, **kwargs):
        """The hub's REST API with the login cookie (which the hub checks against its XSRF cookie)."""
        r = self.session.request(method, f"{self.hub}/hub/api{path}", timeout=30,
                                 headers={"X-XSRFToken": self.session.cookies.get("_xsrf", path="/hub/")},
                                 **kwargs)
        assert r.ok, (method, path, r.status_code, r.text[-2000:])
        return r.json() if r.content else None

    def start_server(self) -> None:
        """Ask the hub for my server and wait until it is up; then get a token for it."""
        self.hub_api("POST", f"/users/{self.name}/server")
        deadline = time.monotonic() + 120
        while not (self.hub_api("GET", f"/users/{self.name}")["servers"].get("", {}).get("ready")):
            assert time.monotonic() < deadline, f"{self.name}'s server did not start"
            time.sleep(0.3)
        token = self.hub_api("POST", f"/users/{self.name}/tokens", json={"note": "test"})["token"]
        self.session.headers["Authorization"] = f"token {token}"

    def server(self, method: str, path: str, **kwargs):
        r = self.session.request(method, f"{self.server_url}{path}", timeout=60, **kwargs)
        assert r.ok, (method, path, r.status_code, r.text[-2000:])
        return r.json()

    def assignment(self, action: str) -> list[dict]:
        """One of the Assignments tab's buttons (nbgrader's assignment_list handlers): the assignment's
        entries in the list the handler answers with."""
        listed = self.server("POST", f"/assignments/{action}",
                             data={"course_id": COURSE_ID, "assignment_id": CHAPTER})
        assert listed.get("success"), listed
        return [a for a in listed["value"] if a["assignment_id"] == CHAPTER]


def answered(released: dict, share: float) -> dict:
    """The released notebook with the first `share` of its stubs answered with the reference solution."""
    nb = nbformat.from_dict(released)
    solved = pipeline.solved_notebook(pipeline.CHAPTERS / CHAPTER / "toy_models.ipynb")
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solved.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for cell in stubs[:round(share * len(stubs))]:
        cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    return nb


def test_a_class_on_jupyterhub(tmp_path):
    course, exchange = tmp_path / "nbgrader", tmp_path / "exchange"
    with jupyterhub(tmp_path, course, exchange) as hub:
        # 1. the instructor releases the chapter (while the hub starts)
        pipeline.build(out=tmp_path, chapters=[CHAPTER])
        with open(course / "nbgrader_config.py", "a") as config:   # the hub's course and exchange
            config.write(f"c.CourseDirectory.course_id = {COURSE_ID!r}\nc.Exchange.root = {str(exchange)!r}\n")
        instructor("generate_assignment", CHAPTER, "--create", "--force", course=course)
        instructor("release_assignment", CHAPTER, course=course)
        notebooks = sorted(p.name for p in (course / "release" / CHAPTER).glob("*.ipynb"))
        assert notebooks == ["toy_models.ipynb"]
        hub["ready"]()

        # 2. every learner logs in, and the hub starts their servers (all at once, as at a class's start)
        people = {name: Person(hub["url"], name) for name in (*LEARNERS, INSTRUCTOR)}
        with ThreadPoolExecutor(len(people)) as pool:
            list(pool.map(lambda p: (p.login(), p.start_server()), people.values()))

        # ... fetches the chapter, works on it and submits it, through the proxy
        for name in LEARNERS:
            learner = people[name]
            [fetched] = learner.assignment("fetch")
            assert fetched["status"] == "fetched", fetched
            path = f"{CHAPTER}/toy_models.ipynb"
            assert [nb["path"] for nb in fetched["notebooks"]] == [path]
            assert (hub["homes"] / name / path).exists()
            released = learner.server("GET", f"/api/contents/{path}?content=1")["content"]
            learner.server("PUT", f"/api/contents/{path}", json={
                "type": "notebook", "format": "json", "content": answered(released, SHARE_ANSWERED[name])})
            assert any(a["status"] == "submitted" for a in learner.assignment("submit"))
        # nbgrader's server extensions per role: learners have no formgrader
        assert people["alice"].session.get(f"{people['alice'].server_url}/formgrader/api/status").status_code == 404

        # 3. the instructor collects and grades the class
        out = instructor("collect", CHAPTER, course=course)
        assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(LEARNERS), out
        grade = subprocess.run([sys.executable, "-m", "utils.cohort", CHAPTER, str(course / "submitted"),
                                "--workers", "1"], cwd=ROOT, capture_output=True, text=True, timeout=540)
        assert grade.returncode == 0, grade.stdout[-3000:] + grade.stderr[-3000:]

        # 4. the instructor releases the feedback, which each learner fetches into their home
        instructor("release_feedback", CHAPTER, course=course)
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            max_score = gb.find_assignment(CHAPTER).max_score
            scores = {name: gb.find_submission(CHAPTER, name).score for name in LEARNERS}
        assert max_score > 0
        assert scores["alice"] == max_score and scores["carol"] == 0 and 0 < scores["bob"] < max_score, scores
        # the instructor's formgrader sees the class (and its scores, where the grader left nbgrader's
        # autograded/ folder, which is how the formgrader tells a graded submission)
        listed = people[INSTRUCTOR].server("GET", f"/formgrader/api/submissions/{CHAPTER}")
        graded = {s["student"]: s for s in listed}
        assert sorted(graded) == sorted(LEARNERS) and all(s["submitted"] for s in graded.values()), graded
        if (course / "autograded").is_dir():
            assert {name: s["score"] for name, s in graded.items()} == scores, graded
        for name in LEARNERS:
            [entry] = [a for a in people[name].assignment("fetch_feedback") if a["status"] == "submitted"]
            [submission] = entry["submissions"]
            assert submission["has_local_feedback"], submission
            [page] = (hub["homes"] / name / CHAPTER / "feedback").glob("*/toy_models.html")
            shown = re.search(r"score\s*([\d.]+)\s*/\s*([\d.]+)", re.sub(r"<[^>]*>", "", page.read_text()))
            assert shown and tuple(map(float, shown.groups())) == (scores[name], max_score), (name, scores[name])
    assert not hub["leftovers"], f"still running after the hub stopped: {hub['leftovers']}"
