"""Stand-in for `google.colab.output`: records that the custom widget manager was asked for."""

import os

enabled = False


def enable_custom_widget_manager() -> None:
    """Colab switches its front end to the widget manager that renders ipywidgets 8 and
    third-party widgets. Here it sets a flag and, if COLAB_STANDIN_LOG names a file, appends to it."""
    global enabled
    enabled = True
    log = os.environ.get("COLAB_STANDIN_LOG")
    if log:
        with open(log, "a") as f:
            f.write("enable_custom_widget_manager\n")
