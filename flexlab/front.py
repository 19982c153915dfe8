"""The user tier's way to the pool: flexlab's REST API through an authenticated front.

A user who holds no pool credential reaches the pool only through a front that authenticated
them: the ``flexlab front`` JupyterHub service (``flexlab_jupyter.service``), or the
per-user Jupyter server in front mode, which forwards to it. The owner of every lease is
whom the front authenticated, never what this client writes (``docs/security.md``).

In a kernel of a front-mode server, ``$FLEXLAB_FRONT`` names the front and
``$JUPYTERHUB_API_TOKEN`` is the kernel's Hub token; :func:`front_mode` is then true and
``flexlab.lease``, ``flexlab.Lease.attach``, ``flexlab.PoolClient`` and ``%flex`` go through
:class:`FrontClient`. A lease made here is private: its slice worker joins a Dask scheduler
of this kernel's own (:class:`flexlab.private.PrivateScheduler`), which nobody else can
reach, and ``lease.submit`` runs there::

    with flexlab.lease("gpu:0.25") as lease:      # through the front, a private lease
        lease.submit(train).result()

Errors of the front come back as flexlab's errors: 403 is :class:`~flexlab.core.errors.NotOwner`
("not your lease"), 401 :class:`FrontRejected`, 503 or an unreachable front
:class:`FrontUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flexlab.client import Lease, PoolClient
from flexlab.core.errors import (
    FlexlabError,
    InvalidRequest,
    LedgerConflict,
    NotOwner,
    QuotaExceeded,
    UnknownName,
    Unschedulable,
)
from flexlab.core.poolstate import LeaseView, PoolState, from_json
from flexlab.core.request import parse_request
from flexlab.core.units import parse_duration

if TYPE_CHECKING:
    from flexlab.private import PrivateScheduler

#: The front's URL, for kernels of a front-mode Jupyter server (``.../flexlab/api/`` is under it).
FRONT_ENV = "FLEXLAB_FRONT"
#: A file with the client credentials of the private scheduler of this kernel's Jupyter
#: server, whose workers are the Accelerators panel's leases (``write_private_file``).
PRIVATE_ENV = "FLEXLAB_PRIVATE"
#: Where the token for the front is read, in order: an explicit one, then the Hub's.
TOKEN_ENVS = ("FLEXLAB_FRONT_TOKEN", "JUPYTERHUB_API_TOKEN")


class FrontRejected(FlexlabError, PermissionError):
    """The front did not accept the token (HTTP 401)."""


class FrontUnavailable(FlexlabError):
    """The front cannot be reached, or it cannot reach the pool (HTTP 503, or no answer)."""


def front_url() -> str | None:
    """``$FLEXLAB_FRONT``, or None."""
    return os.environ.get(FRONT_ENV) or None


def front_token() -> str | None:
    """``$FLEXLAB_FRONT_TOKEN``, else ``$JUPYTERHUB_API_TOKEN``, or None."""
    return next((os.environ[k] for k in TOKEN_ENVS if os.environ.get(k)), None)


def front_mode() -> bool:
    """True where this process has a front (``$FLEXLAB_FRONT``) and no pool credentials
    (no ``$FLEXLAB_TLS`` nor dask config ``flexlab.tls``): the user tier."""
    if not front_url():
        return False
    from flexlab.tls import tls_dir

    return tls_dir() is None


class FrontClient:
    """flexlab's REST API (``openapi.yaml``) at a front, as the owner of ``token``.

    ``url`` is the front's base URL (``http://127.0.0.1:10101/services/flexlab/``); the API
    is under ``flexlab/api/`` there. Defaults: :func:`front_url` and :func:`front_token`.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        base = url or front_url()
        if not base:
            raise InvalidRequest(
                FRONT_ENV, None, "the URL of a flexlab front (flexlab front, docs/security.md)"
            )
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidRequest("front URL", base, "an http:// or https:// URL")
        self.url = base.rstrip("/") + "/"
        self.token = token if token is not None else front_token()
        self.timeout = timeout
        self._user: str | None = None

    def __repr__(self) -> str:
        return f"<FrontClient {self.url}>"

    # ------------------------------------------------------------------ transport
    def call(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        """One request to ``flexlab/api/<path>``; the JSON answer, or flexlab's error."""
        url = urllib.parse.urljoin(self.url, "flexlab/api/" + path)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                model = json.loads(raw) if raw else {}
            except ValueError:
                model = {}
            raise error_of(exc.code, model if isinstance(model, dict) else {}, url) from None
        except (OSError, ValueError) as exc:
            raise FrontUnavailable(f"cannot reach the flexlab front at {self.url}: {exc}") from exc

    # ------------------------------------------------------------------ the API
    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = self.call("GET", "info")
        self._user = str(out.get("user", ""))
        return out

    @property
    def user(self) -> str:
        """The owner the front authenticated this client's token as."""
        if self._user is None:
            self.info()
        return str(self._user)

    def pool(self) -> dict[str, Any]:
        """``GET pool``: the pool by host and device (other owners' lease details left out)."""
        out: dict[str, Any] = self.call("GET", "pool")
        return out

    def leases(self, *, ended: bool = False) -> list[dict[str, Any]]:
        query = {"ended": "true"} if ended else {}
        return list(self.call("GET", "leases", **query)["leases"])

    def create_lease(
        self,
        request: str,
        *,
        ttl: str | float | None = None,
        priority: int = 0,
        private: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"request": request, "priority": priority}
        if ttl is not None:
            body["ttl"] = ttl
        if private is not None:
            body["private"] = private
        out: dict[str, Any] = self.call("POST", "leases", body)
        return out

    def get_lease(self, lease_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call("GET", "leases/" + _quote(lease_id))
        return out

    def release_lease(self, lease_id: str) -> dict[str, Any]:
        out: dict[str, Any] = self.call("DELETE", "leases/" + _quote(lease_id))
        return out

    def renew_lease(self, lease_id: str, ttl: str | float) -> dict[str, Any]:
        out: dict[str, Any] = self.call("POST", f"leases/{_quote(lease_id)}/renew", {"ttl": ttl})
        return out

    def explain(self, request: str, *, lease: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = self.call("POST", "explain", {"request": request, "lease": lease})
        return out

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.call("GET", "events", since=str(since))["events"])


def _quote(lease_id: str) -> str:
    return urllib.parse.quote(str(lease_id), safe="")


def error_of(status: int, model: dict[str, Any], url: str = "") -> FlexlabError:
    """flexlab's error for an error answer of the API (``ErrorModel``)."""
    message = str(model.get("message") or f"HTTP {status}")
    name = str(model.get("error") or "")
    err: FlexlabError
    if status == 401:
        return FrontRejected(
            f"the flexlab front did not accept this kernel's token ({message}); a user-tier client "
            f"sends ${TOKEN_ENVS[1]} (or ${TOKEN_ENVS[0]}), which needs the scope "
            "access:services!service=flexlab (docs/security.md)"
        )
    if status == 403 or name == "NotOwner":
        err = NotOwner.__new__(NotOwner)
        Exception.__init__(err, f"not your lease: {message}")
        return err
    if status >= 500 or status == 503:
        return FrontUnavailable(f"the flexlab front answered {status} at {url}: {message}")
    if name == "InvalidRequest" or status == 400:
        err = InvalidRequest(str(model.get("field") or "request"), None, str(model.get("allowed") or ""))
        err.args = (message,)
        return err
    if name == "UnknownName" or status == 404:
        err = UnknownName.__new__(UnknownName)
        Exception.__init__(err, message)
        return err
    if name == "Unschedulable":
        return Unschedulable(message, code=str(model.get("code") or "UNSCHEDULABLE"))
    if name == "QuotaExceeded" or status == 429:
        return QuotaExceeded(message)
    if name == "LedgerConflict":
        return LedgerConflict(message)
    return FlexlabError(message)


# ------------------------------------------------------------------ leases through the front
#: The private scheduler of each live lease this process made, by lease id (a lease attached
#: again in the same kernel finds it; another process cannot).
_PRIVATE: dict[str, Any] = {}
#: Leases attached here whose worker was found on this kernel's server's private scheduler.
_CHECKED: set[str] = set()


class FrontLease(Lease):
    """A lease made or attached through the front, with :class:`flexlab.client.Lease`'s verbs.

    ``client`` and ``submit`` use the lease's private scheduler, which only the process that
    made the lease holds. A lease made without one (in the Accelerators panel, or by a
    trusted client) has its worker on the pool's scheduler, which a user-tier client cannot
    reach: its ``submit`` says so.
    """

    def __init__(self, front: FrontClient, info: dict[str, Any], private: Any = None) -> None:
        self.front = front
        self.info = info
        self.lease_id = str(info["lease_id"])
        self.owner = str(info["owner"])
        self.private = private
        #: The private scheduler its worker joined: ``private``, or this kernel's server's.
        self._scheduler: Any = private

    @classmethod
    def attach(  # type: ignore[override]
        cls, lease_id: str, *, owner: str | None = None, front: FrontClient | None = None
    ) -> FrontLease:
        """A lease of the caller's through the front (403: :class:`NotOwner`, not your lease)."""
        return of(front or FrontClient(), str(lease_id), owner)

    def __repr__(self) -> str:
        where = f" on {', '.join(self.info.get('devices') or [])}" if self.info.get("devices") else ""
        kind = "private " if self.private is not None else ""
        return f"<Lease {self.lease_id} {kind}{self.info.get('request')} {self.info.get('state')}{where}>"

    def __enter__(self) -> FrontLease:
        return self

    @property
    def client(self) -> Any:
        """The Dask client of the private scheduler this lease's slice worker joined: this
        process's, or for a lease of the Accelerators panel its Jupyter server's."""
        if self._scheduler is None:
            self._scheduler = self.private if self.private is not None else server_private()
        if self._scheduler is None:
            raise PermissionError(
                f"lease {self.lease_id} has no private scheduler this process can reach: it was made "
                "elsewhere (another kernel, or a server without $FLEXLAB_PRIVATE), and its worker is "
                "reachable only there. Make a lease here with flexlab.lease(...) to run work on it"
            )
        return self._scheduler.client()

    @client.setter
    def client(self, value: Any) -> None:
        raise AttributeError("a lease through the front uses its private scheduler's client")

    @property
    def _resources(self) -> dict[str, float]:
        """The resource only this lease's worker offers on the shared private scheduler."""
        return {f"flexlab-lease-{self.lease_id}": 1.0}

    def refresh(self, *, claim: bool = False) -> dict[str, Any]:
        self.info = self.front.get_lease(self.lease_id)
        return self.info

    def wait(self, timeout: float = 60.0, interval: float = 0.2) -> FrontLease:
        """Block until the lease is active (and its worker joined the private scheduler)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.refresh()
            if info["state"] == "active":
                break
            if info["state"] in ("released", "expired"):
                raise LedgerConflict(f"lease {self.lease_id} is {info['state']}: {info['reason']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"lease {self.lease_id} not active after {timeout} s: {info['reason']}")
            time.sleep(interval)
        resource = next(iter(self._resources))
        while not any(resource in (w.get("resources") or {}) for w in self._workers()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"lease {self.lease_id}'s worker did not join the private scheduler at "
                    f"{self._scheduler.address} in {timeout} s: a lease another kernel made runs work "
                    "only from that kernel"
                )
            time.sleep(interval)
        return self

    def _workers(self) -> list[dict[str, Any]]:
        info = self.client.scheduler_info()
        return list(info.get("workers", {}).values())

    def _check_worker(self, timeout: float = 60.0) -> None:
        """A lease attached here (not made here) must be active with its worker on the private
        scheduler found, else its work would wait for a worker that never comes."""
        if self.lease_id in _PRIVATE or self.lease_id in _CHECKED:
            return
        self.wait(timeout=timeout)
        _CHECKED.add(self.lease_id)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on this lease's slice, through the private scheduler."""
        self._check_worker()
        return self.client.submit(fn, *args, resources=self._resources, **kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Any, **kwargs: Any) -> Any:
        self._check_worker()
        return list(self.client.map(fn, *iterables, resources=self._resources, **kwargs))

    def compute(self, collection: Any, **kwargs: Any) -> Any:
        import dask

        self._check_worker()
        with dask.annotate(resources=self._resources):
            return self.client.compute(collection, optimize_graph=False, **kwargs)

    def release(self) -> dict[str, Any]:
        """Give the slice back (idempotent); the lease's unfinished private work fails."""
        self.info = self.front.release_lease(self.lease_id)
        private = _PRIVATE.pop(self.lease_id, None)
        if private is not None:
            private.end_lease(self.lease_id, f"it {self.info.get('state')}: {self.info.get('reason')}")
        return self.info

    def renew(self, ttl: str | float) -> dict[str, Any]:
        parse_duration(ttl)
        self.info = self.front.renew_lease(self.lease_id, ttl)
        return self.info

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        evs = self.front.events(since)
        return [e for e in evs if e.get("lease_id") in (self.lease_id, None) and e.get("owner") == self.owner]


def of(
    front: FrontClient, lease_id: str, owner: str | None = None, info: dict[str, Any] | None = None
) -> FrontLease:
    """The lease ``lease_id`` through ``front`` (``info``: its model, when already read), with
    its private scheduler when this process made it."""
    check_owner(front, owner)
    return FrontLease(front, info or front.get_lease(lease_id), _PRIVATE.get(lease_id))


def check_owner(front: FrontClient, owner: str | None) -> None:
    """A user-tier client cannot name an owner other than whom the front authenticated."""
    if owner is not None and owner != front.user:
        err = NotOwner(f"owner {owner!r}", owner, front.user)
        err.args = (
            f"owner {owner!r} is not you: the front authenticated this kernel's token as {front.user!r}, "
            "and a user-tier client cannot act as another owner",
        )
        raise err


def lease(
    spec: str,
    *,
    ttl: str | float = "1h",
    priority: int = 0,
    owner: str | None = None,
    wait: bool = True,
    timeout: float = 60.0,
    front: FrontClient | None = None,
) -> FrontLease:
    """A private lease through the front (what :func:`flexlab.lease` does in :func:`front_mode`).

    Uses this process's :func:`flexlab.private.default_private_scheduler` (started at the
    first private lease), sends its worker credentials with the request, and (``wait``)
    returns once the slice's worker joined it. A call that gives up releases the lease it made.
    """
    parse_request(spec)
    parse_duration(ttl)
    f = front or FrontClient()
    check_owner(f, owner)
    from flexlab.private import default_private_scheduler

    private = default_private_scheduler(pool=str(f.info().get("scheduler") or "") or None)
    made: FrontLease | None = None
    try:
        info = f.create_lease(spec, ttl=ttl, priority=priority, private=private.worker_credentials())
        _PRIVATE[str(info["lease_id"])] = private
        made = FrontLease(f, info, private)
        _at_exit(made)
        if wait:
            made.wait(timeout=timeout)
    except BaseException:
        if made is not None:
            with contextlib.suppress(Exception):  # the original error is the one to raise
                made.release()
        raise
    return made


#: The leases this process made through the front, given back when it exits (their workers'
#: scheduler, this process's, stops with it; the pool would keep them until their TTL).
_MADE: dict[str, FrontLease] = {}


def _at_exit(lease: FrontLease) -> None:
    if not _MADE:
        import atexit

        atexit.register(release_at_exit)
    _MADE[lease.lease_id] = lease


def release_at_exit() -> None:
    """Give back the leases this process made that are still held (best effort, 5 s each)."""
    for lease in list(_MADE.values()):
        if lease.lease_id not in _PRIVATE:  # released already
            continue
        lease.front.timeout = min(lease.front.timeout, 5.0)
        with contextlib.suppress(Exception):
            lease.release()
    _MADE.clear()


class ServerPrivate:
    """The private scheduler of this kernel's Jupyter server (front mode), from the file
    ``$FLEXLAB_PRIVATE`` names: its address and a client certificate of its own CA."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        self.address = str(data["scheduler"])
        self._creds = {k: str(data[k]) for k in ("ca", "cert", "key")}
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from distributed import Security

            from flexlab.dask_client import open_client

            security = Security(
                tls_ca_file=self._creds["ca"],
                tls_client_cert=self._creds["cert"],
                tls_client_key=self._creds["key"],
                require_encryption=True,
            )
            self._client = open_client(self.address, security=security, set_as_default=False)
        return self._client


_SERVER_PRIVATE: dict[str, ServerPrivate] = {}


def server_private() -> ServerPrivate | None:
    """The private scheduler of this kernel's Jupyter server, or None when it has none yet."""
    path = os.environ.get(PRIVATE_ENV)
    if not path or not os.path.exists(path):
        return None
    if path not in _SERVER_PRIVATE:
        _SERVER_PRIVATE[path] = ServerPrivate(path)
    return _SERVER_PRIVATE[path]


def write_private_file(path: str, private: PrivateScheduler) -> None:
    """Write ``private``'s address and client credentials to ``path``, readable by this
    account alone (the Jupyter server's user: the same as its kernels')."""
    data = private.client_credentials()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)


class FrontPoolClient(PoolClient):
    """:class:`flexlab.client.PoolClient`'s reading verbs through the front (``PoolClient()``
    is one in :func:`front_mode`)."""

    def __init__(self, client: Any = None, *, front: FrontClient | None = None) -> None:
        if client is not None:
            raise InvalidRequest("client", client, "None: a front pool client talks to the front only")
        self.front = front or FrontClient()
        self.client = None  # type: ignore[assignment]  # no Dask client: the front only

    def history(self, since: float = 0.0) -> list[dict[str, Any]]:
        raise PermissionError("the pool's telemetry history is for the trusted tier (the dashboard)")

    def state(self) -> dict[str, Any]:
        """The pool as the front shows it (the REST pool model: other owners' lease details
        left out)."""
        return self.front.pool()

    def pool_state(self) -> PoolState:
        m = self.state()
        wire = {"time": m["time"], "hosts": m["hosts"], "policy": m["policy"], "menu": m["menu"]}
        return from_json(PoolState, wire, "pool")

    def explain(self, spec: str, *, lease: bool = False) -> dict[str, Any]:
        parse_request(spec)
        return self.front.explain(spec, lease=lease)

    def events(self, since: int = 0, owner: str | None = None) -> list[dict[str, Any]]:
        check_owner(self.front, owner)
        return self.front.events(since)

    def leases(self, owner: str | None = None) -> list[dict[str, Any]]:
        check_owner(self.front, owner)
        return self.front.leases(ended=True)

    def lease_views(self, owner: str | None = None) -> list[LeaseView]:
        return [from_json(LeaseView, x, f"leases[{i}]") for i, x in enumerate(self.leases(owner))]
