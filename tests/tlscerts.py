"""
Real TLS certificates, made at test time.

The tests of TLS links need a certificate authority a client can be told
to trust (as an admin passes C{--tls-ca} on a private network) and server
certificates signed by it, for the right host name and for a wrong one.
Nothing is checked into the repository: keys are made fresh with
C{cryptography} for each test run, written as PEM files under a temporary
directory (so file-based options such as C{--tls-ca} can be tested too),
and handed to Twisted as L{CertificateOptions} for servers and a
L{Certificate} trust root for clients.

Keys are ECDSA P-256: as good as RSA for this and much faster to make.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate

#: How long certificates made here are valid, either side of now: wide
#: enough that a test run never sees one expire, whatever the clock says.
_VALIDITY = datetime.timedelta(days=2)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alt_name(name: str) -> x509.GeneralName:
    """
    A DNS name, or an IP address if C{name} is one: service_identity
    matches IP addresses only against C{iPAddress} entries.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class ServerCertificate:
    """
    A leaf certificate and its key, as PEM files and as Twisted objects.

    @ivar name: the host name (or IP address) the certificate is for.
    @ivar key_path: the PEM private key.
    @ivar cert_path: the PEM certificate.
    """

    name: str
    key_pem: bytes
    cert_pem: bytes
    key_path: Path
    cert_path: Path

    def private_certificate(self) -> PrivateCertificate:
        return PrivateCertificate.loadPEM(self.key_pem + self.cert_pem)

    def options(self) -> CertificateOptions:
        """
        Server-side TLS options (what C{transport.startTLS} takes after a
        STARTTLS, or what C{services.tls_context} holds).
        """
        return self.private_certificate().options()


@dataclass(frozen=True)
class CertificateAuthority:
    """
    A self-signed CA that issues server certificates.

    @ivar cert_path: the CA certificate as a PEM file: what a client is
        given as its trust root (C{--tls-ca}).
    """

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    directory: Path
    cert_path: Path

    def trust_root(self) -> Certificate:
        """
        The CA as a Twisted trust root, for C{optionsForClientTLS}.
        """
        return Certificate.loadPEM(_cert_pem(self.cert))

    def issue(self, name: str, file_stem: str | None = None) -> ServerCertificate:
        """
        A server certificate for C{name} (a DNS name or an IP address),
        signed by this CA, written next to it.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALIDITY)
            .not_valid_after(now + _VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName([_subject_alt_name(name)]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        stem = file_stem or name.replace(":", "_")
        key_path = self.directory / f"{stem}.key.pem"
        cert_path = self.directory / f"{stem}.cert.pem"
        key_pem, cert_pem = _key_pem(key), _cert_pem(cert)
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        cert_path.write_bytes(cert_pem)
        return ServerCertificate(name, key_pem, cert_pem, key_path, cert_path)


def make_ca(directory: Path, common_name: str = "fmtp test CA") -> CertificateAuthority:
    """
    Make a fresh CA, its certificate written to C{directory/ca.cert.pem}.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALIDITY)
        .not_valid_after(now + _VALIDITY)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "ca.cert.pem"
    cert_path.write_bytes(_cert_pem(cert))
    return CertificateAuthority(key, cert, directory, cert_path)
