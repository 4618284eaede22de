"""nbgrader's settings for every server on the hub (jupyterhub_config.py puts this folder on
JUPYTER_CONFIG_PATH): which course, where the exchange is, and, on a learner's server, who is
submitting, or, on an instructor's, where the course directory is (the formgrader reads its config from
the server's working directory, the instructor's home). The course directory's own nbgrader_config.py,
used by the instructor's nbgrader commands, must name the same course id and exchange."""

import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("COURSE_HUB_COURSE_ID", "mechinterp")
c.Exchange.root = os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("COURSE_HUB_STUDENT"):
    # nbgrader takes the student's name from the OS user, which differs per learner only with
    # LocalProcessSpawner's system users; in a container (user jovyan) it reads JUPYTERHUB_USER
    c.CourseDirectory.student_id = os.environ["COURSE_HUB_STUDENT"]
if os.environ.get("COURSE_HUB_COURSE_DIR"):
    c.CourseDirectory.root = os.environ["COURSE_HUB_COURSE_DIR"]
