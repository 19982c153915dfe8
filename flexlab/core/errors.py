"""Typed domain errors. Adapters map them to their edge (HTTP 4xx, a failed Dask task)."""

from __future__ import annotations

from collections.abc import Iterable


class FlexlabError(Exception):
    """Base class of every error flexlab raises on purpose."""


class InvalidRequest(FlexlabError, ValueError):
    """A request or argument is malformed or out of range.

    It always names the field, the value given and what is allowed, so that a user can
    fix the input without reading the source.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field}: {value!r}; allowed: {allowed}")


class Unschedulable(FlexlabError):
    """A valid request that the pool cannot hold, now or ever (see ``code``)."""

    def __init__(self, message: str, *, code: str = "UNSCHEDULABLE", reasons: object = None) -> None:
        self.code = code
        self.reasons = reasons
        super().__init__(message)


class LedgerConflict(FlexlabError):
    """A reservation that would break a ledger invariant (over-commit, bad profile mix)."""


class NotOwner(FlexlabError, PermissionError):
    """Someone acted on a lease or slice that belongs to another owner."""

    def __init__(self, what: str, owner: str | None, actor: str | None) -> None:
        self.what = what
        self.owner = owner
        self.actor = actor
        super().__init__(f"{what} belongs to {owner!r}; {actor!r} may not change it")


class LeaseEnded(FlexlabError):
    """Work submitted to a lease that ended (released, expired, or given up by its caller)
    before the work could finish there. The message names the lease and the cause."""

    def __init__(self, lease_id: str, cause: str) -> None:
        self.lease_id = lease_id
        self.cause = cause
        super().__init__(f"lease {lease_id} ended before this task finished on it: {cause}")

    def __reduce__(self) -> tuple[type[LeaseEnded], tuple[str, str]]:  # crosses processes
        return (LeaseEnded, (self.lease_id, self.cause))


class QuotaExceeded(FlexlabError):
    """An owner asked for more than their quota allows."""


class UnknownName(FlexlabError, KeyError):
    """A name (host, device, slice, lease, model) that does not exist."""

    def __init__(self, kind: str, name: object, known: Iterable[str] = ()) -> None:
        self.kind = kind
        self.name = name
        known_list = sorted(known)
        hint = f"; known: {', '.join(known_list[:12])}" if known_list else ""
        if len(known_list) > 12:
            hint += f", ... ({len(known_list)} in all)"
        super().__init__(f"unknown {kind} {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
