"""Hints revealed one at a time: a button under a failed check (ipywidgets)."""

from __future__ import annotations

import difflib
import html

from .registry import Exercise


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def fresh_hints(exercise: Exercise, already_shown: str = "") -> list[str]:
    """The exercise's hints, less any that says what the failure's own hint already said."""
    def same(a: str, b: str) -> bool:
        a, b = a.lower().strip(), b.lower().strip()
        return bool(a and b) and (a in b or difflib.SequenceMatcher(None, a, b).ratio() > 0.75)
    return [h for h in exercise.hints if not same(h, already_shown)]


def hint_widget(hints: list[str]):
    """A button that reveals `hints` in order, one per click."""
    import ipywidgets as widgets

    shown = widgets.HTML()
    button = widgets.Button(description=f"Show hint 1 of {len(hints)}", icon="lightbulb-o",
                            layout=widgets.Layout(width="auto"))
    revealed: list[str] = []

    def reveal(_=None) -> None:
        if len(revealed) < len(hints):
            revealed.append(hints[len(revealed)])
        items = "".join(f"<li>{html.escape(h)}</li>" for h in revealed)
        shown.value = f"<ol style='margin:0.2em 0'>{items}</ol>"
        if len(revealed) == len(hints):
            button.description, button.disabled = "No more hints", True
        else:
            button.description = f"Show hint {len(revealed) + 1} of {len(hints)}"

    button.on_click(reveal)
    return widgets.VBox([button, shown])


def show_hints(exercise: Exercise, already_shown: str = "") -> None:
    """Offer the exercise's hints under the failure message: a widget in Jupyter, a pointer elsewhere.

    The failure is raised after this call, so in a kernel the widget waits for the end of the cell
    (IPython's post_run_cell event) and appears below the error, not above it."""
    retire(exercise.id)
    hints = fresh_hints(exercise, already_shown)
    if not hints:
        return
    if in_notebook():
        try:
            widget = hint_widget(hints)
        except ImportError:
            widget = None
        if widget is not None:
            _live[exercise.id] = widget
            _display_after_this_cell(widget)
            return
    print(f"Stuck? hint({exercise.id!r}) prints the next of {len(exercise.hints)} hints.")


# The hint widget each exercise shows now. ipywidgets keeps every widget alive until it is closed (and the
# page keeps its model), so a widget that is not closed outlives its output: a learner who reruns a failing
# check twenty times would leave twenty sets of eight widget models behind. The next check of the same
# exercise closes the previous one, children, layouts and styles included.
_live: dict[str, object] = {}


def retire(exercise_id: str) -> None:
    """Close the hint widget an earlier check of this exercise showed (its output has been replaced)."""
    widget = _live.pop(exercise_id, None)
    if widget is not None:
        _close_tree(widget)


def _close_tree(widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if part is not None and hasattr(part, "close"):
            part.close()
    widget.close()


def _display_after_this_cell(widget) -> None:
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()

    def once(*_):
        shell.events.unregister("post_run_cell", once)
        display(widget)

    shell.events.register("post_run_cell", once)


_next_hint: dict[str, int] = {}


def hint(exercise: Exercise) -> str:
    """The next unseen hint (outside Jupyter, or for learners who prefer text)."""
    i = _next_hint.get(exercise.id, 0)
    if i >= len(exercise.hints):
        return f"No more hints for {exercise.id}."
    _next_hint[exercise.id] = i + 1
    return f"Hint {i + 1} of {len(exercise.hints)}: {exercise.hints[i]}"
