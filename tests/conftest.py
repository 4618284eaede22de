"""Project-wide test set-up: CPU only, offline, and the grader-validation summary."""

import os

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
