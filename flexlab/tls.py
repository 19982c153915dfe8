"""The pool's TLS material: which files each part of a pool reads, and Dask ``Security`` from them.

``flexlab certs DIR`` writes one folder: the pool CA and a certificate and key per part
(``scheduler``, ``agent``, ``worker``, ``client``). Each part reads the files of its role
from the folder it is given (``--tls DIR``, ``$FLEXLAB_TLS`` or the dask config
``flexlab.tls``), so a machine needs only its own files and ``ca.pem``::

    from flexlab.tls import pool_security
    security = pool_security("/etc/flexlab/tls", client="client")
    Client("tls://10.0.0.5:8786", security=security)

Every connection is mutual TLS with ``require_encryption``: both ends show a certificate
signed by the pool CA, and nothing is sent in the clear. ``docs/security.md`` says what each
certificate allows (in Dask, any of them lets its holder run code on the scheduler).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from flexlab.core.errors import FlexlabError, InvalidRequest

#: The parts of a pool, each with a certificate and key of its own.
ROLES = ("scheduler", "agent", "worker", "client")
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
#: Environment variable with the TLS folder (set by ``flexlab lab`` and ``flexlab dashboard``
#: for the processes they start).
TLS_ENV = "FLEXLAB_TLS"


def cert_file(role: str) -> str:
    return f"{role}.pem"


def key_file(role: str) -> str:
    return f"{role}-key.pem"


class InsecureListen(FlexlabError):
    """A pool part would listen beyond loopback with no TLS and no explicit ``--insecure``."""


def tls_dir(explicit: str | None = None) -> str | None:
    """The TLS folder to use: ``explicit``, else ``$FLEXLAB_TLS``, else the dask config
    ``flexlab.tls``; None when none is set (plain ``tcp://``)."""
    if explicit:
        return explicit
    env = os.environ.get(TLS_ENV)
    if env:
        return env
    import dask.config

    configured = dask.config.get("flexlab.tls", default="")
    return str(configured) if configured else None


def role_files(directory: str, role: str) -> tuple[str, str, str]:
    """(CA certificate, certificate, key) of ``role`` in ``directory``; raises
    ``InvalidRequest`` naming the missing file and where it comes from."""
    if role not in ROLES:
        raise InvalidRequest("TLS role", role, ", ".join(ROLES))
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidRequest("--tls", directory, "a folder written by `flexlab certs DIR`")
    paths = [folder / CA_CERT, folder / cert_file(role), folder / key_file(role)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InvalidRequest(
            "--tls",
            directory,
            f"a folder holding {', '.join(p.name for p in paths)} (missing: {', '.join(missing)}; "
            "`flexlab certs DIR` writes them, copy the ones of this part of the pool)",
        )
    return str(paths[0]), str(paths[1]), str(paths[2])


def pool_security(
    directory: str,
    *,
    scheduler: str | None = None,
    worker: str | None = None,
    client: str | None = None,
) -> Any:
    """A ``distributed.Security`` that requires mutual TLS with the pool CA of ``directory``.

    Each keyword names the flexlab role whose certificate Dask's role of that name uses: a
    host agent connects with ``client="agent"``, its in-process slice workers with
    ``worker="worker"``. A role left out has no certificate (it cannot connect).
    """
    from distributed import Security

    kwargs: dict[str, str] = {}
    ca = ""
    for dask_role, role in (("scheduler", scheduler), ("worker", worker), ("client", client)):
        if role is None:
            continue
        ca, cert, key = role_files(directory, role)
        kwargs[f"tls_{dask_role}_cert"] = cert
        kwargs[f"tls_{dask_role}_key"] = key
    if not ca:
        raise InvalidRequest("TLS roles", None, "at least one of scheduler, worker, client")
    return Security(tls_ca_file=ca, require_encryption=True, **kwargs)


def client_security(tls: str | None = None) -> Any:
    """The trusted client's ``Security`` (:func:`tls_dir` resolves ``tls``), or None without TLS."""
    directory = tls_dir(tls)
    return pool_security(directory, client="client") if directory else None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches only this machine (127.0.0.0/8, ::1, localhost).

    An empty host, a wildcard or any name other than ``localhost`` counts as beyond loopback.
    """
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_listen(what: str, host: str, *, tls: bool, insecure: bool) -> str | None:
    """Refuse a listener beyond loopback without TLS unless ``insecure``; returns the warning
    to print once when the operator chose ``--insecure``, else None.

    Dask lets whoever holds a connection run code on the scheduler and its workers, so a
    plain ``tcp://`` listener on a network hands every GPU host to that network.
    """
    if tls or is_loopback(host):
        return None
    if not insecure:
        raise InsecureListen(
            f"refusing to listen on {host or 'every interface'} ({what}) without TLS: anyone who can "
            "reach it can run code on the scheduler and on every worker. Make certificates with "
            "`flexlab certs DIR` and pass --tls DIR, listen on 127.0.0.1, or pass --insecure on a "
            "network you trust (docs/security.md)"
        )
    return (
        f"flexlab: warning: {what} listens on {host or 'every interface'} without TLS (--insecure): "
        "anyone who can reach it can run code on the scheduler and on every worker"
    )


def pool_address(address: str, *, tls: bool) -> str:
    """``address`` with the scheme TLS asks for: ``host:port`` gets ``tls://`` or ``tcp://``;
    a scheme that contradicts ``tls`` raises ``InvalidRequest`` (the connection would fail
    with a less helpful message)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return f"{'tls' if tls else 'tcp'}://{address}"
    if tls and scheme != "tls":
        raise InvalidRequest(
            "scheduler address",
            address,
            f"tls://{rest} (a TLS folder is set: --tls, ${TLS_ENV} or flexlab.tls)",
        )
    if not tls and scheme == "tls":
        raise InvalidRequest(
            "--tls",
            None,
            f"the pool's TLS folder (--tls DIR, ${TLS_ENV}, the dask config flexlab.tls, or "
            f"FlexlabJupyter.tls_dir in a Jupyter server): {address} uses TLS",
        )
    return address


def client_address(address: str, folder: str | None) -> str:
    """:func:`pool_address` for a client with the TLS folder ``folder`` (or none). Without one,
    a ``tls://`` address is left to Dask's own TLS settings when they name a CA
    (``distributed.comm.tls.ca-file``); otherwise it is refused with what to do."""
    if folder:
        return pool_address(address, tls=True)
    import dask.config

    if address.startswith("tls://") and dask.config.get("distributed.comm.tls.ca-file", None):
        return address
    return pool_address(address, tls=False)
