"""What a learner sees when a check fails.

`CheckFailed` is an `AssertionError`, so nbgrader, pytest and plain execution
all count it as a failure; in Jupyter it renders as a few lines (no traceback
through the grader) via IPython's `_render_traceback_` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

# The statuses a graded exercise can end in (the grade table uses these words).
PASSED, FAILED, NOT_ATTEMPTED, ERROR, TIMEOUT = "passed", "failed", "not attempted", "error", "timeout"


class CheckFailed(AssertionError):
    """One failed case of one exercise, with what differed and a hint."""

    status = FAILED

    def __init__(self, detail: str, *, exercise: str = "", case: str = "", hint: str = "",
                 mistake: str | None = None):
        self.detail, self.exercise, self.case, self.hint, self.mistake = detail, exercise, case, hint, mistake
        super().__init__(self.render())

    def render(self) -> str:
        where = f" (case: {self.case})" if self.case else ""
        head = f"✗ {self.exercise} {self.status}{where}" if self.exercise else f"✗ {self.status}{where}"
        lines = [head, *("  " + line for line in self.detail.splitlines())]
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self.render()}\x1b[0m"]


class LearnerError(CheckFailed):
    """The learner's code raised an exception."""

    status = ERROR


class LearnerTimeout(CheckFailed):
    """The learner's code ran past the exercise's time limit."""

    status = TIMEOUT


class NotAttempted(CheckFailed):
    """The function is still the stub (it raises NotImplementedError)."""

    status = NOT_ATTEMPTED


@dataclass
class Result:
    """The outcome of grading one candidate for one exercise."""

    exercise: str
    status: str
    cases: int
    seconds: float
    failure: CheckFailed | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def summary(self) -> str:
        if self.passed:
            return f"✓ {self.exercise} passed ({self.cases} case{'s' * (self.cases != 1)}, {self.seconds:.2f} s)"
        assert self.failure is not None
        return self.failure.render()

    def as_dict(self) -> dict:
        out = {"exercise": self.exercise, "status": self.status, "cases_passed": self.cases,
               "seconds": round(self.seconds, 3)}
        if self.failure is not None:
            out.update(case=self.failure.case, detail=self.failure.detail, hint=self.failure.hint,
                       mistake=self.failure.mistake)
        return out
