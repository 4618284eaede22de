"""course.py: which PyTorch it installs and what it says about it, and the release archive."""

from __future__ import annotations

import http.server
import importlib.util
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("course_script", ROOT / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)


class Pip:
    """Stands in for course.run: records each pip install's arguments (nothing really runs); a
    command naming one of `failing` fails as pip does when that index cannot be used."""

    def __init__(self):
        self.runs, self.failing = [], set()

    def __call__(self, *cmd, **kwargs):
        cmd = [str(c) for c in cmd]
        self.runs.append(cmd[cmd.index("install") + 1:])
        if any(host in " ".join(cmd) for host in self.failing):
            raise subprocess.CalledProcessError(1, cmd)


@pytest.fixture
def pip(monkeypatch) -> Pip:
    fake = Pip()
    monkeypatch.setattr(course, "run", fake)
    monkeypatch.setattr(course, "torch_build", lambda python: "torch (stand-in)")
    monkeypatch.setattr(course.sys, "platform", "linux")
    monkeypatch.delenv("COURSE_TORCH", raising=False)
    return fake


def machine(monkeypatch, *, gpu: bool, index_answers: bool) -> None:
    monkeypatch.setattr(course, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(course, "reachable", lambda url, timeout=5: index_answers)


def test_without_a_gpu_the_cpu_build_comes_from_pytorchs_cpu_index(pip, monkeypatch, capsys):
    machine(monkeypatch, gpu=False, index_answers=True)
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", "--timeout", "30", "--index-url", course.CPU_INDEX, course.TORCH]]
    out = capsys.readouterr().out
    assert "no NVIDIA GPU here, so the CPU build of torch==2.13.0 from PyTorch's CPU index (about 200 MB" in out
    assert "PyTorch: installed torch (stand-in)" in out


def test_without_the_cpu_index_it_falls_back_to_the_default_index_and_says_what_that_means(pip, monkeypatch,
                                                                                            capsys):
    machine(monkeypatch, gpu=False, index_answers=False)
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", course.TORCH]]
    out = capsys.readouterr().out
    assert "CPU index cannot be reached" in out and "the CUDA build (about 3 GB to download" in out


def test_a_failing_cpu_index_falls_back_too(pip, monkeypatch, capsys):
    machine(monkeypatch, gpu=False, index_answers=True)
    pip.failing.add("download.pytorch.org")
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", "--timeout", "30", "--index-url", course.CPU_INDEX, course.TORCH],
                        ["--quiet", course.TORCH]]
    assert "the CPU index failed (above); trying pip's default index" in capsys.readouterr().out


def test_with_a_gpu_the_default_index_gives_the_cuda_build(pip, monkeypatch, capsys):
    machine(monkeypatch, gpu=True, index_answers=True)
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", course.TORCH]]
    assert "an NVIDIA GPU is here, so torch==2.13.0 from pip's default index, the CUDA build" in capsys.readouterr().out


def test_elsewhere_than_linux_the_default_index_has_no_cuda(pip, monkeypatch, capsys):
    machine(monkeypatch, gpu=False, index_answers=True)
    monkeypatch.setattr(course.sys, "platform", "darwin")
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", course.TORCH]] and "a build without CUDA" in capsys.readouterr().out


def test_course_torch_overrides_the_choice(pip, monkeypatch, capsys):
    machine(monkeypatch, gpu=False, index_answers=True)
    monkeypatch.setenv("COURSE_TORCH", "torch==2.12.0")
    course.install_torch(Path("python"))
    assert pip.runs == [["--quiet", "torch==2.12.0"]]
    assert "installing torch==2.12.0, as COURSE_TORCH says" in capsys.readouterr().out


def test_the_cpu_index_probe_is_quick_when_nothing_answers():
    started = time.monotonic()
    assert not course.reachable("http://127.0.0.1:9/torch/", timeout=2)  # the discard port: refused
    assert time.monotonic() - started < 3


def test_the_cpu_index_probe_sees_an_index_that_answers():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        assert course.reachable(f"http://127.0.0.1:{server.server_address[1]}/torch/")
    finally:
        server.shutdown()
        server.server_close()


def test_the_release_archive_holds_the_course_under_one_folder(tmp_path):
    proc = subprocess.run([sys.executable, ROOT / "course.py", "archive", tmp_path], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    release = f"{project['name']}-{project['version']}"
    archive = tmp_path / f"{release}.zip"
    assert f"Wrote {archive}" in proc.stdout and "upload it to /content" in proc.stdout
    names = zipfile.ZipFile(archive).namelist()
    assert all(n.startswith(f"{release}/") for n in names)
    for needed in ["pyproject.toml", "course.py", "utils/colab.py", "chapters/ch1_transformer_math/build_a_transformer.ipynb"]:
        assert f"{release}/{needed}" in names, needed
    shipped = {p.name for p in (ROOT / "utils" / "models" / "checkpoints").glob("*.safetensors")}
    assert shipped and shipped <= {Path(n).name for n in names}
    assert not [n for n in names if "/.venv" in n or "__pycache__" in n or "/.git/" in n]
    assert not list(tmp_path.glob(".*.part"))


def test_the_gpu_tier_fails_without_a_gpu_and_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the tier would run")
    assert course.gpu_tier(Path(sys.executable), []) == 1
    said = capsys.readouterr().err
    assert "needs a CUDA GPU" in said and "Nothing was tested" in said
