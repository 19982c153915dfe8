"""A real JupyterHub deployment for tests: two system users, a TLS pool they cannot read, and
JupyterHub (PyPI) behind configurable-http-proxy (npm), every server on 127.0.0.1.

``Deployment(users=...)`` (root only; see :func:`unavailable`) lays out, under a fresh
``/tmp/flexlab-hub-XXXX`` (root, 0755)::

    tls/     flexlab certs: the pool CA and certificates       root 0700 (no user can read it)
    pool/    flexlab up's state file and log                     root 0700
    hub/     jupyterhub_config.py, its database, cookie secret    root 0700
    venv/    an interpreter the users can run (see below)         root 0755

and starts, in this order: ``flexlab up --tls`` (the mock pool: scheduler, agent, slice worker
processes), then ``jupyterhub`` with the real ``configurable-http-proxy``, a password
authenticator (:data:`HUB_AUTH`) and ``LocalProcessSpawner``, which starts each user's
single-user server (JupyterLab with the flexlab server extension) as that system user, with
``HOME=/home/<user>``. The hub runs the managed services given as ``services``
(:class:`Service`), as root: the flexlab front holds the pool's client certificate there.

Why ``venv/``: the project's ``.venv`` runs an interpreter under ``/root`` (pyenv), and
``/root`` is 0700, so the users could not start it. ``venv/`` is a venv of the system's
``/usr/bin/python3`` (same minor version) whose ``.pth`` adds the project's site-packages,
with ``share/`` and ``etc/`` linked to the project venv's (the lab extension, the server
extension's config, the settings overrides). Nothing is installed twice. The pool (so its
slice workers, which the agent starts with its own interpreter) and the front run on it too:
with another Python than the kernels', Dask warns of a version mismatch in the notebook.

:meth:`Deployment.close` stops everything it started, by pid (the hub stops the single-user
servers and the proxy; any process left under a test user's uid is one this deployment's hub
started, and is killed by pid), deletes the users and their homes (``userdel -r``), and the
folder. It runs on fixture teardown and at exit, also after a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
#: configurable-http-proxy installed by ``make setup`` (npm, project-local; see the Makefile).
CHP = Path(
    os.environ.get("FLEXLAB_CHP", str(VENV / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"))
)
#: The system interpreter the users' servers and kernels run.
SYSTEM_PYTHON = Path(
    os.environ.get("FLEXLAB_HUB_PYTHON", f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")
)
#: What ``useradd -c`` writes: a user with this comment was made by a deployment (and may be
#: removed by the next one, after a run that was killed before it could clean up).
GECOS = "flexlab hub test user"
#: Held (flock) while a deployment lives: a second one on the machine waits for it.
LOCK = Path(tempfile.gettempdir()) / "flexlab-hub-tests.lock"

#: JupyterHub's default scopes of a single-user server's own token.
SERVER_TOKEN_SCOPES = ("users:activity!user", "access:servers!server")

#: Tests' password authenticator: a name and password pair from ``passwords`` logs in.
HUB_AUTH = '''
from jupyterhub.auth import Authenticator

class TestPasswords(Authenticator):
    """Logs in the names of ``passwords`` with their password (a test deployment only)."""

    passwords = {passwords!r}

    async def authenticate(self, handler, data):
        name = data.get("username", "")
        if name in self.passwords and secrets.compare_digest(data.get("password", ""), self.passwords[name]):
            return name
        return None
'''

#: Deployments not closed yet (closed at exit).
_OPEN: list[Deployment] = []


def unavailable() -> str | None:
    """None when a deployment can run here, else why not (the tests skip with it)."""
    if os.geteuid() != 0:
        return "the JupyterHub deployment creates system users and switches to them: it needs root"
    for tool in ("useradd", "userdel"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if shutil.which("node") is None:
        return "node is missing (configurable-http-proxy runs on it)"
    if not CHP.exists():
        return f"{CHP} is missing: `make setup` installs configurable-http-proxy from npm"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing: the users' servers need an interpreter outside /root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uid_pids(uid: int) -> list[int]:
    """The pids of the processes running as ``uid`` (real uid, from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "status").read_text().split("\nUid:\t", 1)[1].split("\t", 1)[0] == str(uid):
                pids.append(int(entry.name))
    return pids


