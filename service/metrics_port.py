"""The metrics port: Prometheus metrics, and the server's health over plain HTTP.

Kubernetes' gRPC probes speak no TLS, so a gateway serving gRPC with TLS cannot be probed on its
gRPC port. The metrics port stays plain HTTP whatever the gRPC port does, and answers the same
questions as gRPC health:

- `READY_PATH` (/readyz): 200 while the server reports SERVING (backbones loaded and ready, the
  database file intact, not draining), else 503: exactly what gRPC health answers for "".
- `LIVE_PATH` (/livez): 200 while the event loop runs callbacks within `LIVENESS_TIMEOUT_S`,
  whatever the backbones do (restarting a gateway would not bring Triton back), else 503: what
  gRPC health answers for the "liveness" service, which the loop answers too.
- every other path: the Prometheus metrics (as prometheus-client serves them).

The server runs in threads of its own, off the event loop, like prometheus-client's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from service.metrics import MetricsPortError

log = logging.getLogger(__name__)

READY_PATH = "/readyz"
LIVE_PATH = "/livez"
#: How long the event loop may take to run a callback before /livez answers 503 (within the
#: probe's timeoutSeconds in deploy/gateway.yaml).
LIVENESS_TIMEOUT_S = 1.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Health:
    """The answers of /readyz and /livez.

    Args:
        ready: Whether the server reports SERVING now (read from the HTTP threads: a flag).
        loop: The server's event loop, whose liveness /livez checks.
        timeout_s: How long /livez waits for the loop.
    """

    def __init__(
        self,
        ready: Callable[[], bool],
        loop: asyncio.AbstractEventLoop,
        timeout_s: float = LIVENESS_TIMEOUT_S,
    ) -> None:
        self._ready = ready
        self._loop = loop
        self._timeout_s = timeout_s

    def ready(self) -> bool:
        return self._ready()

    def live(self) -> bool:
        """Whether the event loop runs a callback within the timeout (called off the loop)."""
        ran = threading.Event()
        try:
            self._loop.call_soon_threadsafe(ran.set)
        except RuntimeError:  # the loop is closed
            return False
        return ran.wait(self._timeout_s)


def health_app(health: Health, metrics_app: Callable[..., Iterable[bytes]]) -> Callable[..., Any]:
    """A WSGI app: /readyz and /livez from `health`, every other path `metrics_app`."""
    checks = {READY_PATH: ("ready", health.ready), LIVE_PATH: ("live", health.live)}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics_app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        name, holds = check
        ok = holds()
        body = f"{name}\n".encode() if ok else f"not {name}\n".encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per request: probes and scrapes come every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # A slow scrape never holds a probe, and finished threads are not kept for a join.
    daemon_threads = True


class MetricsPort:
    """The metrics port, serving in a thread until `close`."""

    def __init__(self, server: WSGIServer) -> None:
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-port", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stops serving and frees the port (blocks up to half a second: call off the loop)."""
        self._server.shutdown()
        self._server.server_close()


def start_metrics_port(port: int, host: str, health: Health) -> MetricsPort | None:
    """Serves metrics and health on `host:port` (0: nothing is served, and None is returned).

    Raises:
        MetricsPortError: the port is taken or not allowed.
    """
    if not port:
        return None
    app = health_app(health, make_wsgi_app())
    try:
        # An IPv6 host needs an IPv6 socket (as prometheus-client and http.server choose it).
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(_ThreadingServer):
            address_family = family

        server = make_server(str(address[0]), port, app, Server, handler_class=_QuietHandler)
    except OSError as error:
        raise MetricsPortError(
            f"cannot serve metrics on {host}:{port} ({error.strerror or error}); give each "
            "replica on this host its own TRANSFERD_METRICS_PORT (0 turns metrics off)"
        ) from None
    return MetricsPort(server)
