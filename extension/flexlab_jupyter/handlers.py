"""REST handlers under ``/flexlab/api/`` (documented in ``openapi.yaml``).

Each handler reads its input, hands off to the :class:`~flexlab_jupyter.manager.PoolManager`
and writes a wire model. Every method is behind Jupyter's authentication, and the lease
owner is the caller's Jupyter identity. Domain errors become 4xx answers that name the field
at fault; anything else is logged with its traceback and answered with a plain 500.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from flexlab.core.errors import (
    FlexlabError,
    InvalidRequest,
    LedgerConflict,
    NotOwner,
    QuotaExceeded,
    UnknownName,
    Unschedulable,
)
from flexlab_jupyter import models
from flexlab_jupyter.manager import FrontManager, PoolManager, PoolUnavailable

#: URL prefix of the API (after the server's base URL).
API = "flexlab/api"
_LEASE_ID = r"(?P<lease_id>[^/]+)"
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[None]])

#: HTTP status of each domain error (the most specific class wins).
STATUS: list[tuple[type[FlexlabError], int]] = [
    (InvalidRequest, 400),
    (NotOwner, 403),
    (UnknownName, 404),
    (Unschedulable, 409),
    (LedgerConflict, 409),
    (QuotaExceeded, 429),
    (PoolUnavailable, 503),
    (FlexlabError, 409),
]


def status_of(exc: FlexlabError) -> int:
    return next(code for cls, code in STATUS if isinstance(exc, cls))


class FlexlabHandler(APIHandler):
    """Base of the API handlers: the manager, the owner, JSON in and out, error mapping."""

    #: The query parameters each method takes (besides Jupyter's own, ``_ANY_QUERY``).
    query: ClassVar[dict[str, tuple[str, ...]]] = {}

    @property
    def manager(self) -> PoolManager | FrontManager:
        manager: PoolManager | FrontManager = self.settings["flexlab_manager"]
        return manager

    @property
    def owner(self) -> str:
        """The lease owner for this request (see ``FlexlabJupyter.owner_source``)."""
        source = self.settings.get("flexlab_owner_source", "auto")
        anonymous = type(self.identity_provider) in (IdentityProvider, PasswordIdentityProvider)
        if source == "server" or (source == "auto" and anonymous):
            from flexlab.client import current_user

            return str(self.settings.get("flexlab_anonymous_owner") or current_user())
        return str(self.current_user.username)

    def reply(self, model: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(model))

    def fail(self, exc: FlexlabError) -> None:
        status = status_of(exc)
        message = str(exc)
        if isinstance(exc, NotOwner) and self.manager.user_tier:
            # the scheduler's message names the lease's owner: a detail for its owner only
            lease_id = self.path_kwargs.get("lease_id", "this lease")
            message = f"lease {lease_id} is not yours ({self.owner!r}): only its owner may read or change it"
        model = models.make_error(
            type(exc).__name__,
            message,
            field=getattr(exc, "field", None),
            allowed=getattr(exc, "allowed", None),
            code=getattr(exc, "code", None) if isinstance(exc, Unschedulable) else None,
        )
        self.log.info("flexlab API %s %s: %s %s", self.request.method, self.request.path, status, message)
        self.reply(model, status)

    def get_login_url(self) -> str:
        """An API has no login page: no or a wrong token is 401 (another owner's lease is 403)."""
        raise web.HTTPError(401, "log in: send 'Authorization: token <token>' or the login cookie")

    def check_xsrf_cookie(self) -> None:
        """No login at all is 401 before the XSRF check (which would answer 403)."""
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            self.get_login_url()
        super().check_xsrf_cookie()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors outside the domain (authentication, bugs) in the same JSON shape."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError):
            message = exc.log_message or self._reason
        else:
            message = "internal error; the server log has the details"
        self.set_header("Content-Type", "application/json")
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'token realm="jupyter"')
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        name = "InternalError" if status_code >= 500 else self._reason.replace(" ", "")
        self.finish(json.dumps(models.make_error(name, message)))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler answers (for 405's ``Allow`` header)."""
        base = web.RequestHandler
        return [m for m in cls.SUPPORTED_METHODS if getattr(cls, m.lower()) is not getattr(base, m.lower())]

    def body(self, fields: dict[str, tuple[type, ...]], required: tuple[str, ...]) -> dict[str, Any]:
        """The JSON object in the request body, checked against ``fields`` (name -> types)."""
        raw = self.request.body or b""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("body", raw[:60].decode("utf-8", "replace"), "a JSON object") from None
        if not isinstance(data, dict):
            raise InvalidRequest("body", data, "a JSON object with the fields " + ", ".join(fields))
        for key, value in data.items():
            if key not in fields:
                raise InvalidRequest(key, value, "no such field; fields: " + ", ".join(fields))
            types = fields[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                names = " or ".join(_JSON_TYPE[t] for t in types)
                raise InvalidRequest(key, value, names)
        for key in required:
            if key not in data:
                raise InvalidRequest(key, None, "required")
        return data

    def check_query(self) -> None:
        """Unknown query parameters are 400 (a typo must not be ignored silently)."""
        known = {*self.query.get(self.request.method or "GET", ()), *_ANY_QUERY}
        for name in self.request.query_arguments:
            if name not in known:
                value = self.get_query_argument(name, "")
                raise InvalidRequest(
                    name, value, "no such parameter; parameters: " + (", ".join(sorted(known)))
                )

    def query_flag(self, name: str, default: bool) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise InvalidRequest(name, raw, "true or false")


#: Query parameters Jupyter itself reads on any API request.
_ANY_QUERY = ("token", "no_track_activity", "_xsrf")
_JSON_TYPE = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
}


def domain_errors(method: Handler) -> Handler:
    """Answer domain errors raised by ``method`` with their 4xx (the rest reach tornado: 500)."""

    @functools.wraps(method)
    async def wrapper(self: FlexlabHandler, *args: Any, **kwargs: Any) -> None:
        try:
            self.check_query()
            await method(self, *args, **kwargs)
        except FlexlabError as exc:
            self.fail(exc)

    return wrapper  # type: ignore[return-value]


class InfoHandler(FlexlabHandler):
    @web.authenticated
    @domain_errors
    async def get(self) -> None:
        self.reply(await self.manager.info(self.owner))


class PoolHandler(FlexlabHandler):
    @web.authenticated
    @domain_errors
    async def get(self) -> None:
        self.reply(await self.manager.pool(self.owner))


class LeasesHandler(FlexlabHandler):
    query: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("ended",)}

    @web.authenticated
    @domain_errors
    async def get(self) -> None:
        ended = self.query_flag("ended", False)
        self.reply(await self.manager.leases(self.owner, include_ended=ended))

    @web.authenticated
    @domain_errors
    async def post(self) -> None:
        data = self.body(
            {"request": (str,), "ttl": (str, int, float), "priority": (int,), "private": (dict,)},
            required=("request",),
        )
        lease = await self.manager.create_lease(
            self.owner,
            data["request"],
            ttl=data.get("ttl"),
            priority=data.get("priority", 0),
            private=data.get("private"),
        )
        self.set_header("Location", url_path_join(self.base_url, API, "leases", lease["lease_id"]))
        self.reply(lease, 201)


