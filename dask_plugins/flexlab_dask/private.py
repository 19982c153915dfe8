"""The pool side of private leases: a lease whose slice worker joins its owner's own scheduler.

``flexlab_lease_create(..., private={"scheduler": "tls://HOST:PORT", "ca": PEM, "cert": PEM,
"key": PEM})`` makes one. The pool places it like any lease; its ``StartSlice`` command
carries those credentials to the host agent, which starts the slice's worker against the
owner's scheduler (never the pool's) and reports back what the plugin cannot see through
``add_worker``: that the worker started (the lease is then active), that it died (handled
like a lease worker that dies: the lease is placed again and gets a new worker), and its
telemetry. The credentials live in this process's memory and in the lease store (mode
0600) for the lease's life, and never appear in a lease's view, which shows ``private`` and
the scheduler's address. A private worker runs on through a restart of the pool scheduler
(it is joined to its owner's): the restarted scheduler restores the lease where it was,
adopts the worker its agent still runs (:meth:`PrivateLeases.adopt`) instead of starting
another, and the agent reports it again, so the lease is active on the same worker.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from flexlab.core.errors import InvalidRequest
from flexlab.core.pool.model import ENDED, StartSlice

if TYPE_CHECKING:
    from flexlab_dask.scheduler import FlexScheduler

logger = logging.getLogger("flexlab.private")

#: The keys of a lease's ``private`` credentials.
FIELDS = ("scheduler", "ca", "cert", "key")
#: The most characters a PEM of the credentials may have (a certificate chain, a key).
MAX_PEM = 64 * 1024


def check_private(private: object, *, pool_tls: bool) -> dict[str, str]:
    """The credentials of a private lease, checked; ``InvalidRequest`` names what is wrong.

    ``scheduler`` must be ``tls://HOST:PORT``; ``tcp://`` is taken only by a pool that runs
    on plain TCP itself (``pool_tls`` False: tests, a loopback demo). ``ca`` and ``cert``
    must be PEM certificates and ``key`` the PEM private key of ``cert``.
    """
    if not isinstance(private, dict):
        raise InvalidRequest(
            "private",
            type(private).__name__,
            'a dict {"scheduler": "tls://HOST:PORT", "ca": PEM, "cert": PEM, "key": PEM}',
        )
    extra = sorted(str(k) for k in private if k not in FIELDS)
    missing = [k for k in FIELDS if k not in private]
    if extra or missing:
        raise InvalidRequest(
            "private",
            f"keys {sorted(str(k) for k in private)}",
            f"exactly the keys {', '.join(FIELDS)}",
        )
    for k in FIELDS:
        v = private[k]
        if not isinstance(v, str) or not v or len(v) > MAX_PEM:
            raise InvalidRequest(
                f"private.{k}", type(v).__name__, f"a non-empty string of at most {MAX_PEM} characters"
            )
    address = private["scheduler"]
    scheme, sep, rest = address.partition("://")
    schemes = ("tls",) if pool_tls else ("tls", "tcp")
    host, colon, port = rest.rpartition(":")
    if (
        not sep
        or scheme not in schemes
        or not colon
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise InvalidRequest(
            "private.scheduler",
            address[:80],
            "tls://HOST:PORT (the owner's scheduler"
            + (
                "; tcp:// only where the pool itself runs on plain TCP)"
                if pool_tls
                else "; tcp://HOST:PORT as this pool runs on plain TCP)"
            ),
        )
    _check_pems(private["ca"], private["cert"], private["key"])
    return {k: str(private[k]) for k in FIELDS}


def _check_pems(ca: str, cert: str, key: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificate(ca.encode())
    except ValueError as exc:
        raise InvalidRequest(
            "private.ca", "not a PEM certificate", f"the CA's PEM certificate ({exc})"
        ) from None
    try:
        crt = x509.load_pem_x509_certificate(cert.encode())
    except ValueError as exc:
        raise InvalidRequest(
            "private.cert", "not a PEM certificate", f"the worker's PEM certificate ({exc})"
        ) from None
    try:
        k = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            "private.key", "not an unencrypted PEM private key", f"the key of private.cert ({exc})"
        ) from None
    if k.public_key() != crt.public_key():
        raise InvalidRequest("private.key", "another certificate's key", "the private key of private.cert")


class PrivateLeases:
    """The credentials of the pool's private leases and the agents' reports about their
    workers (``flexlab_agent_private_*``), for one :class:`FlexScheduler`."""

    def __init__(self, plugin: FlexScheduler) -> None:
        self.plugin = plugin
        #: Lease id -> its credentials, while the lease lives.
        self.credentials: dict[str, dict[str, str]] = {}

    @property
    def pool_tls(self) -> bool:
        sched = self.plugin.scheduler
        return sched is not None and str(sched.address).startswith("tls://")

    def check(self, private: object) -> dict[str, str] | None:
        return None if private is None else check_private(private, pool_tls=self.pool_tls)

    def hold(self, lease_id: str, private: dict[str, str]) -> None:
        self.credentials[lease_id] = private

    def adopt(self, host: str, running: list[str]) -> list[str]:
        """The agent of ``host`` registered running ``running``: the restored private leases'
        slices among them keep the worker it runs (already joined to its owner's
        scheduler, with work on it) instead of being started again; their agent reports
        them started. Returns the adopted slice ids."""
        have = set(running)
        adopted = []
        for sid in have:
            s = self.plugin.pool.slices.get(sid)
            if s is None or s.host != host or s.state != "starting" or s.lease_id is None:
                continue
            lease = self.plugin.pool.leases.get(s.lease_id)
            if lease is not None and lease.private is not None and s.lease_id in self.credentials:
                adopted.append(sid)
        if adopted:
            box = self.plugin.pool.outbox.get(host, [])
            box[:] = [c for c in box if not (isinstance(c, StartSlice) and c.slice_id in adopted)]
            logger.info("flexlab: host %s: private workers of %s adopted after a restart", host, adopted)
        return adopted

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """An agent's command dict with what a private lease's worker needs: a start gets
        the credentials, a stop says whether the lease ended (its owner's futures then
        fail) or will come back (preempted, its host lost). A stop of a slice whose lease
        the pool does not know (any more: a restarted scheduler) counts as ended; the agent
        reads the flag only for private workers."""
        lease_id = str(cmd.get("lease_id") or cmd.get("slice_id"))
        if cmd["op"] == "stop":
            lease = self.plugin.pool.leases.get(lease_id)
            ended = lease is None or lease.state in ENDED
            out = {**cmd, "lease_ended": ended}
            if lease is not None and ended:
                out["reason"] = f"it {lease.state}: {lease.reason}"
            elif lease is None:
                out["reason"] = f"the pool does not know lease {lease_id} ({cmd.get('reason', '')})"
            return out
        creds = self.credentials.get(lease_id)
        if creds is not None and cmd["op"] == "start":
            return {**cmd, "private": dict(creds)}
        return cmd

    def prune(self) -> None:
        """Forget the credentials of leases that ended (their stop commands went out)."""
        for lid in [x for x in self.credentials if self._ended(x)]:
            del self.credentials[lid]

    def _ended(self, lease_id: str) -> bool:
        lease = self.plugin.pool.leases.get(lease_id)
        return lease is None or lease.state in ENDED

    def handlers(self) -> dict[str, Any]:
        return {
            "flexlab_agent_private_started": self.handle_started,
            "flexlab_agent_private_lost": self.handle_lost,
            "flexlab_agent_private_telemetry": self.handle_telemetry,
        }

    def _slice(self, host: object, slice_id: object) -> Any:
        """The private lease's slice ``slice_id`` on ``host``, or None (stopped, moved)."""
        if not isinstance(host, str) or not isinstance(slice_id, str):
            raise InvalidRequest(
                "host, slice_id", f"{type(host).__name__}, {type(slice_id).__name__}", "strings"
            )
        s = self.plugin.pool.slices.get(slice_id)
        if s is None or s.host != host or s.lease_id is None:
            return None
        lease = self.plugin.pool.leases.get(s.lease_id)
        return s if lease is not None and lease.private is not None else None

    def handle_started(self, host: str, slice_id: str, worker: str) -> dict[str, Any]:
        """The agent of ``host`` saw the private worker of ``slice_id`` join its owner's
        scheduler at ``worker``: the lease is active."""
        s = self._slice(host, slice_id)
        if not isinstance(worker, str) or not worker:
            raise InvalidRequest("worker", type(worker).__name__, "the worker's address")
        self.plugin._agents[host] = time.time()
        if s is None:
            return {"status": "OK", "known": False}  # its stop command is on its way
        self.plugin.pool.slice_ready(slice_id, worker)
        self.plugin._notify(s.owner, f"private lease {s.lease_id} is ready on {', '.join(s.devices)}")
        self.plugin._persist()
        return {"status": "OK", "known": True}

    def handle_lost(self, host: str, slice_id: str, reason: str = "", started: bool = True) -> dict[str, Any]:
        """The private worker of ``slice_id`` exited by itself. One that had started is
        handled like a lease worker that died: the lease is placed again and gets a new
        worker. One that never joined its owner's scheduler (unreachable, refused) ends
        the lease with the reason, since a new worker would fail alike."""
        s = self._slice(host, slice_id)
        if s is None:
            return {"status": "OK", "known": False}
        why = str(reason)[:500] if isinstance(reason, str) else ""
        lease_id = str(s.lease_id)
        if started and s.worker is not None:
            self.plugin.pool.worker_lost(s.worker)
            self.plugin._notify(
                s.owner, f"private lease {lease_id}: its worker was lost ({why}); placing it again"
            )
        else:
            self.plugin.pool.release_lease(
                lease_id,
                None,
                reason=f"its private worker could not start or join its owner's scheduler: {why}",
            )
            self.plugin._notify(s.owner, f"private lease {lease_id} ended: its worker could not join ({why})")
        self.plugin._flush_commands()
        self.plugin._persist()
        self.prune()
        return {"status": "OK", "known": True}

    def handle_telemetry(
        self, host: str, slice_id: str, utilisation: float = 0.0, memory_used_mib: int = 0
    ) -> dict[str, Any]:
        """A private worker's sample, relayed by its agent (the worker reports to its
        owner's scheduler, not the pool's)."""
        if self._slice(host, slice_id) is None:
            return {"status": "OK", "known": False}
        ok = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in (utilisation, memory_used_mib)
        )
        if ok:
            self.plugin.handle_telemetry(
                worker=f"agent of {host}",
                slice=slice_id,
                utilisation=utilisation,
                memory_used_mib=memory_used_mib,
            )
        return {"status": "OK", "known": True}


__all__ = ["FIELDS", "PrivateLeases", "check_private"]
