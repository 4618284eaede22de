"""JupyterHub for a class: every learner gets a JupyterLab in the course's environment, with nbgrader's
Assignments tab wired to a shared exchange; the instructors' servers open on the course directory with
nbgrader's formgrader.

    jupyterhub -f utils/cohort/jupyterhub/jupyterhub_config.py

Every setting below is read from an environment variable (COURSE_HUB_*), so the same file runs a class
on a server and the end-to-end test (tests/cohort/test_jupyterhub.py) in a temporary folder on free
ports. See README.md beside this file, and z2jh-values.yaml for the same class on Kubernetes.
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent            # the course's environment: the hub runs in it, so do the learners
STATE = Path(os.environ.get("COURSE_HUB_STATE", "."))
COURSE_ID = os.environ.get("COURSE_HUB_COURSE_ID", "mechinterp")
EXCHANGE = os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange")   # shared by everyone, writable
COURSE_DIR = os.environ.get("COURSE_HUB_COURSE_DIR", "/srv/nbgrader/course")  # source/, release/, gradebook.db
INSTRUCTORS = {u for u in os.environ.get("COURSE_HUB_INSTRUCTORS", "instructor").split(",") if u}
LEARNERS = {u for u in os.environ.get("COURSE_HUB_LEARNERS", "").split(",") if u}

# -- the network: the public proxy, the hub's own API, the proxy's API ----------------------------------
c.JupyterHub.bind_url = os.environ.get("COURSE_HUB_URL", "http://:8000")
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ.get('COURSE_HUB_INTERNAL_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('COURSE_HUB_PROXY_API_PORT', '8001')}"
# configurable-http-proxy comes from npm (`npm install -g configurable-http-proxy`, or a local prefix)
c.ConfigurableHTTPProxy.command = [os.environ.get("COURSE_HUB_PROXY", "configurable-http-proxy")]
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")

# -- who may log in ----------------------------------------------------------------------------------
# DummyAuthenticator accepts any password: it is for the test and a laptop only. A real class uses its
# institution's login, e.g. c.JupyterHub.authenticator_class = "oauthenticator.GenericOAuthenticator"
# (or "github", "google", "azuread"...), or LTI 1.3 from the LMS (ltiauthenticator), with the same
# allowed_users/admin_users (or the LMS's roles) as here.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.admin_users = INSTRUCTORS
c.Authenticator.allowed_users = LEARNERS | INSTRUCTORS
c.Authenticator.allow_all = not LEARNERS

# -- where each learner's server runs ------------------------------------------------------------------
# SimpleLocalProcessSpawner: one process per learner, all as the hub's own OS user, each home a folder
# under COURSE_HUB_HOMES. Test and demo only (learners can read each other's files). For a class:
#   - LocalProcessSpawner ("localprocess"): one system user per learner (their own home and permissions);
#   - DockerSpawner ("docker"): one container per learner from the course image (Dockerfile beside this
#     file), the exchange a volume mounted at EXCHANGE in every container;
#   - KubeSpawner: one pod per learner, which is what Zero to JupyterHub sets up (z2jh-values.yaml).
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.environ.get("COURSE_HUB_HOMES", "/srv/course/home") + "/{username}"
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120   # a busy small machine starting a whole class at once
c.Spawner.environment = {
    "JUPYTER_CONFIG_PATH": str(HERE),   # nbgrader_config.py: the course id and the exchange
    "COURSE_HUB_COURSE_ID": COURSE_ID,
    "COURSE_HUB_EXCHANGE": EXCHANGE,
}
# learners fetch, submit and read feedback (the Assignments tab); grading is the instructors'
LEARNER_EXTENSIONS = {"nbgrader.server_extensions.assignment_list": True,
                      "nbgrader.server_extensions.formgrader": False,
                      "nbgrader.server_extensions.course_list": False}
INSTRUCTOR_EXTENSIONS = {"nbgrader.server_extensions.assignment_list": False,
                         "nbgrader.server_extensions.formgrader": True,
                         "nbgrader.server_extensions.course_list": True}


def per_role(spawner):
    """An instructor's server opens on the course directory, with the formgrader; a learner's opens on
    their home, and names them to nbgrader (every server here runs as one OS user, whose name nbgrader
    would otherwise put on every submission)."""
    instructor = spawner.user.name in INSTRUCTORS
    extensions = INSTRUCTOR_EXTENSIONS if instructor else LEARNER_EXTENSIONS
    spawner.args = [f"--ServerApp.jpserver_extensions={name}={on}" for name, on in extensions.items()]
    if os.geteuid() == 0:   # SimpleLocalProcessSpawner runs servers as the hub's user: root in a container or CI
        spawner.args.append("--allow-root")
    if instructor:
        spawner.notebook_dir = COURSE_DIR
        spawner.environment = {**spawner.environment, "COURSE_HUB_COURSE_DIR": COURSE_DIR}
    else:
        spawner.environment = {**spawner.environment, "COURSE_HUB_STUDENT": spawner.user.name}


c.Spawner.pre_spawn_hook = per_role
