"""The LRU of loaded heads, bounded by estimated bytes as well as by count.

A count alone does not bound memory: a 3,000-example knn head holds its training set and costs
tens of MB once loaded, a logistic regression a few KB.
"""

from __future__ import annotations

from collections import OrderedDict

from heads import LoadedHead
from service import metrics

Key = tuple[str, str, int]

# Measured: onnxruntime holds about 6x a head's ONNX bytes once the session is built (a knn head
# of 3,000 x 384 floats: 4.7 MB of ONNX, 27.6 MB of resident memory per session), because it
# keeps the parsed model and its own copy of the initializers. Plus a fixed cost per session.
SESSION_BYTES_PER_ONNX_BYTE = 6
SESSION_OVERHEAD_BYTES = 64 * 1024


def estimated_bytes(head: LoadedHead) -> int:
    """Memory a loaded head is expected to hold (see the constants above)."""
    return head.size_bytes * SESSION_BYTES_PER_ONNX_BYTE + SESSION_OVERHEAD_BYTES


class HeadCache:
    """Least-recently-used loaded heads within `max_heads` and `max_bytes`.

    A head larger than the whole budget is not cached (it is served, then dropped), so that one
    head can never push the cache past its budget.
    """

    def __init__(self, max_heads: int, max_bytes: int) -> None:
        self._entries: OrderedDict[Key, tuple[LoadedHead, int]] = OrderedDict()
        self._max_heads = max_heads
        self._max_bytes = max_bytes
        self.bytes = 0

    def get(self, key: Key) -> LoadedHead | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Key, head: LoadedHead) -> None:
        """Caches `head`, evicting the least recently used ones to stay within both bounds."""
        size = estimated_bytes(head)
        self.pop(key)
        if size <= self._max_bytes:
            self._entries[key] = (head, size)
            self.bytes += size
            while len(self._entries) > self._max_heads or self.bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.bytes -= evicted
        self._publish()

    def pop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]
            self._publish()

    def keys(self) -> list[Key]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _publish(self) -> None:
        metrics.HEADS_CACHED.set(len(self._entries))
        metrics.HEAD_CACHE_BYTES.set(self.bytes)
