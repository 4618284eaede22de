"""Reference solutions: the only copy of each exercise's answer.

One module per notebook, one function per exercise, named as in the notebook's stub.
"""
