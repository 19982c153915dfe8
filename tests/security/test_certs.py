"""``flexlab certs DIR``: what it writes, with which modes, and what it refuses."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from flexlab.cli import main
from flexlab.tls import CA_CERT, CA_KEY, ROLES, cert_file, key_file

ALL_FILES = sorted([CA_CERT, CA_KEY, *(cert_file(r) for r in ROLES), *(key_file(r) for r in ROLES)])


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writes_a_ca_and_every_role_with_private_keys_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tls"
    assert (
        main(["certs", str(folder), "--host", "10.0.0.5", "--host", "gpu-a.example.org", "--days", "30"]) == 0
    )
    assert sorted(p.name for p in folder.iterdir()) == ALL_FILES
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for p in folder.iterdir():
        want = 0o600 if p.name.endswith("-key.pem") else 0o644
        assert stat.S_IMODE(p.stat().st_mode) == want, p.name
    out = capsys.readouterr().out
    for name in ALL_FILES:  # it says what it wrote and who holds it
        assert name in out
    assert "never users" in out
    assert "offline" in out

    ca = load(folder / CA_CERT)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.datetime.now(datetime.timezone.utc)
    for role in ROLES:
        cert = load(folder / cert_file(role))
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        assert 29 <= (cert.not_valid_after_utc - now).days <= 30
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if role == "client":
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH}
            with pytest.raises(x509.ExtensionNotFound):
                cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        else:
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
            assert san.get_values_for_type(x509.DNSName) == ["gpu-a.example.org"]
        # OpenSSL, as Dask will use it, takes each certificate with its key and the CA
        ctx = ssl.create_default_context(cafile=str(folder / CA_CERT))
        ctx.load_cert_chain(folder / cert_file(role), folder / key_file(role))


def test_default_hosts_are_loopback(tmp_path: Path) -> None:
    assert main(["certs", str(tmp_path / "tls")]) == 0
    san = load(tmp_path / "tls" / "scheduler.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]


def test_an_existing_ca_is_kept_unless_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tls"
    assert main(["certs", str(folder)]) == 0
    before = snapshot(folder)
    capsys.readouterr()
    assert main(["certs", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "ca.pem is there" in err
    assert "--force" in err
    assert "Traceback" not in err
    assert snapshot(folder) == before
    assert main(["certs", str(folder), "--force"]) == 0
    after = snapshot(folder)
    assert sorted(after) == ALL_FILES
    assert all(after[name] != before[name] for name in ALL_FILES)  # a new CA and new keys


def test_renew_keeps_the_ca_and_writes_new_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "tls"
    assert main(["certs", str(folder), "--days", "30"]) == 0
    before = snapshot(folder)
    assert main(["certs", str(folder), "--renew", "--host", "10.0.0.9"]) == 0
    assert "new certificates signed by the pool CA" in capsys.readouterr().out
    after = snapshot(folder)
    assert (after[CA_CERT], after[CA_KEY]) == (before[CA_CERT], before[CA_KEY])
    ca = load(folder / CA_CERT)
    for role in ROLES:
        assert after[cert_file(role)] != before[cert_file(role)]
        assert after[key_file(role)] != before[key_file(role)]
        assert stat.S_IMODE((folder / key_file(role)).stat().st_mode) == 0o600
        cert = load(folder / cert_file(role))
        cert.verify_directly_issued_by(ca)
        assert (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days >= 364
        ctx = ssl.create_default_context(cafile=str(folder / CA_CERT))
        ctx.load_cert_chain(folder / cert_file(role), folder / key_file(role))
    san = load(folder / "agent.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.9")]


def test_renew_refuses_what_it_cannot_sign_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], other_tls: Path
) -> None:
    empty = tmp_path / "empty"
    assert main(["certs", str(empty), "--renew"]) == 2
    assert "ca-key.pem" in capsys.readouterr().err
    assert not empty.exists()
    folder = tmp_path / "tls"
    assert main(["certs", str(folder), "--days", "30", "--ca-days", "30"]) == 0
    before = snapshot(folder)
    capsys.readouterr()
    assert main(["certs", str(folder), "--renew", "--days", "60"]) == 2  # past the CA's end
    assert "until the CA expires" in capsys.readouterr().err
    assert main(["certs", str(folder), "--renew", "--force"]) == 2
    assert "not both" in capsys.readouterr().err
    (folder / CA_KEY).write_bytes((other_tls / CA_KEY).read_bytes())  # not this CA's key
    assert main(["certs", str(folder), "--renew"]) == 2
    assert "the key of ca.pem" in capsys.readouterr().err
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k != CA_KEY} == {k: v for k, v in before.items() if k != CA_KEY}


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--host", "bad host"], "--host"),
        (["--host", "a/b"], "--host"),
        (["--days", "0"], "--days"),
        (["--days", "400", "--ca-days", "100"], "--ca-days"),
    ],
    ids=["space-in-host", "slash-in-host", "zero-days", "ca-shorter-than-certs"],
)
def test_bad_input_names_the_option_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    folder = tmp_path / "tls"
    assert main(["certs", str(folder), *argv]) == 2
    err = capsys.readouterr().err
    assert f"invalid {field}" in err
    assert "allowed" in err
    assert not folder.exists()


def test_a_file_in_the_way_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tls"
    path.write_text("not a folder")
    assert main(["certs", str(path)]) == 2
    assert "a folder" in capsys.readouterr().err
    assert path.read_text() == "not a folder"
