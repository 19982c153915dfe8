"""Use flexlab from Python: fractional devices for Dask tasks, and leases.

Task mode: annotate work with what each task needs; the scheduler plugin places every
task on a fitting slice::

    import flexlab
    with flexlab.request("npu:0.25"):
        futures = client.map(infer, batches)

Lease mode: a slice of your own until you give it back::

    with flexlab.lease("gpu:30%,8GiB", ttl="2h") as lease:
        result = lease.submit(train, data).result()

A private lease's worker joins a Dask scheduler of this process's own instead of the pool's
(``flexlab.private``), so that nobody else can reach it: ``flexlab.lease(spec, private=True)``.

Both talk to the ``FlexScheduler`` plugin over the Dask client's connection. Bad input
raises :class:`~flexlab.core.errors.InvalidRequest` before anything is sent.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, Future, default_client

from flexlab.core.errors import (
    FlexlabError,
    InvalidRequest,
    LedgerConflict,
    NotOwner,
    UnknownName,
    Unschedulable,
)
from flexlab.core.poolstate import LeaseView, PoolState, from_json
from flexlab.core.request import parse_request
from flexlab.core.units import parse_duration
from flexlab.dask_client import open_client

if TYPE_CHECKING:
    from flexlab.private import PrivateScheduler

_ERRORS: dict[str, type[FlexlabError]] = {
    "InvalidRequest": InvalidRequest,
    "Unschedulable": Unschedulable,
    "NotOwner": NotOwner,
    "UnknownName": UnknownName,
    "LedgerConflict": LedgerConflict,
}


def current_user() -> str:
    """The owner of leases made from this process: ``$FLEXLAB_USER`` or the login name."""
    return os.environ.get("FLEXLAB_USER") or getpass.getuser()


def _raise(resp: dict[str, Any]) -> dict[str, Any]:
    if resp.get("status") == "OK":
        return resp
    kind = resp.get("error", "FlexlabError")
    msg = str(resp.get("message", resp))
    if kind == "InvalidRequest":
        raise InvalidRequest(str(resp.get("field")), resp.get("value"), str(resp.get("allowed")))
    if kind == "NotOwner":
        err = NotOwner.__new__(NotOwner)
        Exception.__init__(err, msg)
        raise err
    if kind == "Unschedulable":
        raise Unschedulable(msg, code=str(resp.get("code", "UNSCHEDULABLE")), reasons=resp.get("reasons"))
    if kind == "UnknownName":
        err2 = UnknownName.__new__(UnknownName)
        Exception.__init__(err2, msg)
        raise err2
    raise _ERRORS.get(kind, FlexlabError)(msg)


def _front_mode() -> bool:
    """No pool credentials but a front: the user tier (``flexlab.front.front_mode``)."""
    if not os.environ.get("FLEXLAB_FRONT"):
        return False
    from flexlab.front import front_mode

    return front_mode()


def _client(client: Client | None) -> Client:
    return client if client is not None else default_client()


#: Environment variable with the pool's scheduler address (set by ``flexlab lab`` for kernels).
SCHEDULER_ENV = "FLEXLAB_SCHEDULER"


def scheduler_address() -> str | None:
    """The configured pool: ``$FLEXLAB_SCHEDULER``, else dask config ``flexlab.scheduler-address``."""
    return os.environ.get(SCHEDULER_ENV) or dask.config.get("flexlab.scheduler-address", None) or None


def connect(address: str | None = None, *, embedded: bool = False, tls: str | None = None) -> Client:
    """The Dask client of the pool: ``address``, else the current default client, else the
    configured scheduler (:func:`scheduler_address`), else (``embedded``) a new in-process mock
    pool (``FlexCluster``) that lives as long as this process.

    ``tls``: the folder holding the pool's ``ca.pem``, ``client.pem`` and ``client-key.pem``
    (default: ``$FLEXLAB_TLS``, else the dask config ``flexlab.tls``); with it the connection
    is mutual TLS and the address ``tls://``. See ``docs/security.md``.

    >>> client = flexlab.client.connect()  # doctest: +SKIP
    >>> client = flexlab.connect("tls://10.0.0.5:8786", tls="/etc/flexlab/tls")  # doctest: +SKIP
    """
    if address:
        return _connect_to(address, tls)
    with contextlib.suppress(ValueError):
        return default_client()
    configured = scheduler_address()
    if configured:
        return _connect_to(configured, tls)
    if not embedded:
        raise ValueError(
            f"no Dask client and no pool configured: set ${SCHEDULER_ENV} or the dask config "
            "flexlab.scheduler-address, or pass a client"
        )
    from flexlab_dask import FlexCluster

    return Client(FlexCluster())


def _connect_to(address: str, tls: str | None) -> Client:
    from flexlab.tls import client_address, client_security, tls_dir

    # Dask's own message for a tls:// address without a certificate ("TLS expects a
    # `ssl_context` argument") does not say what to do; client_address does.
    folder = tls_dir(tls)
    return open_client(client_address(address, folder), security=client_security(folder) if folder else None)


def _call(client: Client, handler: str, **kwargs: Any) -> dict[str, Any]:
    fn = getattr(client.scheduler, handler)
    resp = client.sync(fn, **kwargs)
    return _raise(resp)


# ------------------------------------------------------------------ task mode
@contextlib.contextmanager
def request(spec: str, *, priority: int | None = None) -> Iterator[None]:
    """Annotate the Dask work created inside the block: each task needs ``spec``.

    Works around ``client.submit``, ``client.map`` and ``dask.delayed``; collections whose
    graph optimisation drops annotations (dask.array, dataframes) need :func:`submit` or
    ``compute(..., optimize_graph=False)``.
    """
    parse_request(spec)  # fail here, before anything is sent
    extra: dict[str, Any] = {}
    if priority is not None:
        extra["priority"] = priority
    with dask.annotate(flexlab=spec, **extra):
        yield


def submit(work: Any, *args: Any, request: str, client: Client | None = None, **kwargs: Any) -> Any:
    """Run ``work`` with a flexlab request: a function (like ``client.submit``) or a Dask
    collection (computed with graph optimisation off, so the annotation survives)."""
    c = _client(client)
    parse_request(request)
    with dask.annotate(flexlab=request):
        if callable(work) and not dask.is_dask_collection(work):
            return c.submit(work, *args, **kwargs)
        return c.compute(work, optimize_graph=False, **kwargs)


# ------------------------------------------------------------------ leases
class Lease:
    """A slice reserved for one owner. Use it as a context manager to release it.

    ``client`` is the Dask client its work goes to: the pool's, or for a private lease
    (``private``: the scheduler of this process its worker joins) that scheduler's client;
    ``pool_client`` is the pool's, for the lease's own calls (refresh, renew, release)."""

    def __init__(
        self, client: Client, info: dict[str, Any], *, private: PrivateScheduler | None = None
    ) -> None:
        self.pool_client = client
        self.private = private
        self._private_client = private.client() if private is not None else None
        self.info = info
        self.lease_id: str = str(info["lease_id"])
        self.owner: str = str(info["owner"])

    @classmethod
    def attach(cls, lease_id: str, *, owner: str | None = None, client: Client | None = None) -> Lease:
        """An existing lease (made from the JupyterLab panel, ``%flex`` or another process).

        ``client`` defaults to :func:`connect` (the default client or the configured pool);
        ``owner`` to :func:`current_user`. Raises ``UnknownName`` or ``NotOwner``::

            lease = flexlab.Lease.attach("L3")
            lease.submit(fn).result()

        Without pool credentials but with a front (``flexlab.front.front_mode``), through the front.
        """
        if client is None and _front_mode():
            from flexlab.front import FrontLease

            return FrontLease.attach(lease_id, owner=owner)
        c = client if client is not None else connect()
        who = owner or current_user()
        info = _call(c, "flexlab_lease_get", lease_id=str(lease_id), owner=who)["lease"]
        if info.get("private"):
            from flexlab.private import current_private_scheduler

            ps = current_private_scheduler()
            if ps is None or ps.address != info.get("scheduler"):
                raise LedgerConflict(
                    f"lease {lease_id} is private: its worker joins the scheduler at {info.get('scheduler')} "
                    "of the process that made it; use that process's Lease"
                )
            return cls(c, info, private=ps)
        return cls(c, info)

    @property
    def client(self) -> Client:
        """Where the lease's work goes: the private scheduler's client, else the pool's."""
        return self._private_client if self._private_client is not None else self.pool_client

    @client.setter
    def client(self, value: Client) -> None:
        # Setting it (a client reconnected to a restarted pool) moves a pool lease's calls too.
        if self._private_client is not None:
            self._private_client = value
        else:
            self.pool_client = value

    def __repr__(self) -> str:
        where = f" on {', '.join(self.info.get('devices') or [])}" if self.info.get("devices") else ""
        return f"<Lease {self.lease_id} {self.info.get('request')} {self.info.get('state')}{where}>"

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def state(self) -> str:
        return str(self.info.get("state"))

    def refresh(self, *, claim: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"claim": True} if claim else {}
        self.info = _call(
            self.pool_client, "flexlab_lease_get", lease_id=self.lease_id, owner=self.owner, **kwargs
        )["lease"]
        return self.info

    def wait(self, timeout: float = 60.0, interval: float = 0.1) -> Lease:
        """Block until the lease's slice has its worker (state ``active``)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.refresh(claim=True)
            if info["state"] == "active":
                return self
            if info["state"] in ("released", "expired"):
                raise LedgerConflict(f"lease {self.lease_id} is {info['state']}: {info['reason']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"lease {self.lease_id} not active after {timeout} s: {info['reason']}")
            time.sleep(interval)

    def _annotation(self) -> dict[str, str]:
        return {"lease": self.lease_id, "owner": self.owner}

    @property
    def _resources(self) -> dict[str, float]:
        """A private lease's work asks for the lease's resource, which only its worker offers
        (its scheduler has no flexlab plugin to read the annotation)."""
        return {str(self.info.get("resource") or f"flexlab-lease-{self.lease_id}"): 1.0}

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run ``fn`` on this lease's slice (and nowhere else)."""
        if self.private is not None:
            return self.client.submit(fn, *args, resources=self._resources, **kwargs)
        with dask.annotate(flexlab=self._annotation()):
            return self.client.submit(fn, *args, **kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Any, **kwargs: Any) -> list[Future]:
        if self.private is not None:
            return list(self.client.map(fn, *iterables, resources=self._resources, **kwargs))
        with dask.annotate(flexlab=self._annotation()):
            return self.client.map(fn, *iterables, **kwargs)

    def compute(self, collection: Any, **kwargs: Any) -> Any:
        if self.private is not None:
            with dask.annotate(resources=self._resources):
                return self.client.compute(collection, optimize_graph=False, **kwargs)
        with dask.annotate(flexlab=self._annotation()):
            return self.client.compute(collection, optimize_graph=False, **kwargs)

    def release(self) -> dict[str, Any]:
        """Give the slice back (idempotent). A private lease's unfinished work fails at once
        with :class:`~flexlab.core.errors.LeaseEnded`."""
        self.info = _call(
            self.pool_client, "flexlab_lease_release", lease_id=self.lease_id, owner=self.owner
        )["lease"]
        if self.private is not None:
            self.private.end_lease(self.lease_id, f"it {self.info.get('state')}: {self.info.get('reason')}")
        return self.info

    def renew(self, ttl: str | float) -> dict[str, Any]:
        parse_duration(ttl)
        self.info = _call(
            self.pool_client, "flexlab_lease_renew", lease_id=self.lease_id, owner=self.owner, ttl=ttl
        )["lease"]
        return self.info

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        evs = _call(self.pool_client, "flexlab_events", since=since, owner=self.owner)["events"]
        return [e for e in evs if e.get("lease_id") in (self.lease_id, None) and e.get("owner") == self.owner]


