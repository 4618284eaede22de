"""What a learner sees when a cell needs an exercise they have not done yet.

Two errors come from skipping around a notebook: a check (or any cell) that
names an exercise's function before its cell has run (`NameError`), and a cell
that calls a function that is still the stub (`NotImplementedError`). Both
would otherwise show a raw traceback. `setup()` installs a handler that names
the exercise and offers `use_reference`, a deliberate way to continue with the
reference implementation; an exercise answered that way stays "not attempted".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from . import registry

REFERENCE_MARK = "__course_reference__"
_COURSE_FILES = str(Path(__file__).resolve().parents[2])


def use_reference(name: str) -> Callable:
    """The reference implementation of exercise `name` (function name or id), marked as not yours.

    `check` and `python -m utils.grade` report it as "not attempted", never as passed."""
    ex = registry.get(name) if "." in name else registry.for_function(name)

    @functools.wraps(ex.reference)
    def reference(*args, **kwargs):
        return ex.reference(*args, **kwargs)

    setattr(reference, REFERENCE_MARK, ex.id)
    print(f"⚠ Using the reference implementation of {ex.id}. The exercise stays 'not attempted' until you "
          f"write your own {ex.name} and run its check.")
    return reference


def reference_used(fn: Callable) -> str | None:
    """The exercise id if `fn` came from `use_reference`."""
    return getattr(fn, REFERENCE_MARK, None)


def _exercise_named(name: str) -> registry.Exercise | None:
    """The exercise whose function is `name`; a quick look at the grader sources first, so that an
    ordinary typo does not wait for every grader to load."""
    if not registry.grader_modules_for(name):
        return None
    try:
        return registry.for_function(name)
    except (KeyError, LookupError, ValueError):
        return None


def _advice(ex: registry.Exercise) -> str:
    return (f"Either solve it (its cell is under the heading 'Exercise: `{ex.name}`') and run its check, or "
            f"continue with the reference for now:\n"
            f"    from utils.grading import use_reference\n"
            f"    {ex.name} = use_reference({ex.name!r})\n"
            f"(the exercise then counts as not attempted).")


def explain(error: BaseException) -> str | None:
    """A learner-facing explanation when `error` comes from a skipped exercise, else None."""
    if isinstance(error, NameError):
        match = re.search(r"name '(\w+)' is not defined", str(error))
        ex = _exercise_named(match.group(1)) if match else None
        if ex is None:
            return None
        return (f"`{ex.name}` is not defined yet: it is exercise {ex.id}, and the cell that defines it has not "
                f"been run. Run that cell (the stub is enough for its check to say 'not attempted'), then "
                f"this one again. " + _advice(ex))
    if isinstance(error, NotImplementedError):
        tb, stub = error.__traceback__, None
        while tb is not None:
            code = tb.tb_frame.f_code
            if not code.co_filename.startswith(_COURSE_FILES):
                stub = _exercise_named(code.co_name) or stub
            tb = tb.tb_next
        if stub is None:
            return None
        return (f"This cell needs `{stub.name}` (exercise {stub.id}), which is still the stub that raises "
                f"NotImplementedError. " + _advice(stub))
    return None


def _handler(shell, etype, evalue, tb, tb_offset=None):
    message = explain(evalue)
    if message is None:
        shell.showtraceback((etype, evalue, tb), tb_offset=tb_offset)
        return None
    shell._showtraceback(etype, evalue, [f"\x1b[31m{etype.__name__}: {evalue}\x1b[0m\n{message}"])
    return None


def install() -> bool:
    """Route NameError and NotImplementedError in notebook cells through `explain` (IPython only)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((NameError, NotImplementedError), _handler)
    return True
