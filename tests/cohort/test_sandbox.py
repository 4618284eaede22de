"""What a confined child runs of a notebook, and what Landlock lets it touch."""

from __future__ import annotations

import os

import pytest

from utils.cohort import landlock
from utils.cohort.sandbox import notebook_steps


def code(source: str, **nbgrader) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"nbgrader": nbgrader} if nbgrader else {}}


def test_only_definitions_run_outside_answer_cells_and_everything_inside_them():
    cells = [code("import torch\nmodel = load_big_model()\nN = 5\ndef helper(x):\n    return x\n%matplotlib inline"),
             code("def layer_norm(x):\n    return x\nprint(layer_norm(model))", solution=True),
             code("check(layer_norm)", grade=True, grade_id="ch1-layer_norm"),
             code("train_for_an_hour()")]
    steps, broken = notebook_steps(cells, {"layer_norm"})
    sources = [s.source for s in steps]
    assert sources == ["import torch", "N = 5", "def helper(x):\n    return x",
                       "def layer_norm(x):\n    return x", "print(layer_norm(model))"]
    assert not broken


def test_an_answer_cell_that_does_not_parse_is_blamed_on_its_function():
    _, broken = notebook_steps([code("def layer_norm(x):\n    return x +", solution=True)], {"layer_norm"})
    assert "SyntaxError" in broken["layer_norm"]


@pytest.mark.skipif(landlock.abi() == 0, reason="this kernel has no Landlock")
def test_landlock_child_reads_only_what_it_is_given(tmp_path):
    secret, own = tmp_path / "secret.txt", tmp_path / "own"
    secret.write_text("answer")
    own.mkdir()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        outcome = []
        landlock.restrict(read=["/usr", "/lib", "/lib64", "/etc"], write=[str(own)])
        for attempt in (lambda: secret.read_text(), lambda: (own / "x").write_text("mine"),
                        lambda: os.kill(os.getppid(), 0)):
            try:
                attempt()
                outcome.append("ok")
            except OSError as exc:
                outcome.append(type(exc).__name__)
        os.write(write_end, ",".join(outcome).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 200).decode() == "PermissionError,ok,PermissionError"