@dataclass
class Proc:
    """A process the deployment started: its own session, output to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self, tail: int = 8000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # what is left in its group
        self._log.close()


@dataclass
class Service:
    """A hub-managed service: ``argv`` may use ``{port}``, ``{scheduler}``, ``{tls}``,
    ``{hub_api}``, ``{public}`` (the proxy's URL) and ``{python}`` (the deployment's
    interpreter); ``scopes`` are given to it through a role."""

    name: str
    argv: Sequence[str]
    scopes: Sequence[str] = ()
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_http(
    url: str,
    *,
    until: float,
    procs: Sequence[Proc] = (),
    headers: dict[str, str] | None = None,
    ok: Sequence[int] = (200,),
) -> None:
    """Wait until ``GET url`` answers one of ``ok`` (none of ``procs`` may exit meanwhile)."""
    request = urllib.request.Request(url, headers=headers or {})
    while True:
        for p in procs:
            p.check()
        try:
            with urllib.request.urlopen(request, timeout=3) as resp:
                if resp.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > until:
            raise TimeoutError(f"{url} did not answer {list(ok)} in time")
        time.sleep(0.3)


class Deployment:
    """JupyterHub, configurable-http-proxy and a TLS flexlab pool, for ``users`` (system users)."""

    def __init__(
        self,
        users: Sequence[str] = ("ana", "bob"),
        *,
        services: Sequence[Service] = (),
        singleuser_args: Sequence[str] = (),
        singleuser_env: dict[str, str] | None = None,
        pool_args: Sequence[str] = ("--policy", "firstfit"),
        user_scopes: Sequence[str] = (),
    ) -> None:
        self.users = list(users)
        self.passwords = {u: secrets.token_urlsafe(12) for u in self.users}
        self.services = list(services)
        self.singleuser_args = list(singleuser_args)
        self.singleuser_env = dict(singleuser_env or {})
        self.pool_args = list(pool_args)
        self.user_scopes = list(user_scopes)
        self.root = Path(tempfile.mkdtemp(prefix="flexlab-hub-"))
        self.root.chmod(0o755)
        self.tls = self.root / "tls"
        self.pool_dir = self.root / "pool"
        self.hub_dir = self.root / "hub"
        self.venv = self.root / "venv"
        self.procs: list[Proc] = []
        self.created_users: list[str] = []
        self.scheduler = f"tls://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_token = secrets.token_hex(24)  # the tests' admin service
        self.pool: Proc | None = None
        self.hub: Proc | None = None
        self._closed = False
        _OPEN.append(self)
        _exit_on_sigterm()

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 150.0, lock_timeout: float = 900.0) -> Deployment:
        until = time.monotonic() + timeout
        try:
            self._lock(lock_timeout)
            for user in self.users:
                self._add_user(user)
            self._user_venv()
            self._start_pool(until)
            self._start_hub(until)
        except BaseException:
            self.close()
            raise
        return self

    def _lock(self, timeout: float) -> None:
        """One deployment at a time on a machine (they make the same system users): wait for
        :data:`LOCK`, which the kernel releases when its holder exits, however it exits."""
        self._lock_file = LOCK.open("a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another hub test deployment held {LOCK} for {timeout} s") from None
                time.sleep(1.0)

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)

    def _add_user(self, user: str) -> None:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            if entry.pw_gecos != GECOS:
                raise RuntimeError(f"a system user {user!r} exists that no hub test made: not touching it")
            self._remove_user(user)  # left by a killed run
        self._run("useradd", "--create-home", "--shell", "/bin/bash", "--comment", GECOS, user)
        self.created_users.append(user)

    def _remove_user(self, user: str) -> None:
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            return
        for _ in range(20):
            pids = uid_pids(uid)
            if not pids:
                break
            for pid in pids:  # started by this deployment's hub for this user (made for the test)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        subprocess.run(["userdel", "--remove", user], check=False, capture_output=True, text=True, timeout=60)

    def _user_venv(self) -> None:
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(self.venv)], check=True, timeout=60
        )
        site = Path(sysconfig.get_paths()["purelib"])
        pth = self.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (pth / "flexlab-project.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
        for sub in ("share", "etc"):
            (self.venv / sub).symlink_to(VENV / sub)
        self.python = self.venv / "bin" / "python"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXLAB_", "JUPYTER", "DASK_"))}
        env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def flexlab(self) -> list[str]:
        """The flexlab command on the deployment's interpreter: the pool, its slice workers
        (the agent starts them with its own interpreter) and the front run the same Python as
        the users' kernels, so Dask finds no version mismatch between them."""
        return [str(self.python), "-m", "flexlab.cli"]

    def _start_pool(self, until: float) -> None:
        self._run(*self.flexlab(), "certs", str(self.tls))
        self.tls.chmod(0o700)
        self.pool_dir.mkdir(mode=0o700)
        port = self.scheduler.rsplit(":", 1)[1]
        self.pool = self._spawn(
            "pool",
            [
                *self.flexlab(),
                "up",
                "--tls",
                str(self.tls),
                "--port",
                port,
                "--state-file",
                str(self.pool_dir / "state.sqlite"),
                *self.pool_args,
            ],
            self.pool_dir,
        )
        while not self._pool_ready():
            self.pool.check()
            if time.monotonic() > until:
                raise TimeoutError(f"the pool did not start in time:\n{self.pool.log()}")
            time.sleep(0.5)

    def _pool_ready(self) -> bool:
        done = subprocess.run(
            [*self.flexlab(), "status", "--scheduler", self.scheduler, "--tls", str(self.tls)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(),
        )
        return done.returncode == 0 and "device" in done.stdout

    def _spawn(self, name: str, argv: Sequence[str], folder: Path) -> Proc:
        proc = Proc(name, list(argv), folder / f"{name}.log", self._env(), cwd=folder)
        self.procs.append(proc)
        return proc

    def _config(self) -> str:
        fill = {
            "scheduler": self.scheduler,
            "tls": str(self.tls),
            "hub_api": f"http://127.0.0.1:{self.hub_port}/hub/api",
            "public": self.url,
            "python": str(self.python),
        }
        services: list[dict[str, Any]] = [{"name": "flexlab-tests", "api_token": self.api_token}]
        roles: list[dict[str, Any]] = [
            {"name": "user", "scopes": ["self", *self.user_scopes]},
            {
                "name": "flexlab-tests",
                "services": ["flexlab-tests"],
                "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"],
            },
        ]
        for s in self.services:
            argv = [a.format(port=s.port, **fill) for a in s.argv]
            services.append(
                {"name": s.name, "url": s.url, "command": argv, "environment": {"PATH": self._env()["PATH"]}}
            )
            if s.scopes:
                roles.append({"name": f"{s.name}-role", "services": [s.name], "scopes": list(s.scopes)})
        env = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            **{k: v.format(**fill) for k, v in self.singleuser_env.items()},
        }
        args = [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(a.format(**fill) for a in self.singleuser_args),
        ]
        lines = [
            "import secrets",
            HUB_AUTH.format(passwords=self.passwords),
            "c = get_config()  # noqa",
            "c.JupyterHub.ip = '127.0.0.1'",
            f"c.JupyterHub.port = {self.port}",
            "c.JupyterHub.hub_ip = '127.0.0.1'",
            f"c.JupyterHub.hub_port = {self.hub_port}",
            f"c.JupyterHub.db_url = {'sqlite:///' + str(self.hub_dir / 'jupyterhub.sqlite')!r}",
            f"c.JupyterHub.cookie_secret_file = {str(self.hub_dir / 'cookie_secret')!r}",
            f"c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]",
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'",
            f"c.ConfigurableHTTPProxy.pid_file = {str(self.hub_dir / 'proxy.pid')!r}",
            "c.ConfigurableHTTPProxy.debug = False",
            "c.JupyterHub.authenticator_class = TestPasswords",
            f"c.Authenticator.allowed_users = {set(self.users)!r}",
            f"c.JupyterHub.services = {services!r}",
            f"c.JupyterHub.load_roles = {roles!r}",
            "c.JupyterHub.cleanup_servers = True",
            "c.JupyterHub.cleanup_proxy = True",
            # users' own tokens and their servers' token ($JUPYTERHUB_API_TOKEN, which kernels
            # inherit) get user_scopes, e.g. access to the front service
            f"c.Spawner.server_token_scopes = {[*SERVER_TOKEN_SCOPES, *self.user_scopes]!r}",
            "c.Spawner.env_keep = ['LANG', 'LC_ALL']",
            "c.Spawner.ip = '127.0.0.1'",
            f"c.Spawner.cmd = [{str(self.python)!r}, '-m', 'jupyterhub.singleuser']",
            f"c.Spawner.args = {args!r}",
            "c.Spawner.default_url = '/lab'",
            "c.Spawner.notebook_dir = '~'",
            f"c.Spawner.environment = {env!r}",
            "c.Spawner.start_timeout = 120",
            "c.Spawner.http_timeout = 120",
        ]
        return "\n".join(lines) + "\n"

    def _start_hub(self, until: float) -> None:
        self.hub_dir.mkdir(mode=0o700)
        self.hub_port = free_port()
        config = self.hub_dir / "jupyterhub_config.py"
        config.write_text(self._config())
        self.hub = self._spawn(
            "jupyterhub", [str(VENV / "bin" / "jupyterhub"), "-f", str(config)], self.hub_dir
        )
        wait_http(f"{self.url}/hub/api/", until=until, procs=[self.hub])

    # ------------------------------------------------------------------ use
    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """A Hub REST call (``path`` under ``/hub/api``) with the tests' admin token."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/hub/api{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {token or self.api_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def token(self, user: str) -> str:
        """A new API token of ``user`` (their own scopes)."""
        return str(self.api("POST", f"/users/{user}/tokens", {"note": "flexlab hub test"})["token"])

    def start_servers(self, *users: str, timeout: float = 120.0) -> None:
        """Start these users' single-user servers through the Hub API (all at once) and wait
        until each answers."""
        for user in users:
            with contextlib.suppress(urllib.error.HTTPError):  # 400: already running
                self.api("POST", f"/users/{user}/server")
        until = time.monotonic() + timeout
        for user in users:
            while True:
                model = self.api("GET", f"/users/{user}")
                if (model.get("servers") or {}).get("", {}).get("ready"):
                    break
                assert self.hub is not None
                self.hub.check()
                if time.monotonic() > until:
                    raise TimeoutError(f"{user}'s server did not start in time:\n{self.hub.log()}")
                time.sleep(0.5)

    def uid(self, user: str) -> int:
        return pwd.getpwnam(user).pw_uid

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop everything, remove the users and the folder; a SIGTERM meanwhile waits."""
        if self._closed:
            return
        self._closed = True
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN) if main else None
        try:
            self._close()
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            if self in _OPEN:
                _OPEN.remove(self)

    def _close(self) -> None:
        for proc in reversed(self.procs):  # the hub (it stops the servers and the proxy), then the pool
            with contextlib.suppress(BaseException):
                proc.stop()
        with contextlib.suppress(OSError, ValueError):  # the proxy, should the hub have died first
            pid = int((self.hub_dir / "proxy.pid").read_text())
            if Path(f"/proc/{pid}/cmdline").read_bytes().find(b"configurable-http-proxy") >= 0:
                os.kill(pid, signal.SIGTERM)
        for user in self.created_users:
            with contextlib.suppress(BaseException):
                self._remove_user(user)
        shutil.rmtree(self.root, ignore_errors=True)
        lock = getattr(self, "_lock_file", None)
        if lock is not None:
            lock.close()  # releases the flock


def _exit_on_sigterm() -> None:
    """A SIGTERM to the test process (a CI job cancelled, ``timeout``) exits through
    SystemExit, so the fixture's finalizer and the atexit hook still remove the users."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@atexit.register
def _close_all() -> None:
    for deployment in list(_OPEN):
        deployment.close()
