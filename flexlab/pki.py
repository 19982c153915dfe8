"""The certificates of flexlab's TLS, made with the ``cryptography`` library (one place).

A CA (ECDSA P-256, may sign end certificates only) and, signed by it, a certificate per role
of a Dask cluster: ``client`` for client use only, every other role (scheduler, agent,
worker) for client and server use with the cluster's addresses and names as SANs. Used by
``flexlab certs`` (the pool's CA, whose key the operator keeps) and by the private
schedulers of ``flexlab.private`` (a CA per scheduler, whose key is dropped at once).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import Any


def _key() -> Any:
    """An ECDSA P-256 key (every certificate here is signed with SHA-256)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def key_usage(*, ca: bool) -> Any:
    """KeyUsage of a CA (sign certificates) or of an end certificate (TLS with ECDHE)."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def san_entries(hosts: Sequence[str]) -> list[Any]:
    """``hosts`` as subject alternative names: an IP address where it parses as one, else a
    DNS name (lower-cased). Validating names is the caller's job."""
    from cryptography import x509

    out: list[Any] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            out.append(x509.DNSName(host.lower()))
    return out


def new_ca(name: str, start: datetime.datetime, until: datetime.datetime) -> tuple[Any, Any]:
    """A self-signed CA named ``name`` (organisation ``name``, common name ``name CA``):
    ``(key, certificate)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: Any,
    ca_cert: Any,
    role: str,
    sans: list[Any],
    start: datetime.datetime,
    until: datetime.datetime,
) -> tuple[Any, Any]:
    """A certificate for ``role`` signed by the CA: ``(key, certificate)``. ``client`` is for
    client use only and carries no SANs; any other role is for both, with ``sans``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:  # a CA made by another tool
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    orgs = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    org = str(orgs[0].value) if orgs else "flexlab pool"
    key = _key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role != "client":  # the scheduler, agents and workers also accept connections
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"flexlab {role}"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if role != "client":
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def pem_cert(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def pem_key(key: Any) -> bytes:
    """The private key, PKCS#8 PEM, unencrypted (the file's mode protects it)."""
    from cryptography.hazmat.primitives import serialization

    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
