#!/usr/bin/env python3
"""Set up the course in ./.venv, then open it or test it.

    python3 course.py lab     # set up, then open JupyterLab on the course index
    python3 course.py test    # set up, then run the whole test suite on every core (extra args go to pytest)
    python3 course.py test --gpu   # the GPU tier: graders and notebooks on CUDA (fails without a GPU)
    python3 course.py setup   # set up only
    python3 course.py colab   # set up, then run the Colab simulation (tests/colab: slow, needs Python 3.12 and 3.13)
    python3 course.py archive # build dist/<name>-<version>.zip, the release archive a learner uploads to Colab
    python3 course.py grade-class CHAPTER SUBMISSIONS   # grade a whole class on Dask (README "Teaching a cohort")

Uses only the standard library, so it runs on a fresh Python 3.11, 3.12 or 3.13.
Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
COURSE_VENV puts the environment elsewhere (CI keeps a second one for Python 3.13 that way).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("COURSE_VENV", ROOT / ".venv"))
# The PyTorch the course is tested on. Without an NVIDIA GPU, on Linux, it comes from PyTorch's CPU
# index (PyPI's Linux build carries CUDA: some 3 GB more); COURSE_TORCH overrides the choice (e.g.
# "torch" lets pip pick). pyproject.toml only states the lower bound.
TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What to install besides the notebooks' own dependencies (pyproject.toml's extras): JupyterLab and
# nbgrader, the test suite, and Dask and JupyterHub for teaching a cohort. CI's Python 3.13 run needs only "test".
EXTRAS = os.environ.get("COURSE_EXTRAS", "lab,test,teach")


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def run(*cmd: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def has_module(python: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", probe]).returncode == 0


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


def reachable(url: str, timeout: float = 5) -> bool:
    """Whether `url` answers within `timeout` seconds (offline, a DNS failure answers at once)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def install_torch(python: Path) -> None:
    """Install PyTorch, saying first which build and roughly how large, then what pip chose."""
    pip = [python, "-m", "pip", "install", "--quiet"]
    if spec := os.environ.get("COURSE_TORCH"):
        print(f"PyTorch: installing {spec}, as COURSE_TORCH says", flush=True)
        run(*pip, spec)
    elif sys.platform == "linux" and not has_nvidia_gpu():
        if not (reachable(f"{CPU_INDEX}/torch/") and install_cpu_build(pip)):
            print(f"PyTorch: PyTorch's CPU index cannot be reached, so {TORCH} comes from pip's default index: "
                  "from PyPI that is the CUDA build (about 3 GB to download, 5-6 GB installed), unless pip is "
                  "set up with a local build", flush=True)
            run(*pip, TORCH)
    elif sys.platform == "linux":
        print(f"PyTorch: an NVIDIA GPU is here, so {TORCH} from pip's default index, the CUDA build "
              "(about 3 GB to download, 5-6 GB installed; COURSE_TORCH chooses another)", flush=True)
        run(*pip, TORCH)
    else:
        print(f"PyTorch: installing {TORCH} from pip's default index (on {sys.platform} a build without CUDA, "
              "about 100-250 MB to download)", flush=True)
        run(*pip, TORCH)
    print(f"PyTorch: installed {torch_build(python)}", flush=True)


def install_cpu_build(pip: list) -> bool:
    print(f"PyTorch: no NVIDIA GPU here, so the CPU build of {TORCH} from PyTorch's CPU index (about 200 MB "
          "to download, under 1 GB installed)", flush=True)
    try:
        run(*pip, "--timeout", "30", "--index-url", CPU_INDEX, TORCH)
        return True
    except subprocess.CalledProcessError:
        print("PyTorch: the CPU index failed (above); trying pip's default index", flush=True)
        return False


def torch_build(python: Path) -> str:
    """What pip chose, in words: the version, and whether NVIDIA's CUDA libraries came with it."""
    probe = ("import importlib.metadata as m; print(m.version('torch'), "
             "sum((d.metadata['Name'] or '').startswith('nvidia-') for d in m.distributions()))")
    version, cuda = subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.split()
    return f"torch {version}, " + (f"the CUDA build ({cuda} NVIDIA libraries)" if int(cuda) else "without CUDA")


def setup() -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"The course needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        print(f"Creating the virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = venv_python()
    stamp = VENV / ".course-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted and has_module(python, "utils.grading"):
        return python
    if not has_module(python, "torch"):
        install_torch(python)
    run(python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{EXTRAS}]")
    stamp.write_text(wanted)
    return python


