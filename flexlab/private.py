"""Private leases, the user's side: a Dask scheduler of your own for your leases' workers.

A private lease's slice worker joins a scheduler of its owner's instead of the pool's, so
other users cannot send it work or read its data: only holders of this scheduler's own TLS
material can connect, and that material is made here, in memory, for this process (the
worker's part goes to the pool, whose trusted tier can therefore reach it too:
``docs/security.md``). ``flexlab.lease(spec, private=True)`` starts one per process
(:func:`default_private_scheduler`) and hands its worker credentials to the pool::

    with flexlab.lease("gpu:0.5", private=True) as lease:
        lease.submit(train).result()   # runs on the lease's worker, via your own scheduler

or by hand, to pass ``worker_credentials()`` to the pool through another front::

    with PrivateScheduler() as ps:
        client.scheduler.flexlab_lease_create(..., private=ps.worker_credentials())
        ps.client().submit(fn, resources={"flexlab-lease-L1": 1})

When the pool stops a lease's worker it tells this scheduler why; the lease's unfinished
work then fails with :class:`~flexlab.core.errors.LeaseEnded` naming the cause, within one
check interval of the worker leaving (0.1 s). A worker that leaves without a word (its
process, agent or host died) is handled as the pool handles a lease worker that dies: the
pool places the lease again and a new worker joins; its work waits for it, at most
``orphan_timeout`` seconds, then fails with that cause.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import ipaddress
import logging
import socket
import threading
import time
from typing import Any, ClassVar

from distributed import Client, Scheduler, SchedulerPlugin, Security

from flexlab.core.errors import InvalidRequest, LeaseEnded
from flexlab.core.pool.model import LEASE_PREFIX
from flexlab.dask_client import open_client

logger = logging.getLogger("flexlab.private")

#: Days the private scheduler's certificates are valid (it lives as long as its process).
CERT_DAYS = 30


class PrivateLeasePlugin(SchedulerPlugin):
    """Inside a private scheduler: fails the work of a lease whose worker the pool stopped
    for good (``flexlab_private_stopping`` from the host agent, or :meth:`end`), and the
    work of one whose worker left without a word and did not come back in time."""

    name: ClassVar[str] = "flexlab-private"

    def __init__(self, *, orphan_timeout: float = 60.0, interval: float = 0.1) -> None:
        self.orphan_timeout = orphan_timeout
        self.interval = interval
        self.scheduler: Scheduler | None = None
        #: Lease id -> why it ended (its work fails with this).
        self.ended: dict[str, str] = {}
        #: Lease id -> the last reason the pool gave for stopping its worker (it comes back).
        self.paused: dict[str, str] = {}
        #: Worker address -> the lease it serves.
        self.workers: dict[str, str] = {}
        #: Lease id -> when its last worker left (monotonic clock).
        self.absent: dict[str, float] = {}
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._removals: set[asyncio.Task[Any]] = set()

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers["flexlab_private_stopping"] = self.handle_stopping
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def handle_stopping(self, lease_id: str, reason: str = "", ended: bool = False) -> dict[str, Any]:
        """The pool stops ``lease_id``'s worker because of ``reason``; ``ended``: for good."""
        if not isinstance(lease_id, str) or not isinstance(reason, str):
            return {"status": "error", "error": "InvalidInput", "message": "lease_id and reason are strings"}
        if ended:
            self.end(lease_id, reason)
        else:
            self.paused[lease_id] = reason
        return {"status": "OK"}

    def end(self, lease_id: str, reason: str) -> None:
        """``lease_id`` ended: its worker is removed from this scheduler at once (its
        running tasks would otherwise wait for the worker's threads to stop) and the work
        of the lease fails with ``reason`` within one check interval."""
        self.ended[lease_id] = reason or "it ended"
        sched = self.scheduler
        if sched is not None:
            for addr in [w for w, lid in self.workers.items() if lid == lease_id]:
                task = asyncio.ensure_future(
                    sched.remove_worker(addr, stimulus_id=f"flexlab-private-lease-ended-{time.time()}")
                )
                self._removals.add(task)
                task.add_done_callback(self._removals.discard)
        self.fail_orphans()

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        for r in (ws.resources if ws is not None else {}) or {}:
            if str(r).startswith(LEASE_PREFIX):
                lid = str(r)[len(LEASE_PREFIX) :]
                self.workers[worker] = lid
                self.absent.pop(lid, None)

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        lid = self.workers.pop(worker, None)
        if lid is not None and lid not in self.workers.values():
            self.absent[lid] = time.monotonic()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.fail_orphans()
            except Exception:  # never let the loop die: it is what keeps futures from hanging
                logger.exception("flexlab private scheduler: failing orphaned work failed")

    def fail_orphans(self) -> None:
        """Fail the waiting (no-worker) work of ended leases, and of leases whose worker
        left more than ``orphan_timeout`` seconds ago."""
        sched = self.scheduler
        if sched is None or not (self.ended or self.absent):
            return
        now = time.monotonic()
        doomed: list[tuple[Any, LeaseEnded]] = []
        for ts in list(sched.unrunnable):
            lid = next(
                (
                    str(r)[len(LEASE_PREFIX) :]
                    for r in ts.resource_restrictions or ()
                    if str(r).startswith(LEASE_PREFIX)
                ),
                None,
            )
            if lid is None:
                continue
            if lid in self.ended:
                doomed.append((ts.key, LeaseEnded(lid, self.ended[lid])))
            elif lid in self.absent and now - self.absent[lid] > self.orphan_timeout:
                last = self.paused.get(lid) or "none: its process, host agent or host died"
                cause = (
                    f"its worker left {now - self.absent[lid]:.0f} s ago and no other joined "
                    f"(orphan-timeout {self.orphan_timeout:g} s; the pool's last word: {last})"
                )
                doomed.append((ts.key, LeaseEnded(lid, cause)))
        for key, exc in doomed:
            self._err(sched, key, exc)

    def _err(self, sched: Scheduler, key: Any, exc: Exception) -> None:
        from flexlab_dask.tasks import fail_waiting_task

        if fail_waiting_task(sched, key, exc, f"flexlab-private-lease-ended-{time.time()}"):
            self.failed += 1


