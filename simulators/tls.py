"""A local certificate authority for the HTTPS simulators, and client certificates for Entra.

The CA lives in a directory (``ca.pem`` + ``ca-key.pem``, mode 0600) and is reused across runs so
clients can keep pointing at the same CA bundle. Server leaf certificates are issued fresh for each
SSL context and never written to disk except transiently for ``load_cert_chain``.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.files import write_private

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
_CA_LIFETIME = timedelta(days=3650)
_LEAF_LIFETIME = timedelta(days=365)
_CLIENT_LIFETIME = timedelta(days=730)
# Backdated so a slightly skewed peer clock does not reject a just-issued certificate.
_BACKDATE = timedelta(hours=1)


@dataclass(frozen=True)
class LocalCA:
    ca_file: Path
    key_file: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True)
class ClientCertificate:
    """A self-signed certificate for certificate-credential auth (MSAL ``client_credential``)."""

    pem_path: Path
    cert_pem: bytes
    thumbprint_sha1_hex: str
    private_key_pem: bytes = field(repr=False)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two processes (e.g. both simulators) may create the CA at the same moment.
    with open(directory / ".ca.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_or_create_local_ca(directory: Path) -> LocalCA:
    """Load ``ca.pem``/``ca-key.pem`` from ``directory``, creating them if absent."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, key_file = directory / CA_CERT_NAME, directory / CA_KEY_NAME
    with _locked(directory):
        if ca_file.is_file() and key_file.is_file():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_file} is not an EC private key")
            return LocalCA(ca_file, key_file, x509.load_pem_x509_certificate(ca_file.read_bytes()), key)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        name = _name("Yeastar-Entra simulators local CA")
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_file, _key_pem(key))
        write_private(ca_file, cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(ca_file, 0o644)
        return LocalCA(ca_file, key_file, cert, key)


def _san(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def server_ssl_context(ca: LocalCA, hostnames: Sequence[str] = ("localhost", "127.0.0.1")) -> ssl.SSLContext:
    """A server context with a fresh leaf certificate signed by ``ca`` for ``hostnames``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LEAF_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hostnames]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain only reads files: use a private temporary directory, removed at once.
    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "server.pem"
        write_private(chain, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(chain)
    return context


def create_client_certificate(directory: Path, common_name: str) -> ClientCertificate:
    """A self-signed RSA-2048 certificate; ``{common_name}.pem`` holds the private key and the cert."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CLIENT_LIFETIME)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = _key_pem(key)
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in common_name)
    pem_path = directory / f"{safe_name}.pem"
    write_private(pem_path, key_pem + cert_pem)
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ClientCertificate(pem_path, cert_pem, thumbprint, key_pem)
