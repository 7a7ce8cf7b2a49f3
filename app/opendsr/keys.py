"""The processor's signing key and certificate, and the OpenDSR signature headers.

`X-OpenDSR-Signature` is the base64 of a signature over the exact response (or callback)
body bytes, made with the key whose certificate is served at the discovery's
`processor_certificate` URL:

* an EC P-256 key (the default) signs with ECDSA over SHA-256 (DER-encoded signature);
* an RSA key signs with RSA-PSS, SHA-256, MGF1-SHA-256 and a 32-byte salt.

Both are FIPS 186-4 schemes, as the spec asks. `verify()` checks either. Production must
configure LETHE_OPENDSR_KEY_PATH and LETHE_OPENDSR_CERTIFICATE_PATH (a certificate from a
trusted CA for LETHE_OPENDSR_PROCESSOR_DOMAIN); elsewhere a self-signed pair is generated
once under `<data_dir>/opendsr/` and reused.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from app.core.config import Settings

DOMAIN_HEADER = "X-OpenDSR-Processor-Domain"
SIGNATURE_HEADER = "X-OpenDSR-Signature"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate_pem: bytes

    def sign(self, body: bytes) -> str:
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            raw = key.sign(body, ec.ECDSA(hashes.SHA256()))
        else:
            raw = key.sign(body, _PSS, hashes.SHA256())
        return base64.b64encode(raw).decode()


def verify(certificate_pem: bytes, body: bytes, signature_b64: str) -> bool:
    """Whether `signature_b64` is the certificate's key's signature over `body`."""
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, body, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, body, _PSS, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _generate(directory: Path, domain: str) -> None:
    """Write a self-signed pair into `directory` atomically (a racing process keeps its own
    only if it renamed first; the loser's pair is discarded)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".opendsr-", dir=directory.parent))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(tmp / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    try:
        os.rename(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=8)
def _load(key_path: Path, cert_path: Path) -> SigningKey:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise RuntimeError(f"{key_path}: the OpenDSR key must be an EC or RSA private key")
    cert_pem = cert_path.read_bytes()
    x509.load_pem_x509_certificate(cert_pem)
    return SigningKey(key, cert_pem)


def signing_key(settings: Settings) -> SigningKey:
    if settings.opendsr_key_path and settings.opendsr_certificate_path:
        return _load(
            settings.opendsr_key_path.resolve(), settings.opendsr_certificate_path.resolve()
        )
    if settings.env == "production":
        raise RuntimeError(
            "set LETHE_OPENDSR_KEY_PATH and LETHE_OPENDSR_CERTIFICATE_PATH: OpenDSR forbids "
            "self-signed certificates in production"
        )
    directory = (settings.data_dir / "opendsr").resolve()
    if not (directory / "cert.pem").exists():
        _generate(directory, settings.opendsr_processor_domain)
    return _load(directory / "key.pem", directory / "cert.pem")


def signed_headers(settings: Settings, body: bytes) -> dict[str, str]:
    return {
        DOMAIN_HEADER: settings.opendsr_processor_domain,
        SIGNATURE_HEADER: signing_key(settings).sign(body),
    }
