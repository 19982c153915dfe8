"""``PoolManager``: the server extension's way to the pool, with nothing from Jupyter in it.

It holds one Dask client to the flexlab scheduler (a configured address, or the embedded
mock pool it starts itself) and answers every REST verb with a wire model from
:mod:`flexlab_jupyter.models`. The Dask client is synchronous; its calls run in a small
thread pool so that they never block the server's event loop::

    manager = PoolManager(address=None, embedded=True)
    manager.start()                      # starts the embedded pool (blocking, ~0.3 s)
    pool = await manager.pool(owner="ana")
    await manager.aclose()

Domain errors (:mod:`flexlab.core.errors`) pass through unchanged; the handlers map them
to HTTP status codes. :class:`PoolUnavailable` means the pool cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flexlab.core.errors import FlexlabError, InvalidRequest
from flexlab.core.request import MAX_PRIORITY, parse_request
from flexlab.core.units import lease_ttl
from flexlab_jupyter import models

logger = logging.getLogger("flexlab.jupyter")

T = TypeVar("T")

#: What ``GET /leases`` lists: leases that still hold (or wait for) a slice.


class PoolUnavailable(FlexlabError):
    """The pool's scheduler cannot be reached (or none is configured and embedded is off)."""


class PoolManager:
    """One Dask client to the flexlab pool, shared by every request of the server."""

    def __init__(
        self,
        address: str | None = None,
        *,
        embedded: bool = True,
        threads: int = 4,
        connect_timeout: float = 10.0,
        cluster_kwargs: dict[str, Any] | None = None,
        tls: str | None = None,
        user_tier: bool = False,
    ) -> None:
        self.configured_address = address or None
        #: Callers are the user tier (the front service): other owners' lease details are left out.
        self.user_tier = user_tier
        #: The folder with the pool's client certificate (mutual TLS), or None.
        self.tls = tls or None
        self.embedded = embedded and not self.configured_address
        self.connect_timeout = connect_timeout
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="flexlab-api")
        self._lock = threading.Lock()
        self._client: Any = None
        self._cluster: Any = None
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> str:
        """The scheduler address (empty until the embedded pool is started)."""
        if self.configured_address:
            return self.configured_address
        return str(self._cluster.scheduler_address) if self._cluster is not None else ""

    def start(self) -> None:
        """Connect, or start the embedded pool. Blocking: call it at load or in a thread."""
        self._executor.submit(self._ensure_client).result()

    def _ensure_client(self) -> Any:
        with self._lock:
            if self._closed:
                raise PoolUnavailable("the flexlab server extension is shutting down")
            if self._client is not None:
                return self._client
            from distributed import Client

            from flexlab.dask_client import open_client

            if self.configured_address:
                try:
                    from flexlab.tls import client_address, client_security

                    security = client_security(self.tls) if self.tls else None
                    address = client_address(self.configured_address, self.tls)
                    self._client = open_client(
                        address, timeout=self.connect_timeout, set_as_default=False, security=security
                    )
                except (OSError, TimeoutError, InvalidRequest) as exc:
                    raise PoolUnavailable(
                        f"cannot reach the flexlab scheduler at {self.configured_address}: {exc}"
                    ) from exc
            elif self.embedded:
                from flexlab_dask import FlexCluster

                self._cluster = FlexCluster(**self.cluster_kwargs)
                self._client = Client(self._cluster, set_as_default=False)
                logger.info("flexlab: embedded mock pool at %s", self._cluster.scheduler_address)
            else:
                raise PoolUnavailable(
                    "no flexlab scheduler configured (FlexlabJupyter.scheduler_address or "
                    "$FLEXLAB_SCHEDULER) and the embedded pool is off"
                )
            return self._client

    def close(self) -> None:
        """Close the client and the embedded pool (idempotent, blocking)."""
        with self._lock:
            self._closed = True
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Close off the event loop. Every caller waits for the one close: the server's
        shutdown can run twice at once (two stop signals), and the second must not end the
        process while the first still stops the embedded pool's workers."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().run_in_executor(None, self.close)
        await asyncio.shield(self._closing)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(client, ...)`` in the thread pool: Dask's synchronous client blocks."""

        def call() -> T:
            return fn(self._ensure_client(), *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(call))

    # ------------------------------------------------------------------ reading
    async def info(self, owner: str) -> models.InfoModel:
        from flexlab_dask import config

        from flexlab import __version__

        await self._run(lambda c: None)
        return {
            "user": owner,
            "scheduler": self.address,
            "embedded": self._cluster is not None,
            "version": __version__,
            "default_ttl": str(config.get("lease.default-ttl")),
            "max_ttl": str(config.get("lease.max-ttl")),
        }

    async def pool(self, owner: str) -> models.PoolModel:
        from flexlab.client import PoolClient

        state = await self._run(lambda c: PoolClient(c).pool_state())
        return models.make_pool(state, owner, redact=self.user_tier)

    async def explain(self, request: str, *, lease: bool = True) -> models.ExplainModel:
        req = _request(request)
        from flexlab.client import PoolClient

        resp = await self._run(lambda c: PoolClient(c).explain(request, lease=lease))
        return models.make_explain(resp, request=req.describe(), lease=lease)

    async def events(self, owner: str, since: int = 0) -> models.EventListModel:
        from flexlab.client import PoolClient

        evs = await self._run(lambda c: PoolClient(c).events(since=since, owner=owner))
        if self.user_tier:  # the caller's events and those about no lease at all
            evs = [
                e
                for e in evs
                if e.get("owner") == owner or (e.get("owner") is None and not e.get("lease_id"))
            ]
        return models.make_event_list(evs, since)

    # ------------------------------------------------------------------ leases
    async def leases(self, owner: str, *, include_ended: bool = False) -> models.LeaseListModel:
        from flexlab.client import PoolClient

        leases = await self._run(lambda c: PoolClient(c).lease_views(owner=owner))
        leases = [x for x in leases if x.owner == owner]
        if not include_ended:
            leases = [x for x in leases if x.live]
        return models.make_lease_list(leases)

    async def create_lease(
        self,
        owner: str,
        request: str,
        *,
        ttl: str | float | None = None,
        priority: int = 0,
        private: dict[str, Any] | None = None,
    ) -> models.LeaseModel:
        """A lease of ``owner``; with ``private`` (a private scheduler's worker credentials,
        ``models.PrivateModel``) its slice worker joins that scheduler instead of the pool's."""
        _request(request)
        from flexlab_dask import config

        from flexlab.client import _call, lease

        ttl_given = ttl if ttl is not None else str(config.get("lease.default-ttl"))
        _ttl(ttl_given)
        _priority(priority)
        if private is not None:
            private = _private(private)

        def create(c: Any) -> dict[str, Any]:
            if private is not None:
                args = {"request": request, "owner": owner, "ttl": ttl_given, "priority": priority}
                return dict(_call(c, "flexlab_lease_create", **args, private=private)["lease"])
            return lease(request, ttl=ttl_given, priority=priority, owner=owner, client=c, wait=False).info

        return models.make_lease(await self._run(create))

    # The lease verbs call the plugin's handlers, not flexlab.client.Lease: a private lease's
    # Lease belongs to the process whose scheduler its worker joined (the kernel), not to this one.
    async def get_lease(self, owner: str, lease_id: str) -> models.LeaseModel:
        from flexlab.client import _call

        def get(c: Any) -> dict[str, Any]:
            return dict(_call(c, "flexlab_lease_get", lease_id=str(lease_id), owner=owner)["lease"])

        return models.make_lease(await self._run(get))

    async def release_lease(self, owner: str, lease_id: str) -> models.LeaseModel:
        from flexlab.client import _call

        def release(c: Any) -> dict[str, Any]:
            _call(c, "flexlab_lease_get", lease_id=str(lease_id), owner=owner)  # UnknownName, NotOwner
            return dict(_call(c, "flexlab_lease_release", lease_id=str(lease_id), owner=owner)["lease"])

        return models.make_lease(await self._run(release))

    async def renew_lease(self, owner: str, lease_id: str, ttl: str | float) -> models.LeaseModel:
        _ttl(ttl)
        from flexlab.client import _call

        def renew(c: Any) -> dict[str, Any]:
            _call(c, "flexlab_lease_get", lease_id=str(lease_id), owner=owner)
            return dict(
                _call(c, "flexlab_lease_renew", lease_id=str(lease_id), owner=owner, ttl=ttl)["lease"]
            )

        return models.make_lease(await self._run(renew))


