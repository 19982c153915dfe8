"""``flexlab certs DIR``: a pool CA and the certificate and key of each part of a pool.

Writes, with the ``cryptography`` library, an ECDSA P-256 CA valid for ``--ca-days`` and,
signed by it, one certificate per role valid for ``--days``: ``scheduler``, ``agent`` and
``worker`` (server and client use, with the ``--host`` names and addresses as SANs) and
``client`` (client use only: operators, the Jupyter server extension, the dashboard).
Keys are written 0600, the folder 0700 when this command makes it. An existing CA is never
replaced without ``--force``::

    flexlab certs /etc/flexlab/tls --host 10.0.0.5 --host gpu-a.example.org
    flexlab up --host 10.0.0.5 --tls /etc/flexlab/tls
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexlab.core.errors import InvalidRequest
from flexlab.pki import issue, new_ca, pem_cert, pem_key, san_entries
from flexlab.tls import CA_CERT, CA_KEY, ROLES, cert_file, key_file

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")

#: Who should hold each file, printed after writing them.
HOLDERS: dict[str, str] = {
    CA_CERT: "every part of the pool (it is public)",
    CA_KEY: "the operator only, offline if you can (it signs new certificates)",
    "scheduler": "the machine that runs `flexlab up`",
    "agent": "every machine that runs `flexlab agent` (and `flexlab up` with its local agent)",
    "worker": "every machine that runs `flexlab agent` (its slice workers use it)",
    "client": "operators, the Jupyter server extension and the dashboard; never users",
}


@dataclass(frozen=True)
class Written:
    path: Path
    holder: str
    secret: bool


def _san_entries(hosts: Sequence[str]) -> list[Any]:
    for host in hosts:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if not _DNS_NAME.match(host):
                raise InvalidRequest(
                    "--host", host, "an IPv4 or IPv6 address or a DNS name such as gpu-a.example.org"
                ) from None
    return san_entries(hosts)


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pool_certs(
    directory: str | Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = 365,
    ca_days: int = 1825,
    force: bool = False,
    renew: bool = False,
    name: str = "flexlab pool",
) -> list[Written]:
    """Write the pool CA and every role's certificate and key into ``directory``.

    ``renew`` keeps the CA already there (``ca.pem`` and ``ca-key.pem``) and writes new role
    certificates and keys signed by it, so the parts of the pool need only their new files.
    Raises ``InvalidRequest`` (and writes nothing) for a bad host or validity, when the
    folder already holds a CA and neither ``force`` nor ``renew`` is on, or when ``renew``
    finds no CA, or one that expires before the new certificates would.
    """
    if not 1 <= days <= 3650:
        raise InvalidRequest("--days", days, "1 to 3650 days")
    if not days <= ca_days <= 7300:
        raise InvalidRequest("--ca-days", ca_days, f"{days} (--days) to 7300 days")
    if not hosts:
        raise InvalidRequest("--host", "none", "at least one address or DNS name")
    sans = _san_entries(hosts)
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise InvalidRequest("DIR", str(folder), "a folder (or a path where one can be made)")
    if force and renew:
        raise InvalidRequest("--renew", True, "--renew (keep the CA) or --force (a new CA), not both")
    if (folder / CA_CERT).exists() and not (force or renew):
        raise InvalidRequest(
            "DIR",
            str(folder),
            f"a folder without a pool CA ({CA_CERT} is there; --renew writes new certificates signed "
            "by it, --force makes a new CA, after which every part of the pool needs the new files)",
        )
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)  # clocks of the pool's machines drift a little
    if renew:
        ca_key, ca_cert = _load_ca(folder)
        if ca_cert.not_valid_after_utc < now + datetime.timedelta(days=days):
            raise InvalidRequest(
                "--days",
                days,
                f"at most until the CA expires ({ca_cert.not_valid_after_utc:%Y-%m-%d}); --force makes "
                "a new CA",
            )
        return _write_all(
            folder, _role_files(ca_key, ca_cert, sans, start, now + datetime.timedelta(days=days))
        )
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)

    ca_key, ca_cert = new_ca(name, start, now + datetime.timedelta(days=ca_days))
    files = [
        (CA_CERT, pem_cert(ca_cert), HOLDERS[CA_CERT], False),
        (CA_KEY, pem_key(ca_key), HOLDERS[CA_KEY], True),
    ]
    files += _role_files(ca_key, ca_cert, sans, start, now + datetime.timedelta(days=days))
    return _write_all(folder, files)


def _write_all(folder: Path, files: list[tuple[str, bytes, str, bool]]) -> list[Written]:
    written = []
    for fname, data, holder, secret in files:
        _write(folder / fname, data, secret=secret)
        written.append(Written(folder / fname, holder, secret))
    return written


def _load_ca(folder: Path) -> tuple[Any, Any]:
    """The CA key and certificate already in ``folder`` (for ``--renew``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    if not (cert_path.is_file() and key_path.is_file()):
        raise InvalidRequest(
            "--renew",
            str(folder),
            f"a folder holding the pool CA: {CA_CERT} and {CA_KEY} (flexlab certs DIR)",
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise InvalidRequest("--renew", str(folder), f"a readable PEM CA and key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise InvalidRequest("--renew", str(folder), f"{CA_KEY} that is the key of {CA_CERT}")
    return key, cert


def _role_files(
    ca_key: Any, ca_cert: Any, sans: list[Any], start: datetime.datetime, until: datetime.datetime
) -> list[tuple[str, bytes, str, bool]]:
    """Each role's certificate and key, signed by the CA."""
    files: list[tuple[str, bytes, str, bool]] = []
    for role in ROLES:
        key, cert = issue(ca_key, ca_cert, role, sans, start, until)
        files.append((cert_file(role), pem_cert(cert), HOLDERS[role], False))
        files.append((key_file(role), pem_key(key), HOLDERS[role], True))
    return files


def cmd_certs(args: argparse.Namespace) -> int:
    hosts = args.host or list(DEFAULT_HOSTS)
    written = write_pool_certs(
        args.dir, hosts, days=args.days, ca_days=args.ca_days, force=args.force, renew=args.renew
    )
    what = "new certificates signed by the pool CA" if args.renew else "a pool CA and certificates"
    print(f"flexlab certs: {what} for {', '.join(hosts)} in {args.dir}")
    width = max(len(w.path.name) for w in written)
    for w in written:
        mode = "0600" if w.secret else "0644"
        print(f"  {w.path.name:<{width}}  {mode}  {w.holder}")
    print(
        f"Scheduler: flexlab up --tls {args.dir} --host ADDRESS    "
        f"agents: flexlab agent tls://ADDRESS:8786 --tls DIR\n"
        "Each machine needs ca.pem and its own files only; docs/security.md explains the trust model."
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "certs",
        help="make a pool CA and the TLS certificates of the scheduler, agents, workers and clients",
        description="Write a pool CA and a certificate and key for each part of a pool into DIR, for "
        "mutual TLS on every connection (flexlab up/agent/status/lab/dashboard --tls DIR). Keys are "
        "written 0600. See docs/security.md.",
    )
    p.add_argument("dir", metavar="DIR", help="folder to write into (made 0700 if it does not exist)")
    p.add_argument(
        "--host",
        action="append",
        metavar="ADDRESS",
        help="an address or DNS name the scheduler, agents or workers are reached at, for the "
        "certificates' SANs (repeatable; default: 127.0.0.1 and localhost)",
    )
    p.add_argument("--days", type=int, default=365, help="validity of each part's certificate (default 365)")
    p.add_argument("--ca-days", type=int, default=1825, help="validity of the CA (default 1825, 5 years)")
    p.add_argument("--force", action="store_true", help="replace a CA already in DIR (and every certificate)")
    p.add_argument(
        "--renew",
        action="store_true",
        help="keep the CA in DIR and write new certificates and keys signed by it (before they expire)",
    )
    p.set_defaults(func=cmd_certs)
