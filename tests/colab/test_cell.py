"""The Colab set-up cell's decisions, quickly: where it takes the course from, what it says when it
cannot, and that it never deletes or overwrites a learner's file.

The cell's own text (as every notebook holds it) runs here with a stand-in `google.colab` module,
a temporary folder as /content (the cell works in the folder it runs in, as Colab's /content),
real git against a local repository or a local HTTP server, and a small stand-in course whose
utils/colab.py only records that it ran (tests/colab/test_colab.py runs the real install).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from utils.notebooks.colab_cell import colab_cell_source, course_release, course_settings

URL, REF = course_settings()
NAME, VERSION = course_release()

# The stand-in course's installer: it records the folder it was asked to install and exits with
# STUB_EXIT (0, 1 for a failure that recurs, 75 for a network problem).
STUB = """\
import os, sys
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(sys.argv[1] + "\\n")
print("stand-in install of", sys.argv[1])
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_course(folder: Path) -> Path:
    (folder / "utils").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{NAME}"\nversion = "{VERSION}"\n')
    (folder / "utils" / "colab.py").write_text(STUB)
    return folder


def make_archive(course: Path, path: Path) -> Path:
    """A zip laid out as `course.py archive` lays it out: everything under <name>-<version>/."""
    with zipfile.ZipFile(path, "w") as zf:
        for file in sorted(course.rglob("*")):
            if file.is_file():
                zf.write(file, f"{NAME}-{VERSION}/{file.relative_to(course)}")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The stand-in course as a git repository with the release tag the cell asks for."""
    repo = make_course(tmp_path_factory.mktemp("origin") / NAME)
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "release", cwd=repo)
    git("tag", REF, cwd=repo)
    return repo


class Colab:
    """/content with a learner's files in it, and the cell run there as Colab runs it."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.content, self.log = tmp_path / "content", tmp_path / "installs.log"
        self.content.mkdir()
        self.monkeypatch = monkeypatch
        (self.content / "my-notes.txt").write_text("the learner's own")
        (self.content / "sample_data").mkdir()
        (self.content / "sample_data" / "README.md").write_text("Colab's own sample data")
        self.learner = snapshot(self.content)
        monkeypatch.setenv("STUB_LOG", str(self.log))
        monkeypatch.delenv("COURSE_SOURCE", raising=False)
        self.widgets = []
        output = types.ModuleType("google.colab.output")
        output.enable_custom_widget_manager = lambda: self.widgets.append(True)
        colab = types.ModuleType("google.colab")
        colab.output = output
        monkeypatch.setitem(sys.modules, "google.colab", colab)
        monkeypatch.setitem(sys.modules, "google.colab.output", output)
        monkeypatch.setattr(sys, "path", list(sys.path))  # the cell puts the course on it
        monkeypatch.chdir(self.content)

    def serve_from(self, where: str) -> None:
        """git fetches the published URL from `where` instead (a local repository or server)."""
        self.monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
        self.monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{where}.insteadOf")
        self.monkeypatch.setenv("GIT_CONFIG_VALUE_0", URL)

    def run(self, capsys, **settings) -> tuple[str, Exception | None]:
        for key, value in settings.items():
            self.monkeypatch.setenv(key, str(value))
        error = None
        try:
            exec(compile(colab_cell_source(), "colab-cell", "exec"), {"__name__": "__main__"})
        except Exception as e:  # noqa: BLE001 - the cell's SetupError is defined inside the cell
            error = e
        return capsys.readouterr().out, error

    def installs(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def learner_files_intact(self) -> bool:
        now = snapshot(self.content)
        return all(now.get(rel) == data for rel, data in self.learner.items())

    def no_staging_left(self) -> bool:
        return not [p for p in self.content.iterdir() if p.name.startswith(f".{NAME}-")]


@pytest.fixture
def colab(tmp_path, monkeypatch) -> Colab:
    return Colab(tmp_path, monkeypatch)


class Server(http.server.ThreadingHTTPServer):
    """Answers every request with one status: 401 is how GitHub answers for a repository that does
    not exist or is private, 503 a passing outage."""

    def __init__(self, status: int):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/owner/{NAME}"


@pytest.fixture
def server(request):
    srv = Server(request.param)
    yield srv
    srv.shutdown()
    srv.server_close()


# -- the published release ----------------------------------------------------------------

def test_outside_colab_the_cell_does_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    exec(compile(colab_cell_source(), "colab-cell", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "" and not list(tmp_path.iterdir())


def test_the_release_is_fetched_installed_and_marked_done_once(colab, origin, capsys):
    colab.serve_from(origin.as_uri())
    out, error = colab.run(capsys)
    course = colab.content / NAME
    assert error is None, out
    assert f"Colab set-up: fetching {REF} of {URL}" in out and "Colab set-up: done" in out
    assert colab.installs() == [str(course)] and (course / ".colab-done").read_text() == REF
    assert colab.widgets == [True] and sys.path[0] == str(course)
    assert colab.learner_files_intact() and colab.no_staging_left()
    out, error = colab.run(capsys)
    assert error is None and f"the course ({REF}) is already installed in {course}" in out
    assert colab.installs() == [str(course)]  # not installed again


def test_a_folder_of_the_learners_with_the_courses_name_is_left_alone(colab, origin, capsys):
    mine = colab.content / NAME
    mine.mkdir()
    (mine / "essay.md").write_text("mine")
    colab.learner = snapshot(colab.content)
    colab.serve_from(origin.as_uri())
    out, error = colab.run(capsys)
    assert error is None, out
    assert f"{mine} is left as it is; the course goes into {mine}-2" in out
    assert colab.installs() == [f"{mine}-2"] and sorted(p.name for p in mine.iterdir()) == ["essay.md"]
    assert colab.learner_files_intact()
    out, error = colab.run(capsys)  # and the next run finds the course where it went
    assert error is None and "already installed" in out and len(colab.installs()) == 1


@pytest.mark.parametrize("server", [401], indirect=True)
def test_an_unpublished_repository_gets_one_sentence_and_what_to_do(colab, server, capsys):
    colab.serve_from(server.url)
    out, error = colab.run(capsys)
    message = str(error)
    assert type(error).__name__ == "SetupError", (out, error)
    assert message.startswith(f"the course's release is not reachable at {URL}@{REF}")
    assert "\n" not in message and message.count(". ") == 0 and message.endswith("then run this cell again.")
    assert "retry" not in message and "retry" not in out and "Username" not in out + message
    assert f"{NAME}-{VERSION}.zip" in message and "course.py archive" in message and "COURSE_SOURCE" in message
    assert "drive.mount('/content/drive')" in message
    assert error._render_traceback_() == [f"Colab set-up stopped: {message}"]  # what IPython shows: one line
    assert colab.installs() == [] and colab.learner_files_intact() and colab.no_staging_left()
    assert sorted(p.name for p in colab.content.iterdir()) == ["my-notes.txt", "sample_data"]


def test_a_missing_tag_gets_the_same_sentence(colab, origin, tmp_path, capsys):
    untagged = tmp_path / "untagged"
    git("clone", "-q", "--no-tags", origin.as_uri(), str(untagged), cwd=tmp_path)  # the release, not tagged
    colab.serve_from(untagged.as_uri())
    out, error = colab.run(capsys)
    assert str(error).startswith(f"the course's release is not reachable at {URL}@{REF}"), (out, error)
    assert "retry" not in str(error) and colab.no_staging_left() and colab.learner_files_intact()


@pytest.mark.parametrize("server", [503], indirect=True)
def test_a_network_failure_offers_a_retry(colab, server, capsys):
    colab.serve_from(server.url)
    out, error = colab.run(capsys)
    assert "network problem" in str(error) and "run this cell again to retry" in str(error), (out, error)
    assert "503" in str(error) and colab.no_staging_left() and colab.learner_files_intact()


# -- an uploaded archive, a folder already there, Google Drive -------------------------------

def test_an_uploaded_archive_is_unpacked_into_a_new_folder_and_installed(colab, tmp_path, capsys):
    archive = make_archive(make_course(tmp_path / "release"), colab.content / f"{NAME}-{VERSION}.zip")
    colab.learner = snapshot(colab.content)  # the upload is the learner's too
    out, error = colab.run(capsys)
    course = colab.content / NAME
    assert error is None, out
    assert f"installing the course from {archive}, which stays as it is" in out and "fetching" not in out
    assert colab.installs() == [str(course)] and (course / "pyproject.toml").exists()
    assert (course / ".colab-done").read_text() == archive.name
    assert colab.learner_files_intact() and colab.no_staging_left()


def test_a_course_folder_already_in_content_is_installed_where_it_is(colab, tmp_path, capsys):
    course = make_course(colab.content / NAME)
    (course / "my-solutions.py").write_text("def f(): ...")
    colab.learner = snapshot(colab.content)
    out, error = colab.run(capsys)
    assert error is None, out
    assert f"installing the course folder {course} where it is; nothing in it is removed" in out
    assert colab.installs() == [str(course)] and colab.learner_files_intact()


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_drive_folder_or_zip_is_copied_and_never_changed(colab, tmp_path, capsys, as_zip):
    drive = colab.content / "drive" / "MyDrive"
    source = make_course(drive / NAME)
    (source / ".colab-done").write_text("from another runtime")  # not copied: this runtime has nothing yet
    (source / "notes.ipynb").write_text("{}")
    if as_zip:
        source = make_archive(source, drive / f"{NAME}-{VERSION}.zip")
    colab.learner = snapshot(colab.content)
    before = {p: p.stat().st_mtime_ns for p in drive.rglob("*")}
    out, error = colab.run(capsys, COURSE_SOURCE=source)
    course = colab.content / NAME
    assert error is None, out
    assert f"installing the course from {source}, which stays as it is" in out
    assert colab.installs() == [str(course)] and (course / ".colab-done").read_text() == source.name
    assert {p: p.stat().st_mtime_ns for p in drive.rglob("*")} == before and colab.learner_files_intact()


def test_course_source_is_taken_before_a_folder_already_there(colab, tmp_path, capsys):
    make_course(colab.content / NAME)
    colab.learner = snapshot(colab.content)
    source = make_course(tmp_path / "drive" / NAME)
    out, error = colab.run(capsys, COURSE_SOURCE=source)
    assert error is None and colab.installs() == [str(colab.content / f"{NAME}-2")], out
    assert colab.learner_files_intact()


def test_a_course_source_that_is_not_there_says_so(colab, capsys):
    out, error = colab.run(capsys, COURSE_SOURCE="/content/drive/MyDrive/nowhere")
    assert str(error) == ("COURSE_SOURCE is /content/drive/MyDrive/nowhere, which is neither the course's folder "
                          "nor a .zip (is Google Drive mounted?)."), (out, error)
    assert colab.installs() == [] and colab.learner_files_intact()


def test_a_course_source_that_is_not_the_course_says_so(colab, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    out, error = colab.run(capsys, COURSE_SOURCE=tmp_path / "other")
    assert "neither the course's folder nor a .zip of it" in str(error), (out, error)


def test_an_archive_without_the_course_says_so(colab, tmp_path, capsys):
    with zipfile.ZipFile(colab.content / f"{NAME}-photos.zip", "w") as zf:
        zf.writestr("photo.jpg", "...")
    colab.learner = snapshot(colab.content)
    out, error = colab.run(capsys)
    assert "does not hold the course" in str(error), (out, error)
    assert colab.learner_files_intact() and colab.no_staging_left() and not (colab.content / NAME).exists()


# -- a failed install ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, said", [(1, "the course could not be installed (above)."),
                                          (75, "a network problem stopped the install (above): run this "
                                               "cell again to retry.")])
def test_a_failed_install_removes_only_the_folder_this_run_made(colab, tmp_path, capsys, status, said):
    make_archive(make_course(tmp_path / "release"), colab.content / f"{NAME}-{VERSION}.zip")
    colab.learner = snapshot(colab.content)
    out, error = colab.run(capsys, STUB_EXIT=status)
    assert str(error) == said, (out, error)
    assert not (colab.content / NAME).exists() and colab.learner_files_intact() and colab.no_staging_left()
    assert colab.widgets == []
    out, error = colab.run(capsys, STUB_EXIT=0)  # the retry starts clean and works
    assert error is None and (colab.content / NAME / ".colab-done").exists(), out


def test_a_failed_install_in_a_learners_folder_removes_nothing(colab, capsys):
    course = make_course(colab.content / NAME)
    colab.learner = snapshot(colab.content)
    out, error = colab.run(capsys, STUB_EXIT=1)
    assert str(error) == "the course could not be installed (above).", (out, error)
    assert colab.learner_files_intact() and not (course / ".colab-done").exists()


def test_a_done_marker_from_another_runtime_is_not_trusted(colab, capsys, monkeypatch):
    """A course folder carried over with its marker, into a runtime that lacks the course's packages."""
    course = make_course(colab.content / NAME)
    (course / ".colab-done").write_text(REF)
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformer_lens" else
                        real(name, *a))
    out, error = colab.run(capsys)
    assert error is None and colab.installs() == [str(course)], out


def test_the_cell_never_asks_git_for_credentials():
    source = colab_cell_source()
    assert '"GIT_TERMINAL_PROMPT": "0"' in source and '"GIT_ASKPASS": ""' in source
    assert "rmtree(COURSE" not in source and "rmtree(HERE" not in source