def route_host(pool: str | None) -> str:
    """The local address that routes to the pool scheduler at ``pool`` (``tls://H:P``):
    where the pool's hosts can reach a scheduler of this process. 127.0.0.1 for a loopback
    pool or none."""
    if not pool:
        return "127.0.0.1"
    rest = pool.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        if host == "localhost" or ipaddress.ip_address(host).is_loopback:
            return "127.0.0.1"
    except ValueError:
        pass  # a DNS name: ask the routing table
    try:
        infos = socket.getaddrinfo(host, int(port) if port.isdigit() else 8786, type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(sockaddr)  # UDP: nothing is sent, the kernel only picks the route
            return str(s.getsockname()[0])
    except OSError as exc:
        raise InvalidRequest(
            "host", None, f"the address the pool's hosts reach this process at (none routes to {pool}: {exc})"
        ) from None


def make_material(host: str, *, days: int = CERT_DAYS) -> dict[str, str]:
    """A fresh CA and PEM certificate/key pairs signed by it for the scheduler (SANs
    ``host``, 127.0.0.1, localhost), the lease workers and the client: ``ca``,
    ``scheduler``, ``scheduler-key``, ``worker``, ``worker-key``, ``client``, ``client-key``.
    The CA's key is not kept: nothing can be signed by this CA afterwards."""
    from flexlab.pki import issue, new_ca, pem_cert, pem_key, san_entries

    now = datetime.datetime.now(datetime.timezone.utc)
    start, until = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key, ca = new_ca("flexlab private scheduler", start, until)
    sans = san_entries(list(dict.fromkeys([host, "127.0.0.1", "localhost"])))
    out = {"ca": pem_cert(ca).decode()}
    for role in ("scheduler", "worker", "client"):
        key, cert = issue(ca_key, ca, role, sans, start, until)
        out[role] = pem_cert(cert).decode()
        out[f"{role}-key"] = pem_key(key).decode()
    return out


class PrivateScheduler:
    """A Dask scheduler of this process's own, for private leases' workers; no workers of
    its own. It runs on a background thread's event loop and listens with mutual TLS on
    ``tls://HOST:PORT`` (``host``: default :func:`route_host` of ``pool``, the pool
    scheduler's address), with a CA and certificates made for it alone.

    Several private leases may share one: each lease's worker offers its lease's resource
    (``flexlab-lease-<id>``), which ``Lease.submit`` asks for.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        pool: str | None = None,
        port: int = 0,
        orphan_timeout: float = 60.0,
    ) -> None:
        self.host = host or route_host(pool)
        self._material = make_material(self.host)
        self.plugin = PrivateLeasePlugin(orphan_timeout=orphan_timeout)
        self._client: Client | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="flexlab-private-scheduler", daemon=True
        )
        self._thread.start()
        try:
            self.scheduler: Scheduler = self._run(self._start(port), timeout=60)
        except BaseException:
            self._stop_loop()
            raise
        self.address: str = str(self.scheduler.address)

    def _security(self, role: str) -> Security:
        m = self._material
        kwargs = {f"tls_{role}_cert": m[role], f"tls_{role}_key": m[f"{role}-key"]}
        if role == "scheduler":  # the scheduler also dials its workers
            kwargs.update(tls_client_cert=m["scheduler"], tls_client_key=m["scheduler-key"])
        return Security(tls_ca_file=m["ca"], require_encryption=True, **kwargs)

    async def _start(self, port: int) -> Scheduler:
        sched = Scheduler(
            host=self.host,
            port=port,
            protocol="tls",
            security=self._security("scheduler"),
            dashboard=False,
            dashboard_address="127.0.0.1:0",  # Dask's plain HTTP routes stay on loopback
        )
        sched.add_plugin(self.plugin, name=self.plugin.name)
        await sched
        return sched

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def worker_credentials(self) -> dict[str, str]:
        """What a lease's worker needs to join this scheduler (``flexlab_lease_create``'s
        ``private``): its address, the CA to trust and the worker's certificate and key."""
        m = self._material
        return {"scheduler": self.address, "ca": m["ca"], "cert": m["worker"], "key": m["worker-key"]}

    def client_credentials(self) -> dict[str, str]:
        """What a client of this scheduler needs (for another process of the same account,
        such as the kernels of the Jupyter server that owns it): its address, the CA to trust
        and the client certificate and key."""
        m = self._material
        return {"scheduler": self.address, "ca": m["ca"], "cert": m["client"], "key": m["client-key"]}

    def client(self) -> Client:
        """The Dask client of this scheduler (mutual TLS), made once; never the default client."""
        if self._client is None:
            self._client = open_client(self.address, security=self._security("client"), set_as_default=False)
        return self._client

    def end_lease(self, lease_id: str, reason: str) -> None:
        """``lease_id`` ended (released from this process): its work here fails with ``reason``."""
        if not self._closed:

            async def end() -> None:
                self.plugin.end(lease_id, reason)

            self._run(end())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None
        try:
            self._run(self.scheduler.close(), timeout=30)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> PrivateScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrivateScheduler {self.address}{' closed' if self._closed else ''}>"


class _Default:
    """This process's private scheduler (one is enough: its leases share it)."""

    scheduler: PrivateScheduler | None = None
    lock = threading.Lock()


def default_private_scheduler(pool: str | None = None) -> PrivateScheduler:
    """This process's private scheduler, started at the first call (``pool``: the pool
    scheduler's address, to pick the local address its hosts reach) and closed at exit."""
    with _Default.lock:
        ps = _Default.scheduler
        if ps is None or ps._closed:
            ps = _Default.scheduler = PrivateScheduler(pool=pool)
            atexit.register(ps.close)
        return ps


def current_private_scheduler() -> PrivateScheduler | None:
    """This process's private scheduler if it runs, else None (nothing is started)."""
    ps = _Default.scheduler
    return ps if ps is not None and not ps._closed else None


def close_default_private_scheduler() -> None:
    """Close this process's private scheduler now, if it was started (otherwise at exit)."""
    with _Default.lock:
        if _Default.scheduler is not None:
            _Default.scheduler.close()
            _Default.scheduler = None


__all__ = [
    "PrivateLeasePlugin",
    "PrivateScheduler",
    "close_default_private_scheduler",
    "current_private_scheduler",
    "default_private_scheduler",
    "make_material",
    "route_host",
]
