"""The cards Predict needs, in memory: (tenant, name, version) → the stored card, where version 0
is "the latest live version". A Predict on a cached card and a cached head needs no database.

Entries are dropped by the change feed (a version published or deleted, a damage mark changed)
and by its periodic re-read. A read from the database that raced with a drop of the same head
name must not put the stale card back: every drop is numbered, and `put` refuses a card whose
read began (`generation`) before a drop of its name. Drops of other names do not matter, so that
a busy feed does not keep every read out of the cache.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")
Key = tuple[str, str, int]

#: Most cards kept (LRU); a card is a few KB, more for heads with many labels.
DEFAULT_ENTRIES = 4096
#: Drops remembered by name; a read that overlaps more than these is not cached (conservative).
RECENT_DROPS = 1024
#: The name of a drop that covers every name of its tenant (a deleted tenant); never a head name.
ALL_NAMES = "*"


class CardCache(Generic[V]):
    """Least-recently-used cards by (tenant, name, version asked, 0 for the latest)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES) -> None:
        self._entries: OrderedDict[Key, V] = OrderedDict()
        self._max_entries = max_entries
        self.generation = 0  # drops so far; a read notes it when it begins
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=RECENT_DROPS)

    def get(self, key: Key) -> V | None:
        card = self._entries.get(key)
        if card is not None:
            self._entries.move_to_end(key)
        return card

    def put(self, key: Key, card: V, generation: int) -> None:
        """Caches `card`, read from the database when `generation` was current."""
        if self._dropped_since(generation, key[0], key[1]):
            return  # the card may be stale
        self._entries[key] = card
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def drop(self, tenant: str, name: str, versions: Iterable[int] = ()) -> None:
        """Drops the latest card of `name` and the cards of `versions`."""
        self._note_drop(tenant, name)
        for version in (0, *versions):
            self._entries.pop((tenant, name, version), None)

    def drop_tenant(self, tenant: str) -> None:
        """Drops every card of `tenant` (deleted), and refuses those being read meanwhile."""
        self._note_drop(tenant, ALL_NAMES)
        for key in [key for key in self._entries if key[0] == tenant]:
            del self._entries[key]

    def drop_keys(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self._note_drop(key[0], key[1])
            self._entries.pop(key, None)

    def items(self) -> list[tuple[Key, V]]:
        return list(self._entries.items())

    def __len__(self) -> int:
        return len(self._entries)

    def _note_drop(self, tenant: str, name: str) -> None:
        self.generation += 1
        self._recent.append((self.generation, tenant, name))

    def _dropped_since(self, generation: int, tenant: str, name: str) -> bool:
        if generation == self.generation:
            return False
        if not self._recent or self._recent[0][0] > generation + 1:
            return True  # drops older than the ones remembered: cannot tell, so assume so
        return any(
            number > generation and t == tenant and n in (name, ALL_NAMES)
            for number, t, n in self._recent
        )
