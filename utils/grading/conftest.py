"""Run graders directly with pytest: `pytest utils/grading` grades every reference.

Grader modules are named after their notebook, not test_*.py, so they are
collected here explicitly.
"""

from pathlib import Path

import pytest

from utils.grading.checker import Checker

HERE = Path(__file__).parent


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".py" and file_path.parent.parent == HERE and file_path.parent.name.startswith("ch") \
            and file_path.name != "__init__.py":
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def check(request):
    exercise = request.function.exercise
    return Checker(exercise, exercise.reference)
