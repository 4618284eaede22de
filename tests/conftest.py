"""Project-wide test set-up: CPU only, offline, xdist groups, and the grader-validation summary."""

import os
import re

import pytest

os.environ.setdefault("COURSE_DEVICE", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core: each worker, and each kernel it starts, computes on one thread
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("COURSE_THREADS", "1")


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: report its share to the controller
        from tests.grading.variants import SUMMARY

        session.config.workeroutput["grader_validation"] = dict(SUMMARY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from tests.grading.variants import SUMMARY

    for key, count in getattr(node, "workeroutput", {}).get("grader_validation", {}).items():
        SUMMARY[key] += count


def pytest_terminal_summary(terminalreporter):
    from tests.grading.variants import SUMMARY

    if SUMMARY["exercises"] or SUMMARY["wrong"]:
        terminalreporter.write_line(
            f"Grader validation: {SUMMARY['exercises']} exercises; {SUMMARY['wrong']} mistake variants, "
            f"{SUMMARY['caught']} caught with their targeted hint; {SUMMARY['right']} correct alternatives, "
            f"{SUMMARY['accepted']} accepted")
        chapters = sorted({key.split()[1] for key in SUMMARY if key.startswith("wrong ")})
        terminalreporter.write_line("Targeted hint, per chapter: " + ", ".join(
            f"{c} {SUMMARY[f'caught {c}']}/{SUMMARY[f'wrong {c}']}" for c in chapters))


# Seconds per chapter run in a clean clone's CI (two workers; both submissions through nbgrader);
# only their order matters: the longest start first, so that the workers finish together.
CHAPTER_SECONDS = {"ch1_transformer_math": 220, "ch5_grokking": 165, "ch3_sparse_autoencoders": 140,
                   "ch8_attribution_graphs": 110, "ch6_linear_representations": 110, "ch2_superposition": 80,
                   "ch4_patching": 70, "ch9_model_diffing": 65, "ch7_circuit_discovery": 55}


def chapter_of(nodeid: str) -> str | None:
    """The chapter whose one notebook run this test reads (tests/notebooks/conftest.py), if any:
    tests/notebooks/<chapter>/..., or test_nbgrader.py's tests parametrized by chapter."""
    path = nodeid.split("::")[0].split("/")
    if path[:2] == ["tests", "notebooks"] and len(path) == 4 and path[2].startswith("ch"):
        return path[2]
    if path == ["tests", "notebooks", "test_nbgrader.py"] and (m := re.search(r"\[(ch\d+_\w+)\]$", nodeid)):
        return m.group(1)
    return None


def xdist_scope(nodeid: str) -> str:
    """What one xdist worker runs together: a chapter's notebook tests (they share its one run), or a
    module (so that its module-scoped fixtures are built once, not once per worker)."""
    return chapter_of(nodeid) or nodeid.split("::")[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup`, grouped by `xdist_scope` (xdist's own xdist_group marks are lost on pytest 9)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ChapterScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ChapterScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest chapters first (xdist hands out work units in this order: see course.py)."""
    def order(item):
        chapter = chapter_of(item.nodeid)
        return (0, -CHAPTER_SECONDS.get(chapter, 0)) if chapter else (1, 0)

    items.sort(key=order)
