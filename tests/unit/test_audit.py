"""The audit log's lines and its per-address rate limit on refused authentications."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service import audit


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The audit lines written during the test, with a fresh rate limiter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(audit.LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    monkeypatch.setattr(audit, "_refusals", audit.RefusalLimiter(burst=2, window_s=60))
    yield stream
    logger.removeHandler(handler)


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_the_common_fields_and_its_details(lines: io.StringIO) -> None:
    audit.record("admin.CreateTenant", tenant="acme", key_id="admin", peer="ipv4:1.2.3.4:5",
                 outcome="OK", extra=3)  # fmt: skip
    [line] = _events(lines)
    assert line["event"] == "admin.CreateTenant" and line["extra"] == 3
    assert {"time", "event", "tenant", "key_id", "peer", "outcome"} <= line.keys()
    assert line["time"].endswith("+00:00")


def test_refusals_are_limited_per_address_not_per_connection(lines: io.StringIO) -> None:
    for port in range(10):  # ten connections of one address
        audit.refused("unknown", peer=f"ipv4:10.0.0.1:{5000 + port}", method="M")
    audit.refused("missing", peer="ipv6:[::1]:7000", method="M")  # another address: its own rate
    events = [line["event"] for line in _events(lines)]
    assert events == [
        "auth.refused", "auth.refused", "auth.refused.rate_limited", "auth.refused",
    ]  # fmt: skip


def test_the_suppressed_count_is_written_when_the_next_window_begins() -> None:
    limiter = audit.RefusalLimiter(burst=2, window_s=10)
    numbers = [limiter.admit("a", now=t) for t in (0, 1, 2, 3, 4)]
    assert numbers == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]
    assert limiter.admit("a", now=11) == (1, 3)  # 5 in the last window, 2 of them written


def test_the_table_of_peers_is_bounded() -> None:
    limiter = audit.RefusalLimiter(burst=1, window_s=60, max_peers=3)
    for peer in "abcde":
        limiter.admit(peer, now=0)
    assert limiter.admit("a", now=1) == (1, 0)  # forgotten, so counted afresh


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:5", "ipv6:[::1]"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
        ("", ""),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert audit.peer_host(peer) == host
