"""The test TCP proxy (tests/support/tcp_proxy.py) in front of the real local PostgreSQL: it
forwards, cut() breaks open and new connections at once, heal() lets new ones through again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.postgres import SERVER
from tests.support.tcp_proxy import TcpProxy

# A cut must be noticed at once, not after a TCP or libpq timeout: far below the 10 s given here.
FAST_S = 2.0


def target() -> tuple[str, int]:
    """host, port of the test PostgreSQL (user@host:port)."""
    host, _, port = SERVER.rpartition("@")[2].rpartition(":")
    return host, int(port)


def dsn(proxy: TcpProxy) -> str:
    user = SERVER.partition("@")[0]
    return f"postgresql://{user}@{proxy.address}/postgres?connect_timeout=10"


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy(*target()) as forwarder:
        yield forwarder


def test_a_query_goes_through_the_proxy(proxy: TcpProxy) -> None:
    with psycopg.connect(dsn(proxy)) as connection:
        row = connection.execute("SELECT inet_server_port(), 40 + 2").fetchone()
    assert row is not None and row[1] == 42
    assert row[0] == target()[1]  # the far end is the real server, not something else
    assert proxy.accepted == 1


def test_cut_breaks_an_open_connection_and_refuses_new_ones_fast(proxy: TcpProxy) -> None:
    connection = psycopg.connect(dsn(proxy), autocommit=True)
    try:
        connection.execute("SELECT 1")
        assert proxy.open_connections() == 1
        proxy.cut()
        assert proxy.is_cut and proxy.open_connections() == 0
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
        assert time.monotonic() - started < FAST_S
    finally:
        connection.close()

    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn(proxy))
    assert time.monotonic() - started < FAST_S
    assert proxy.dropped >= 1


def test_heal_lets_a_new_connection_work_again(proxy: TcpProxy) -> None:
    proxy.cut()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn(proxy))
    proxy.heal()
    with psycopg.connect(dsn(proxy)) as connection:
        assert connection.execute("SELECT 7").fetchone() == (7,)


def test_close_stops_listening() -> None:
    proxy = TcpProxy(*target())
    with psycopg.connect(dsn(proxy)) as connection:
        connection.execute("SELECT 1")
    proxy.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn(proxy))
