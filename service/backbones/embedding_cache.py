"""The embedding cache: vectors already computed, per tenant, bounded in bytes.

An entry is keyed by the tenant and a digest of the backbone's fingerprint, the input's modality
and its exact bytes. Tenants never share entries: a hit would tell one tenant, by its latency,
that another had embedded the same text. A new export of a backbone has a new fingerprint, so its
entries never meet the old ones.

The cache keeps the vector's bytes as they were computed (a hit is bit-identical) together with
what the tokenizer cut (`truncated_to`), and evicts the least recently used entries beyond its
byte budget. It also tracks the inputs being computed: a second request for one of them, while
the first is still running, waits for that result instead of computing it again.

Everything here runs on the event loop thread: no locks.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from service import metrics
from service.backbones.inputs import ImageInput, Input, TextInput

#: Bytes an entry holds besides its vector: the key tuple, its 16-byte digest, the entry object
#: and the OrderedDict's links (measured with tracemalloc: about 300 bytes on CPython 3.11).
ENTRY_OVERHEAD_BYTES = 360
_DIGEST_BYTES = 16  # 128 bits: collisions are out of reach for any cache size

CacheKey = tuple[str, bytes]  # (tenant, digest of fingerprint + modality + input bytes)


class ComputationAbandoned(Exception):
    """The request computing an input gave up (cancelled, past its deadline, failed): whoever
    waited for it computes the input itself."""


@dataclass(frozen=True)
class CachedEmbedding:
    vector: bytes  # float32 row, exactly as computed
    truncated_to: int  # tokens kept when the text was cut, else 0

    def row(self) -> np.ndarray:
        return np.frombuffer(self.vector, dtype=np.float32)

    @property
    def size(self) -> int:
        return len(self.vector) + ENTRY_OVERHEAD_BYTES


def input_bytes(item: Input) -> tuple[bytes, bytes] | None:
    """The modality tag and exact bytes of an input the cache can hold; None for the others
    (precomputed embeddings, missing inputs)."""
    if isinstance(item, TextInput):
        return b"text", item.text.encode("utf-8")
    if isinstance(item, ImageInput):
        return b"image", item.data
    return None


class EmbeddingCache:
    """An LRU of embeddings bounded by `max_bytes` (0 disables it: every lookup misses)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, CachedEmbedding] = OrderedDict()
        self._bytes = 0
        self._computing: dict[CacheKey, asyncio.Future[CachedEmbedding]] = {}

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, tenant: str, fingerprint: str, item: Input) -> CacheKey | None:
        """The key of `item` for `tenant` on the backbone of `fingerprint`; None when the
        cache is off or the input is not embedded by a backbone."""
        tagged = input_bytes(item)
        if not self.enabled or tagged is None:
            return None
        modality, data = tagged
        digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
        # Length-prefixed parts: no two different (fingerprint, modality, data) share a stream.
        for part in (fingerprint.encode(), modality):
            digest.update(len(part).to_bytes(4, "little"))
            digest.update(part)
        digest.update(data)
        return tenant, digest.digest()

    def get(self, key: CacheKey) -> CachedEmbedding | None:
        """The entry of `key` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    @staticmethod
    def count_lookups(backbone: str, hits: int, misses: int) -> None:
        """Counts one request's lookups (once a request, not once an input: the hot path)."""
        metrics.EMBEDDING_CACHE_HITS.labels(backbone=backbone).inc(hits)
        metrics.EMBEDDING_CACHE_MISSES.labels(backbone=backbone).inc(misses)

    def put(self, key: CacheKey, entry: CachedEmbedding) -> None:
        """Keeps `entry`, evicting the least recently used entries beyond the byte budget."""
        if not self.enabled or entry.size > self._max_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= previous.size
        self._entries[key] = entry
        self._bytes += entry.size
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
            metrics.EMBEDDING_CACHE_EVICTIONS.inc()
        metrics.EMBEDDING_CACHE_BYTES.set(self._bytes)
        metrics.EMBEDDING_CACHE_ENTRIES.set(len(self._entries))

    def being_computed(self, key: CacheKey) -> asyncio.Future[CachedEmbedding] | None:
        """The pending result of `key` when another request is computing it now."""
        return self._computing.get(key)

    def start_computing(self, key: CacheKey) -> None:
        """Marks `key` as being computed by the caller, who must then call `finish_computing`."""
        self._computing[key] = asyncio.get_running_loop().create_future()

    def finish_computing(self, key: CacheKey, entry: CachedEmbedding | None) -> None:
        """Ends the computation of `key`: keeps `entry` and hands it to the requests waiting for
        it; None hands them ComputationAbandoned (they then compute the input themselves)."""
        pending = self._computing.pop(key, None)
        if entry is not None:
            self.put(key, entry)
        if pending is None or pending.done():
            return
        if entry is not None:
            pending.set_result(entry)
        else:
            pending.set_exception(ComputationAbandoned())
            # Nobody may be waiting: retrieving the exception keeps asyncio from logging it.
            pending.exception()