def lease(
    spec: str,
    *,
    ttl: str | float = "1h",
    priority: int = 0,
    owner: str | None = None,
    client: Client | None = None,
    wait: bool = True,
    timeout: float = 60.0,
    private: bool = False,
) -> Lease:
    """Reserve a slice for ``owner`` (default: :func:`current_user`) for ``ttl``.

    ``private``: the slice's worker joins this process's own scheduler
    (:func:`flexlab.private.default_private_scheduler`, started at the first private lease)
    instead of the pool's, so nobody else can reach it; ``lease.client`` is then that
    scheduler's client and ``lease.submit`` runs there, on this lease's worker.

    Raises ``InvalidRequest`` for bad input and ``Unschedulable`` when the request can never
    fit the pool; with ``wait`` (default) returns once the slice's worker is up, or raises
    ``TimeoutError`` after ``timeout`` seconds.

    A call that gives up leaves nothing behind: on a time-out, an interrupt (Ctrl-C, a
    cancelled cell) or any other error before the lease is returned, the lease this call
    made is given back; if the process dies instead, the scheduler gives it back when this
    client's connection closes.

    Without pool credentials but with a front (``flexlab.front.front_mode``: a kernel of a
    front-mode Jupyter server), the lease is made through the front and is private.
    """
    parse_request(spec)
    parse_duration(ttl)
    if client is None and _front_mode():
        from flexlab.front import lease as front_lease

        return front_lease(spec, ttl=ttl, priority=priority, owner=owner, wait=wait, timeout=timeout)
    c = _client(client)
    who = owner or current_user()
    token = uuid.uuid4().hex
    kwargs: dict[str, Any] = {"client_id": c.id, "token": token} if wait else {}
    ps: PrivateScheduler | None = None
    if private:
        from flexlab.private import default_private_scheduler

        ps = default_private_scheduler(pool=str(c.scheduler.address))
        kwargs["private"] = ps.worker_credentials()
    try:
        resp = _call(c, "flexlab_lease_create", request=spec, owner=who, ttl=ttl, priority=priority, **kwargs)
        out = Lease(c, resp["lease"], private=ps)
        if wait:
            out.wait(timeout=timeout)
    except BaseException:
        if wait:
            with contextlib.suppress(Exception):
                _call(c, "flexlab_lease_abandon", token=token, owner=who)
        raise
    return out


