"""The notebook pipeline: learner notebooks + solutions → solved and nbgrader notebooks.

    python -m utils.notebooks sync     # normalise learner notebooks (badge, setup cell, nbgrader metadata)
    python -m utils.notebooks build    # write solved/ and nbgrader/source/ from chapters/ + solutions/
"""