# ------------------------------------------------------------------ input checks
def _request(spec: object) -> Any:
    if not isinstance(spec, str):
        raise InvalidRequest(
            "request", spec, "a string such as 'gpu:0.25', 'npu:25%,16GiB' or 'a100:1g.10gb'"
        )
    return parse_request(spec)


def _ttl(ttl: object) -> float:
    """A TTL within the pool's maximum (the scheduler checks it again on create)."""
    from flexlab_dask import config

    return lease_ttl(ttl, config.get("lease.max-ttl"))


def _private(private: object) -> dict[str, str]:
    """A private scheduler's worker credentials: its tls:// address and PEM texts."""
    allowed = (
        "an object with the strings "
        + ", ".join(models.PRIVATE_FIELDS)
        + " (PrivateScheduler.worker_credentials())"
    )
    if not isinstance(private, dict):
        raise InvalidRequest("private", private, allowed)
    for key, value in private.items():
        if key not in models.PRIVATE_FIELDS:
            raise InvalidRequest(f"private.{key}", value, "no such field; " + allowed)
    for key in models.PRIVATE_FIELDS:
        value = private.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"private.{key}", value, "a non-empty string; " + allowed)
    if not private["scheduler"].startswith("tls://"):
        raise InvalidRequest("private.scheduler", private["scheduler"], "a tls://HOST:PORT address")
    for key in ("ca", "cert", "key"):
        if "-----BEGIN " not in private[key]:
            raise InvalidRequest(f"private.{key}", private[key][:40], "PEM text (-----BEGIN ...)")
    return {k: str(private[k]) for k in models.PRIVATE_FIELDS}