class LeaseHandler(FlexlabHandler):
    @web.authenticated
    @domain_errors
    async def get(self, lease_id: str) -> None:
        self.reply(await self.manager.get_lease(self.owner, lease_id))

    @web.authenticated
    @domain_errors
    async def delete(self, lease_id: str) -> None:
        self.reply(await self.manager.release_lease(self.owner, lease_id))


class RenewHandler(FlexlabHandler):
    @web.authenticated
    @domain_errors
    async def post(self, lease_id: str) -> None:
        data = self.body({"ttl": (str, int, float)}, required=("ttl",))
        self.reply(await self.manager.renew_lease(self.owner, lease_id, data["ttl"]))


class ExplainHandler(FlexlabHandler):
    query: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("request", "lease")}

    @web.authenticated
    @domain_errors
    async def get(self) -> None:
        request = self.get_query_argument("request", None)
        if request is None:
            raise InvalidRequest("request", None, "required (?request=npu:0.25)")
        lease = self.query_flag("lease", True)
        self.reply(await self.manager.explain(request, lease=lease))

    @web.authenticated
    @domain_errors
    async def post(self) -> None:
        data = self.body({"request": (str,), "lease": (bool,)}, required=("request",))
        self.reply(await self.manager.explain(data["request"], lease=data.get("lease", True)))


class EventsHandler(FlexlabHandler):
    query: ClassVar[dict[str, tuple[str, ...]]] = {"GET": ("since",)}

    @web.authenticated
    @domain_errors
    async def get(self) -> None:
        raw = self.get_query_argument("since", "0")
        try:
            since = int(raw)
        except ValueError:
            raise InvalidRequest("since", raw, "an integer >= 0 (an event's seq)") from None
        if not 0 <= since < 2**53:  # beyond that it cannot cross msgpack (nor be a seq)
            raise InvalidRequest("since", since, "an integer from 0 to 2**53 - 1 (an event's seq)")
        self.reply(await self.manager.events(self.owner, since))


def routes() -> list[tuple[str, type[FlexlabHandler]]]:
    """URL patterns (relative to the server's base URL) and their handlers."""
    return [
        (url_path_join(API, "info"), InfoHandler),
        (url_path_join(API, "pool"), PoolHandler),
        (url_path_join(API, "leases"), LeasesHandler),
        (url_path_join(API, "leases", _LEASE_ID), LeaseHandler),
        (url_path_join(API, "leases", _LEASE_ID, "renew"), RenewHandler),
        (url_path_join(API, "explain"), ExplainHandler),
        (url_path_join(API, "events"), EventsHandler),
    ]