def archive(out_dir: Path) -> Path:
    """The release archive: the course's files as they are in this working tree (what git tracks or
    would add: nothing it ignores), in one <name>-<version>/ folder. A learner uploads it to Colab's /content (or keeps it in Google Drive)
    and every notebook's set-up cell installs from it, with no published repository needed."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    release = f"{project['name']}-{project['version']}"
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed.returncode:
        sys.exit("course.py archive needs a git checkout of the course: it archives the tracked files.")
    files = [rel for rel in listed.stdout.split("\0") if rel and (ROOT / rel).is_file()]
    out_dir.mkdir(parents=True, exist_ok=True)
    out, part = out_dir / f"{release}.zip", out_dir / f".{release}.zip.part"
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(files):
            zf.write(ROOT / rel, f"{release}/{rel}")
    part.replace(out)
    changed = git("status", "--porcelain").stdout.splitlines()
    print(f"Wrote {out}: {len(files)} files, {out.stat().st_size / 1e6:.0f} MB"
          + (f"; `git status` lists {len(changed)} changes since the last commit, archived as they are now"
             if changed else ""))
    print("In Colab, upload it to /content with the file browser (or keep it in Google Drive and set "
          "COURSE_SOURCE in a notebook's set-up cell), then run that cell.")
    return out


def parallel(extra: list[str]) -> list[str]:
    """pytest-xdist options: one worker per core, a chapter's notebook tests kept together
    (they share one run), in the order pytest collects them (the slowest chapters first)."""
    if (os.cpu_count() or 1) < 2 or any(a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in extra):
        return []
    return ["-n", str(os.cpu_count()), "--dist", "loadgroup", "--no-loadscope-reorder"]


def lab_env() -> dict[str, str]:
    """The environment JupyterLab starts in: utils/jupyter_config/ first on JUPYTER_CONFIG_PATH,
    which turns nbgrader's JupyterLab and server extensions off for learners (its README says why)."""
    path = [str(ROOT / "utils" / "jupyter_config"), *filter(None, [os.environ.get("JUPYTER_CONFIG_PATH")])]
    return {**os.environ, "JUPYTER_CONFIG_PATH": os.pathsep.join(path)}


GPU_TIER = ["tests/grading", "tests/notebooks", "tests/test_second_device.py"]


def gpu_tier(python: Path, extra: list[str]) -> int:
    """The grader validation, the reference-on-device tests and every notebook's results tests, with
    COURSE_DEVICE=cuda: what a learner on Colab's GPU runtime runs. Without a GPU it fails, never passes."""
    probe = ("import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() "
             "and torch.cuda.get_device_name(0))")
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    version, cuda, gpu = (found.stdout.split(maxsplit=2) + ["?", "?", "False"])[:3]
    if found.returncode or gpu.strip() == "False":
        print(f"The GPU tier needs a CUDA GPU, and this environment has none usable (torch {version}, CUDA "
              f"{cuda}). Nothing was tested. On a machine with an NVIDIA GPU, install a CUDA build of PyTorch "
              f"(COURSE_TORCH=torch python3 course.py setup) and run this again.", file=sys.stderr)
        return 1
    print(f"GPU tier on {gpu.strip()} (torch {version}, CUDA {cuda})", flush=True)
    env = {**os.environ, "COURSE_DEVICE": "cuda"}
    return subprocess.call([str(python), "-m", "pytest", *GPU_TIER, *parallel(extra), *extra], cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    command, extra = (argv[0], argv[1:]) if argv else ("lab", [])
    if command not in {"lab", "test", "setup", "colab", "archive", "grade-class"}:
        print(__doc__)
        return 2
    if command == "archive":  # needs no environment: the standard library and git
        archive(Path(extra[0]).resolve() if extra else ROOT / "dist")
        return 0
    python = setup()
    if command == "lab":
        return subprocess.call([str(python), "-m", "jupyter", "lab", "chapters/index.ipynb", *extra],
                               cwd=ROOT, env=lab_env())
    if command == "test" and "--gpu" in extra:
        return gpu_tier(python, [a for a in extra if a != "--gpu"])
    if command == "test":
        return subprocess.call([str(python), "-m", "pytest", *parallel(extra), *extra], cwd=ROOT)
    if command == "grade-class":
        return subprocess.call([str(python), "-m", "utils.cohort", *extra])
    if command == "colab":
        env = {**os.environ, "COURSE_COLAB": "1"}
        return subprocess.call([str(python), "-m", "pytest", "tests/colab", "-p", "no:xdist", "-s", *extra],
                               cwd=ROOT, env=env)
    print(f"Ready: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