# ------------------------------------------------------------------ the pool
class PoolClient:
    """Read the pool: state, explanations, events, leases (through the front in
    ``flexlab.front.front_mode``: a :class:`flexlab.front.FrontPoolClient`)."""

    def __new__(cls, client: Client | None = None, **kwargs: Any) -> PoolClient:
        if cls is PoolClient and client is None and _front_mode():
            from flexlab.front import FrontPoolClient

            return object.__new__(FrontPoolClient)
        return object.__new__(cls)

    def __init__(self, client: Client | None = None) -> None:
        self.client = _client(client)

    def state(self) -> dict[str, Any]:
        """The pool state's wire JSON (``docs/wire.md``); :meth:`pool_state` reads it typed."""
        return _call(self.client, "flexlab_pool_state")

    def pool_state(self) -> PoolState:
        """The pool state, typed and checked (:class:`~flexlab.core.poolstate.PoolState`)."""
        return PoolState.from_json(self.state())

    def explain(self, spec: str, *, lease: bool = False) -> dict[str, Any]:
        """Where ``spec`` would go now, or the counted reasons why not; ``lease``: as a new
        lease (which may reclaim idle shared slices) rather than as a task."""
        parse_request(spec)
        if lease:
            return _call(self.client, "flexlab_explain", request=spec, lease=True)
        return _call(self.client, "flexlab_explain", request=spec)

    def events(self, since: int = 0, owner: str | None = None) -> list[dict[str, Any]]:
        return list(_call(self.client, "flexlab_events", since=since, owner=owner)["events"])

    def history(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Aggregated telemetry frames (once a second): busy share and memory by vendor, by
        model and in total, leased share, waiting tasks, arrivals per request class."""
        return list(_call(self.client, "flexlab_history", since=since)["frames"])

    def leases(self, owner: str | None = None) -> list[dict[str, Any]]:
        return list(_call(self.client, "flexlab_lease_list", owner=owner)["leases"])

    def lease_views(self, owner: str | None = None) -> list[LeaseView]:
        """:meth:`leases`, typed and checked."""
        return [from_json(LeaseView, x, f"leases[{i}]") for i, x in enumerate(self.leases(owner))]
