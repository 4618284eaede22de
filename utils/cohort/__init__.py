"""Teaching a cohort: grade a whole class's notebooks in parallel, safely (README "Teaching a cohort").

    python3 course.py grade-class ch2 path/to/course/submitted      # nbgrader's layout
    python3 course.py grade-class ch2 path/to/folder --workers 8     # a plain folder of notebooks

- `submissions.py` finds each learner's notebooks and reads them as data first;
- `cluster.py` spreads them over Dask workers and writes each record as it arrives;
- `sandbox.py` grades one notebook in a forked child locked in by `landlock.py`;
- `records.py` turns the records into nbgrader's gradebook, a CSV and feedback pages;
- `simulate.py` makes a class of submissions, good and bad, for the tests and `bench.py`.
"""

from utils.cohort.cluster import Report, grade_class  # noqa: F401
from utils.cohort.sandbox import Limits  # noqa: F401
