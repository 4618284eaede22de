"""Hints revealed one at a time: a button under a failed check (ipywidgets)."""

from __future__ import annotations

import html

from .registry import Exercise


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def hint_widget(exercise: Exercise):
    """A button that reveals the exercise's hints in order, one per click."""
    import ipywidgets as widgets

    shown = widgets.HTML()
    button = widgets.Button(description=f"Show hint 1 of {len(exercise.hints)}", icon="lightbulb-o",
                            layout=widgets.Layout(width="auto"))
    revealed: list[str] = []

    def reveal(_=None) -> None:
        if len(revealed) < len(exercise.hints):
            revealed.append(exercise.hints[len(revealed)])
        items = "".join(f"<li>{html.escape(h)}</li>" for h in revealed)
        shown.value = f"<ol style='margin:0.2em 0'>{items}</ol>"
        if len(revealed) == len(exercise.hints):
            button.description, button.disabled = "No more hints", True
        else:
            button.description = f"Show hint {len(revealed) + 1} of {len(exercise.hints)}"

    button.on_click(reveal)
    return widgets.VBox([button, shown])


def show_hints(exercise: Exercise) -> None:
    """Offer the exercise's hints: a widget in Jupyter, a pointer elsewhere."""
    if not exercise.hints:
        return
    if in_notebook():
        from IPython.display import display
        try:
            display(hint_widget(exercise))
            return
        except ImportError:
            pass
    print(f"Stuck? hint({exercise.id!r}) prints the next of {len(exercise.hints)} hints.")


_next_hint: dict[str, int] = {}


def hint(exercise: Exercise) -> str:
    """The next unseen hint (outside Jupyter, or for learners who prefer text)."""
    i = _next_hint.get(exercise.id, 0)
    if i >= len(exercise.hints):
        return f"No more hints for {exercise.id}."
    _next_hint[exercise.id] = i + 1
    return f"Hint {i + 1} of {len(exercise.hints)}: {exercise.hints[i]}"
