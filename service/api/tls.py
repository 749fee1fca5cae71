"""TLS on the gRPC port: certificates from PEM files, re-read when the files change.

cert-manager (and any rotation by hand) rewrites the certificate files in place; gRPC asks for the
server's certificate configuration at each new handshake, and `TlsFiles.fetch` answers with a new
one once the files' contents changed, so rotation needs no restart and live connections keep the
certificate they started with. With a client CA, clients must present a certificate it signed
(mTLS).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class TlsSettingsError(Exception):
    """A TLS setting that cannot be used: the message names it."""


@dataclass(frozen=True)
class _Pem:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None

    def digest(self) -> str:
        parts = (self.cert_chain, self.private_key, self.client_ca or b"")
        return hashlib.sha256(b"\0".join(parts)).hexdigest()


class TlsFiles:
    """The server's certificate, key and optional client CA, read from their files.

    Raises (at construction):
        TlsSettingsError: a file cannot be read, naming its setting.
    """

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self._files = {
            "TRANSFERD_TLS_CERT_FILE": cert_file,
            "TRANSFERD_TLS_KEY_FILE": key_file,
        }
        if client_ca_file is not None:
            self._files["TRANSFERD_TLS_CLIENT_CA_FILE"] = client_ca_file
        self._current = self._read()
        self.mutual = client_ca_file is not None

    def _read(self) -> _Pem:
        contents: dict[str, bytes] = {}
        for setting, path in self._files.items():
            try:
                data = path.read_bytes()
            except OSError as error:
                raise TlsSettingsError(f"{setting}: cannot read {path}: {error.strerror}") from None
            if b"-----BEGIN " not in data:
                raise TlsSettingsError(f"{setting}: {path} holds no PEM block")
            contents[setting] = data
        return _Pem(
            contents["TRANSFERD_TLS_CERT_FILE"],
            contents["TRANSFERD_TLS_KEY_FILE"],
            contents.get("TRANSFERD_TLS_CLIENT_CA_FILE"),
        )

    def _configuration(self, pem: _Pem) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(pem.private_key, pem.cert_chain)], root_certificates=pem.client_ca
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that take new certificates from the files at the next handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._current),
            self.fetch,
            require_client_authentication=self.mutual,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since the last one, else None (keep it).

        A half-written rotation (unreadable, or a key that does not parse yet) keeps the last
        good certificate and is retried at the next handshake.
        """
        try:
            pem = self._read()
        except TlsSettingsError as error:
            log.warning("TLS certificates not reloaded, the current ones stay: %s", error)
            return None
        if pem.digest() == self._current.digest():
            return None
        log.info("TLS certificate files changed: new connections use the new certificate")
        self._current = pem
        return self._configuration(pem)
