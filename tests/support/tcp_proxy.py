"""A TCP forwarder the tests control: put it between servers and PostgreSQL, then cut and heal
the link at will to stage a database outage without touching the database itself.

`TcpProxy(host, port)` listens on a free loopback port and forwards every connection to
host:port. `cut()` closes every open connection (both sides see the link drop at once) and drops
each new one as soon as it is accepted; `heal()` forwards again. Threads, not asyncio, so that it
runs beside blocking test code and beside servers in other processes alike.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536


def _shut(sock: socket.socket) -> None:
    """Closes `sock` so that a thread blocked in recv() on it returns at once."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One forwarded connection: the client's socket and ours to the target."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream

    def close(self) -> None:
        _shut(self.client)
        _shut(self.upstream)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until cut or closed.

    Args:
        target_host: Where connections go.
        target_port: The target's port.
        connect_timeout: Seconds to reach the target before the client's connection is dropped.
    """

    def __init__(self, target_host: str, target_port: int, connect_timeout: float = 5.0) -> None:
        self.target = (target_host, target_port)
        self._connect_timeout = connect_timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._cut = False
        self._closed = False
        self.accepted = 0  # connections accepted while healed, for the tests' own checks
        self.dropped = 0  # connections dropped on arrival while cut
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        """host:port to connect to instead of the target."""
        return f"{self.host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Closes every open connection and drops new ones until `heal()`."""
        with self._lock:
            self._cut = True
            links, self._links = self._links, set()
        for link in links:
            link.close()

    def heal(self) -> None:
        """Forwards new connections again (the ones cut stay closed, as after a real outage)."""
        with self._lock:
            self._cut = False

    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def close(self) -> None:
        """Stops listening and closes every connection."""
        with self._lock:
            self._closed = True
        _shut(self._listener)
        self.cut()
        self._acceptor.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._closed:
                    _shut(client)
                    return
                refuse = self._cut
                if refuse:
                    self.dropped += 1
            if refuse:
                # Accepted and closed at once: the client's handshake fails immediately, as when
                # the database host is unreachable, rather than hanging until its own timeout.
                _shut(client)
                continue
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self._connect_timeout)
        except OSError:
            _shut(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream)
        with self._lock:
            if self._cut or self._closed:  # cut while we were connecting
                link.close()
                return
            self._links.add(link)
            self.accepted += 1
        threading.Thread(target=self._pump, args=(link, client, upstream), daemon=True).start()
        self._pump(link, upstream, client)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket) -> None:
        """Copies source to sink until either side ends; then ends both."""
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._links.discard(link)
        link.close()
