"""TLS on the gRPC port, with certificates made by the test (openssl): TLS and mTLS, a rotation
of the certificate files while serving, settings that cannot work, and the warning of a
plaintext port bound beyond loopback."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devtools.launcher import ServerProcess, health_status
from service.metrics_port import LIVE_PATH, READY_PATH
from tests.integration.cli_runner import transferd
from tests.integration.conftest import server_process, text_request, vectors
from transferd.v1 import embedding_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> None:
    """A self-signed CA: name.key, name.pem."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=folder)  # fmt: skip


def _signed(folder: Path, name: str, ca: str, server: bool) -> None:
    """name.key and name.pem, signed by `ca`; a server's for 127.0.0.1 and localhost."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=folder)  # fmt: skip
    usage = "serverAuth" if server else "clientAuth"
    extensions = folder / f"{name}.ext"
    extensions.write_text(
        f"extendedKeyUsage={usage}\n"
        + ("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "")
    )
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", extensions,
             cwd=folder)  # fmt: skip


def _credentials(folder: Path, ca: str, client: str | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(folder / f"{ca}.pem").read_bytes(),
        private_key=None if client is None else (folder / f"{client}.key").read_bytes(),
        certificate_chain=None if client is None else (folder / f"{client}.pem").read_bytes(),
    )


def _reflected_services(address: str, credentials: grpc.ChannelCredentials) -> set[str]:
    """The services that reflection lists over a TLS channel."""
    with grpc.secure_channel(address, credentials) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return {service.name for service in reply.list_services_response.service}


def _health(address: str, credentials: grpc.ChannelCredentials | None) -> int | None:
    # A channel of its own each time: a new connection, so a new handshake.
    options = [("grpc.use_local_subchannel_pool", 1)]
    make = (
        grpc.insecure_channel(address, options=options)
        if credentials is None
        else grpc.secure_channel(address, credentials, options=options)
    )
    with make as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


def _tls_server(
    tmp_path: Path, repo: Path, certs: Path, credentials: grpc.ChannelCredentials, mutual: bool
) -> ServerProcess:
    env = {
        "TRANSFERD_TLS_CERT_FILE": str(certs / "server.pem"),
        "TRANSFERD_TLS_KEY_FILE": str(certs / "server.key"),
    }
    if mutual:
        env["TRANSFERD_TLS_CLIENT_CA_FILE"] = str(certs / "ca.pem")
    process = server_process(tmp_path, repo, **env)
    process.credentials = credentials
    return process.start()


def test_mtls_refuses_plaintext_and_clients_without_a_certificate_and_follows_rotation(
    tmp_path: Path, minilm_repo: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _ca(certs, "ca")
    _signed(certs, "server", "ca", server=True)
    _signed(certs, "client", "ca", server=False)
    trusted = _credentials(certs, "ca", client="client")
    server = _tls_server(tmp_path, minilm_repo, certs, trusted, mutual=True)
    try:
        assert _health(server.address, trusted) == SERVING
        assert _health(server.address, None) is None  # plaintext
        assert _health(server.address, _credentials(certs, "ca")) is None  # no certificate
        assert "transferd.v1.HeadService" in _reflected_services(server.address, trusted)
        # What Kubernetes probes (deploy/): the metrics port, plain HTTP, no certificate.
        for path in (READY_PATH, LIVE_PATH):
            url = f"http://127.0.0.1:{server.metrics_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as reply:
                assert reply.status == 200, path
        key = server.create_tenant_key("acme")  # the admin calls over mTLS
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.secure_channel(server.address, trusted, options=options) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            reply = stub.Embed(
                text_request(["over TLS"]), metadata=(("authorization", f"Bearer {key}"),)
            )
            assert vectors(reply).shape == (1, 384)
        # The command line, with its TLS flags.
        listed = transferd("heads", "list", "--json", "--tls-ca-file", certs / "ca.pem",
                           "--tls-cert-file", certs / "client.pem", "--tls-key-file",
                           certs / "client.key", url=server.address, key=key)  # fmt: skip
        assert listed.code == 0 and listed.out == "", listed

        # Rotation: a certificate of another CA written over the files while serving.
        _ca(certs, "ca2")
        _signed(certs, "next", "ca2", server=True)
        (certs / "server.key").write_bytes((certs / "next.key").read_bytes())
        (certs / "server.pem").write_bytes((certs / "next.pem").read_bytes())
        rotated = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca2.pem").read_bytes(),
            private_key=(certs / "client.key").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes(),
        )
        assert _health(server.address, rotated) == SERVING  # new connections: the new one
        assert _health(server.address, trusted) is None  # the old CA no longer vouches for it
    finally:
        server.stop()
    assert "TLS certificate files changed" in (tmp_path / "server.log").read_text()


def test_tls_without_client_certificates(tmp_path: Path, minilm_repo: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _ca(certs, "ca")
    _signed(certs, "server", "ca", server=True)
    server = _tls_server(tmp_path, minilm_repo, certs, _credentials(certs, "ca"), mutual=False)
    try:
        assert _health(server.address, _credentials(certs, "ca")) == SERVING
        assert _health(server.address, None) is None
    finally:
        server.stop()
    assert "in plaintext" not in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize(
    ("env", "wording"),
    [
        (
            {"TRANSFERD_TLS_CERT_FILE": "{certs}/server.pem"},
            "tls_cert_file is set but tls_key_file",
        ),
        ({"TRANSFERD_TLS_KEY_FILE": "{certs}/server.key"}, "tls_key_file is set but tls_cert_file"),
        ({"TRANSFERD_TLS_CLIENT_CA_FILE": "{certs}/ca.pem"}, "tls_client_ca_file needs"),
        (
            {
                "TRANSFERD_TLS_CERT_FILE": "{certs}/absent.pem",
                "TRANSFERD_TLS_KEY_FILE": "{certs}/server.key",
            },
            "TRANSFERD_TLS_CERT_FILE: cannot read",
        ),
        (
            {
                "TRANSFERD_TLS_CERT_FILE": "{certs}/server.pem",
                "TRANSFERD_TLS_KEY_FILE": "{certs}/server.csr.txt",
            },
            "TRANSFERD_TLS_KEY_FILE:",
        ),
    ],
)
def test_tls_settings_that_cannot_work_stop_start_up_naming_them(
    tmp_path: Path, minilm_repo: Path, env: dict[str, str], wording: str
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _ca(certs, "ca")
    _signed(certs, "server", "ca", server=True)
    (certs / "server.csr.txt").write_text("not a key\n")
    process = server_process(
        tmp_path, minilm_repo, **{k: v.format(certs=certs) for k, v in env.items()}
    )
    with pytest.raises(RuntimeError, match="server exited with 1"):
        process.start()
    log = (tmp_path / "server.log").read_text()
    assert wording in log and "Traceback" not in log


def test_a_plaintext_port_beyond_loopback_is_warned_of(tmp_path: Path, minilm_repo: Path) -> None:
    process = server_process(tmp_path, minilm_repo, TRANSFERD_GRPC_HOST="0.0.0.0")
    process.start()
    try:
        assert health_status(process.address) == SERVING
    finally:
        process.stop()
    assert (
        "in plaintext: API keys cross the network readable" in (tmp_path / "server.log").read_text()
    )
