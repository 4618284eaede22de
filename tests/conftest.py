"""Project-wide test set-up: CPU only, offline, and the grader-validation summary."""

import os

os.environ.setdefault("COURSE_DEVICE", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_terminal_summary(terminalreporter):
    from tests.grading.test_graders import SUMMARY

    if SUMMARY["exercises"] or SUMMARY["wrong"]:
        terminalreporter.write_line(
            f"Grader validation: {SUMMARY['exercises']} exercises; {SUMMARY['wrong']} mistake variants, "
            f"{SUMMARY['caught']} caught with their targeted hint; {SUMMARY['right']} correct alternatives, "
            f"{SUMMARY['accepted']} accepted")
