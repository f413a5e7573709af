"""JupyterHub for a bpviz class on one machine: each student logs in and lands in their own
dashboard (Voila, their own kernel, their own runs folder); the teacher is an admin and has the live
class overview; idle servers are culled; each server gets one compute thread and a memory limit.

Started by ``bash deploy/jupyterhub/start`` (README, "A class on JupyterHub"). Everything that
differs between a trial and a real class is read from the environment:

  BPVIZ_CLASS_DIR      the class folder: accounts.json, runs/<user>/, announcement.json, the hub's state
  BPVIZ_HUB_IP/PORT    where students connect (default 127.0.0.1:8000; 0.0.0.0 for a classroom)
  BPVIZ_HUB_API_PORT   the hub's own port, BPVIZ_PROXY_API_PORT the proxy's API, BPVIZ_OVERVIEW_PORT
                       the overview service's (loopback only; defaults 8081, 8001, 10101)
  BPVIZ_IDLE_TIMEOUT   seconds before an idle server is culled (default 900)
  BPVIZ_MEM_LIMIT_MB   each process of a student's server may hold this much data (default 1500)
"""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))  # bpviz_class

CLASS_DIR = Path(os.environ.get("BPVIZ_CLASS_DIR", ROOT / "class")).resolve()
IDLE_TIMEOUT = int(os.environ.get("BPVIZ_IDLE_TIMEOUT", "900"))
MEM_LIMIT_MB = int(os.environ.get("BPVIZ_MEM_LIMIT_MB", "1500"))
OVERVIEW_PORT = int(os.environ.get("BPVIZ_OVERVIEW_PORT", "10101"))
BIN = Path(sys.executable).parent  # the venv the hub runs in; students' servers use the same

c = get_config()  # noqa: F821 (traitlets' config loader provides it)

from bpviz_class.accounts import read_accounts  # noqa: E402 (after sys.path)

accounts = read_accounts(CLASS_DIR)
teacher = accounts["teacher"]

# --- where it listens; its state lives in the class folder
c.JupyterHub.ip = os.environ.get("BPVIZ_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("BPVIZ_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("BPVIZ_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('BPVIZ_PROXY_API_PORT', '8001')}"
proxy = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
c.ConfigurableHTTPProxy.command = [
    str(proxy) if proxy.exists() else shutil.which("configurable-http-proxy") or str(proxy)
]
c.JupyterHub.db_url = f"sqlite:///{CLASS_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(CLASS_DIR / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(CLASS_DIR / "jupyterhub-proxy.pid")

# --- who may log in: the class list with generated passwords; the teacher is the admin
c.JupyterHub.authenticator_class = "bpviz_class.accounts.ClassAuthenticator"
c.ClassAuthenticator.class_dir = str(CLASS_DIR)
c.Authenticator.allowed_users = set(accounts["users"])
c.Authenticator.admin_users = {teacher}

# --- each student's server: the dashboard in Voila, as the hub's own system user (a trial class; see README)
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(CLASS_DIR / "home" / "{username}")
c.Spawner.notebook_dir = str(ROOT / "notebooks")
c.Spawner.default_url = "/voila/render/dashboard.ipynb"
# a memory limit the kernel enforces (LocalProcessSpawner's mem_limit is only advice): RLIMIT_DATA,
# per process, inherited by the kernels; a kernel past it gets MemoryError, not the machine's OOM killer
c.Spawner.cmd = ["prlimit", f"--data={MEM_LIMIT_MB * 2**20}", "--", str(BIN / "jupyterhub-singleuser")]
c.Spawner.mem_limit = f"{MEM_LIMIT_MB}M"
c.Spawner.cpu_limit = 1.0
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60


# per student: their runs folder, one compute thread, the server config, the class's announcements
# (a callable value is called with the spawner)
c.Spawner.environment = {
    "BPVIZ_RUNS_DIR": lambda spawner: str(CLASS_DIR / "runs" / spawner.user.name),
    "BPVIZ_CLASS_FILE": str(CLASS_DIR / "announcement.json"),
    "BPVIZ_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JUPYTER_CONFIG_DIR": str(HERE / "student"),
    "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
}

# --- services: the teacher's overview and the idle culler
c.JupyterHub.services = [
    {
        "name": "class-overview",
        "url": f"http://127.0.0.1:{OVERVIEW_PORT}",
        "command": [sys.executable, "-m", "bpviz_class.overview"],
        "cwd": str(HERE),
        "environment": {"BPVIZ_CLASS_DIR": str(CLASS_DIR), "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"},
        "oauth_no_confirm": True,
        "display": True,
    },
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_TIMEOUT}", "--cull-every=60"],
    },
]
c.JupyterHub.load_roles = [
    {"name": "teacher", "users": [teacher], "scopes": ["access:services!service=class-overview"]},
    {"name": "class-overview", "services": ["class-overview"], "scopes": ["list:users", "read:users", "read:servers"]},
    {
        "name": "idle-culler",
        "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    },
]