def _priority(priority: object) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY:
        raise InvalidRequest("priority", priority, f"an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
    return priority


# ------------------------------------------------------------------ front mode
class FrontManager:
    """:class:`PoolManager`'s verbs forwarded to a flexlab front (``FlexlabJupyter.front_url``)
    with the Jupyter user's own Hub token: this server holds no pool credential, and the
    front decides the owner. Its answers are already the wire models; they pass unchanged.

    The leases it makes (the Accelerators panel's) are private: their workers join a private
    scheduler this server starts at the first one (``flexlab.private``), whose client
    credentials it writes to ``private_file`` (0600, this user's own) for its kernels, which
    find it through ``$FLEXLAB_PRIVATE`` and run work there (``flexlab.front``)."""

    embedded = False
    user_tier = False

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        threads: int = 4,
        timeout: float = 30.0,
        private_file: str | None = None,
    ) -> None:
        from flexlab.front import FrontClient

        self.front = FrontClient(url, token or "", timeout=timeout)
        self.private_file = private_file
        self._private: Any = None
        self._private_lock = threading.Lock()
        #: The leases made here on the private scheduler: given back when the server stops.
        self._made: set[str] = set()
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="flexlab-front")

    @property
    def address(self) -> str:
        """The front's URL (kernels find it as ``$FLEXLAB_FRONT``)."""
        return self.front.url

    def start(self) -> None:
        """Nothing to start: each request goes to the front."""

    def private_scheduler(self) -> Any:
        """This server's private scheduler for the panel's leases, started at the first call
        (blocking: cryptography and a scheduler, about a second), its client credentials
        written to ``private_file`` for the kernels."""
        with self._private_lock:
            if self._private is None:
                from flexlab.front import write_private_file
                from flexlab.private import PrivateScheduler

                pool = str(self.front.info().get("scheduler") or "") or None
                self._private = PrivateScheduler(pool=pool)
                if self.private_file:
                    write_private_file(self.private_file, self._private)
                logger.info("flexlab: private scheduler for the panel's leases at %s", self._private.address)
            return self._private

    def close(self) -> None:
        """Give back the leases made here (their workers' scheduler stops with this server;
        the pool would keep them until their TTL) and stop the private scheduler."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.front.timeout = min(self.front.timeout, 5.0)
        for lease_id in sorted(self._made):
            try:
                self.front.release_lease(lease_id)
            except Exception as exc:  # the server stops anyway; the TTL ends the lease
                logger.warning("flexlab: could not give back lease %s at shutdown: %s", lease_id, exc)
        self._made.clear()
        with self._private_lock:
            private, self._private = self._private, None
        if private is not None:
            private.close()
        if self.private_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.private_file)

    async def aclose(self) -> None:
        self.close()

    async def _run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` (a blocking call to the front) in the thread pool; the front's refusals
        and absence are :class:`PoolUnavailable` (503) for the browser."""
        from flexlab.front import FrontRejected, FrontUnavailable

        def call() -> Any:
            try:
                return fn()
            except FrontRejected as exc:
                raise PoolUnavailable(
                    f"the flexlab front at {self.address} refused this server: {exc}"
                ) from exc
            except FrontUnavailable as exc:
                raise PoolUnavailable(str(exc)) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def info(self, owner: str) -> models.InfoModel:
        return await self._run(self.front.info)

    async def pool(self, owner: str) -> models.PoolModel:
        return await self._run(self.front.pool)

    async def explain(self, request: str, *, lease: bool = True) -> models.ExplainModel:
        _request(request)
        return await self._run(lambda: self.front.explain(request, lease=lease))

    async def events(self, owner: str, since: int = 0) -> models.EventListModel:
        return await self._run(lambda: self.front.call("GET", "events", since=str(since)))

    async def leases(self, owner: str, *, include_ended: bool = False) -> models.LeaseListModel:
        query = {"ended": "true"} if include_ended else {}
        return await self._run(lambda: self.front.call("GET", "leases", **query))

    async def create_lease(
        self,
        owner: str,
        request: str,
        *,
        ttl: str | float | None = None,
        priority: int = 0,
        private: dict[str, Any] | None = None,
    ) -> models.LeaseModel:
        _request(request)
        checked = _private(private) if private is not None else None

        def create() -> Any:
            if checked is not None:  # a kernel's private scheduler: the kernel gives it back
                return self.front.create_lease(request, ttl=ttl, priority=priority, private=checked)
            creds = self.private_scheduler().worker_credentials()
            out = self.front.create_lease(request, ttl=ttl, priority=priority, private=creds)
            self._made.add(str(out["lease_id"]))
            return out

        return await self._run(create)

    async def get_lease(self, owner: str, lease_id: str) -> models.LeaseModel:
        return await self._run(lambda: self.front.get_lease(lease_id))

    async def release_lease(self, owner: str, lease_id: str) -> models.LeaseModel:
        def release() -> Any:
            out = self.front.release_lease(lease_id)
            self._made.discard(lease_id)
            if self._private is not None:  # its unfinished work fails now, with why
                self._private.end_lease(lease_id, f"it {out.get('state')}: {out.get('reason')}")
            return out

        return await self._run(release)

    async def renew_lease(self, owner: str, lease_id: str, ttl: str | float) -> models.LeaseModel:
        return await self._run(lambda: self.front.renew_lease(lease_id, ttl))
