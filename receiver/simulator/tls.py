"""A test CA and a loopback server certificate, made with `cryptography`.

`ensure_tls(tls_dir)` loads the CA and server certificate from `tls_dir` when they are there,
so a restarted simulator keeps the CA its clients already trust; otherwise it makes them.
Keys are ECDSA P-256 (fast to make); clients verify them with the CA bundle as usual.
`make_client_certificate` makes the RSA certificate an app registers for client assertions.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class TlsFiles:
    """Paths uvicorn and clients need: the CA bundle, the server chain and its key."""

    ca_path: Path
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class ClientCertificate:
    """An app credential: PEM private key and certificate, SHA-1 and SHA-256 thumbprints (hex)."""

    private_key_pem: str
    certificate_pem: str
    thumbprint_sha1: str
    thumbprint_sha256: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Graph simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: CertificatePublicKeyTypes
) -> x509.CertificateBuilder:
    """A certificate of `key` with a random serial, valid from an hour ago for VALIDITY."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
    )


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Graph simulator test CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
    cert = (
        _builder(_name("localhost"), ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _still_valid(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def ensure_tls(tls_dir: Path) -> TlsFiles:
    """Load the CA and server certificate from `tls_dir`, making what is missing or expired."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_path=tls_dir / CA_FILE,
        cert_path=tls_dir / SERVER_CERT_FILE,
        key_path=tls_dir / SERVER_KEY_FILE,
    )
    ca_key_path = tls_dir / CA_KEY_FILE
    if files.ca_path.exists() and ca_key_path.exists() and _still_valid(files.ca_path):
        ca_cert = x509.load_pem_x509_certificate(files.ca_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path}: expected an EC private key")
        ca_key = loaded
    else:
        ca_cert, ca_key = _make_ca()
        ca_key_path.write_bytes(_pem_key(ca_key))
        ca_key_path.chmod(0o600)
        files.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        files.cert_path.unlink(missing_ok=True)
    if not (files.cert_path.exists() and files.key_path.exists()) or not _still_valid(
        files.cert_path
    ):
        cert, key = _make_server_cert(ca_cert, ca_key)
        files.key_path.write_bytes(_pem_key(key))
        files.key_path.chmod(0o600)
        files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def write_ca_bundle(files: TlsFiles, destination: Path) -> Path:
    """Copy the CA certificate (PEM) to where a client wants it (`--ca-out`)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(files.ca_path.read_bytes())
    return destination


def certificate_thumbprints(certificate_pem: str) -> tuple[str, str]:
    """SHA-1 and SHA-256 thumbprints (lower-case hex) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return cert.fingerprint(hashes.SHA1()).hex(), cert.fingerprint(hashes.SHA256()).hex()  # noqa: S303


def make_client_certificate(common_name: str = "graph-alert-receiver") -> ClientCertificate:
    """A self-signed RSA 2048 certificate, as an app registers for certificate credentials."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name(common_name)
    cert = _builder(name, name, key.public_key()).sign(key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    sha1, sha256 = certificate_thumbprints(cert_pem)
    return ClientCertificate(
        private_key_pem=_pem_key(key).decode(),
        certificate_pem=cert_pem,
        thumbprint_sha1=sha1,
        thumbprint_sha256=sha256,
    )
