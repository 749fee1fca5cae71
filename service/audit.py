"""The audit log: one JSON line per admin call, refused authentication, head publish or delete.

Lines go to the `transferd.audit` logger, which writes them bare (no timestamp prefix: each line
is one JSON object with its own `time`) to the server's log stream. Fields: time (UTC, ISO 8601),
event, tenant, key_id, peer, outcome, and the event's own details (the method, the head and
version, what a tenant deletion removed). Never a secret, its hash, or a request's inputs.

Refused authentications come from anyone on the network, so they are rate-limited per peer: the
first `BURST` of a peer in a `WINDOW_S` window are written, the rest only counted, and the count is
written as one `auth.refused.suppressed` line when the window ends. Peers are tracked in a bounded
table (`MAX_PEERS`): a flood from many addresses costs memory once, not per line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service import metrics

LOGGER_NAME = "transferd.audit"
#: Refused authentications of one peer written per window; the rest are counted.
BURST = 20
WINDOW_S = 60.0
#: Peers whose windows are tracked at once (the least recently refused ones are forgotten).
MAX_PEERS = 10_000

_log = logging.getLogger(LOGGER_NAME)


def configure(stream: Any = None) -> None:
    """Writes audit lines bare to `stream` (stderr by default), whatever the root logging does.

    Called once at start-up by the server's command line; tests read the lines from its log.
    """
    if any(getattr(h, "_transferd_audit", False) for h in _log.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._transferd_audit = True  # type: ignore[attr-defined]
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


def record(
    event: str, *, tenant: str = "", key_id: str = "", peer: str = "", outcome: str = "OK",
    **details: Any,
) -> None:  # fmt: skip
    """Writes one audit line (details must never hold a secret or an input)."""
    line = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "tenant": tenant,
        "key_id": key_id,
        "peer": peer,
        "outcome": outcome,
        **details,
    }
    _log.info(json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str))


@dataclass
class _Window:
    started: float
    refused: int = 0


class RefusalLimiter:
    """Per-peer (per address) windows of refused authentications: whether to write each one.

    Thread-safe (refusals are recorded on the event loop, but nothing here must assume it).
    """

    def __init__(
        self, burst: int = BURST, window_s: float = WINDOW_S, max_peers: int = MAX_PEERS
    ) -> None:
        self._burst = burst
        self._window_s = window_s
        self._max_peers = max_peers
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, peer: str, now: float | None = None) -> tuple[int, int]:
        """(this refusal's number in the peer's window, refusals suppressed in the peer's
        previous window when this refusal began a new one)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.get(peer)
            ended_suppressed = 0
            if window is None or now - window.started >= self._window_s:
                if window is not None:
                    ended_suppressed = max(0, window.refused - self._burst)
                window = _Window(started=now)
                self._windows[peer] = window
            self._windows.move_to_end(peer)
            while len(self._windows) > self._max_peers:
                self._windows.popitem(last=False)
            window.refused += 1
            return window.refused, ended_suppressed

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def window_s(self) -> float:
        return self._window_s


_refusals = RefusalLimiter()


def peer_host(peer: str) -> str:
    """`ipv4:10.0.0.7:51234` → `ipv4:10.0.0.7` (and `ipv6:[::1]:5` → `ipv6:[::1]`): a peer's
    connections each have a port of their own, so the rate is per address."""
    kind, _, address = peer.partition(":")
    if not address:
        return peer
    host, colon, port = address.rpartition(":")
    return f"{kind}:{host}" if colon and port.isdigit() else peer


def refused(reason: str, *, peer: str, method: str, key_id: str = "") -> None:
    """A refused authentication: counted by reason, written within the peer's rate."""
    metrics.AUTH_REFUSED.labels(reason=reason).inc()
    number, suppressed = _refusals.admit(peer_host(peer))
    if suppressed:
        record("auth.refused.suppressed", peer=peer, outcome="UNAUTHENTICATED", count=suppressed)
    if number <= _refusals.burst:
        record(
            "auth.refused", key_id=key_id, peer=peer, outcome="UNAUTHENTICATED",
            reason=reason, method=method,
        )  # fmt: skip
        return
    metrics.AUDIT_LINES_SUPPRESSED.inc()
    if number == _refusals.burst + 1:  # said once, so that a reader knows lines are missing
        record(
            "auth.refused.rate_limited", peer=peer, outcome="UNAUTHENTICATED",
            burst=_refusals.burst, window_s=_refusals.window_s,
        )  # fmt: skip
