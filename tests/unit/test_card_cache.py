"""The card cache keeps a card read before a drop of its own name out, and only that one."""

from __future__ import annotations

from service.store.card_cache import RECENT_DROPS, CardCache


def test_a_card_read_before_a_drop_of_its_name_is_not_cached() -> None:
    cache: CardCache[str] = CardCache()
    began = cache.generation
    cache.drop("acme", "h", (1,))
    cache.put(("acme", "h", 0), "stale", began)
    assert cache.get(("acme", "h", 0)) is None


def test_drops_of_other_names_do_not_keep_a_card_out() -> None:
    cache: CardCache[str] = CardCache()
    began = cache.generation
    cache.drop("acme", "other")
    cache.drop_keys([("globex", "h", 0)])
    cache.put(("acme", "h", 0), "card", began)
    assert cache.get(("acme", "h", 0)) == "card"


def test_a_read_overlapping_more_drops_than_remembered_is_not_cached() -> None:
    cache: CardCache[str] = CardCache()
    began = cache.generation
    for number in range(RECENT_DROPS + 1):
        cache.drop("acme", f"other-{number}")
    cache.put(("acme", "h", 0), "card", began)
    assert cache.get(("acme", "h", 0)) is None


def test_least_recently_used_cards_go_first() -> None:
    cache: CardCache[str] = CardCache(max_entries=2)
    for version in (1, 2):
        cache.put(("acme", "h", version), f"v{version}", cache.generation)
    cache.get(("acme", "h", 1))
    cache.put(("acme", "h", 3), "v3", cache.generation)
    assert [key for key, _ in cache.items()] == [("acme", "h", 1), ("acme", "h", 3)]
