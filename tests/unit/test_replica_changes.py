"""Replicas on one PostgreSQL, in one process: heads and keys made on one are seen by the other,
changes reach every replica within 2 s (LISTEN/NOTIFY, or the periodic re-read when a notice is
lost), the listener recovers from a killed connection, and a database outage leaves what is
cached serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heads import TrainedHead, train_head
from service.errors import NotFound, Unauthenticated, Unavailable
from service.store.change_listener import APPLICATION_NAME
from service.store.changes import ChangeFeed
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from service.tenancy.directory import TenantDirectory
from tests.support.postgres import ADMIN_DSN, new_database, postgres_url
from tests.support.scenario import run
from tests.support.tcp_proxy import TcpProxy

FINGERPRINT = "f" * 64
#: The contract: a change answered on one replica is seen by every other within this.
WITHIN_S = 2.0
PROBE = np.zeros((3, 8), np.float32)


@pytest.fixture(scope="module")
def trained() -> TrainedHead:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(3, 1, (20, 8))]).astype(np.float32)
    return train_head("logistic_regression", x, ["a"] * 20 + ["b"] * 20)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database's name."""
    with new_database() as name:
        yield name


@dataclass
class Replica:
    db: Database
    feed: ChangeFeed
    registry: HeadRegistry
    directory: TenantDirectory
    files: HeadFiles


@asynccontextmanager
async def replica(data_dir: Path, url: str, poll_s: float = 10.0) -> AsyncIterator[Replica]:
    """What one gateway replica holds of the store, with its own data directory."""
    db = Database(data_dir, url)
    feed = ChangeFeed(db, poll_s)
    files = HeadFiles(data_dir)
    pool = ThreadPoolExecutor(2)
    registry = HeadRegistry(db, files, 8, pool, changes=feed)
    directory = TenantDirectory(db, None, feed)
    await feed.start()
    try:
        yield Replica(db, feed, registry, directory, files)
    finally:
        await feed.stop()
        db.close()
        pool.shutdown()


async def within(condition: Callable[[], Awaitable[bool]], seconds: float = WITHIN_S) -> float:
    """Seconds until `condition()` holds; fails past `seconds`."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < seconds, f"not within {seconds}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def refuses(call: Callable[[], Awaitable[object]], kind: type[Exception]) -> Callable:
    async def condition() -> bool:
        try:
            await call()
        except kind:
            return True
        return False

    return condition


async def listening(feed: ChangeFeed) -> None:
    """Waits for the listener to be connected (and its first re-read done)."""
    await within(lambda: _true(feed.listener is not None and feed.listener.backend_pid), 10)
    await within(lambda: _true(feed.rereads > 0), 10)


async def _true(value: object) -> bool:
    return bool(value)


def test_heads_published_on_one_replica_load_on_another_and_deletes_reach_it(
    tmp_path: Path, trained: TrainedHead, database: str
) -> None:
    """B loads A's head from the database (its data directory is empty), with A's predictions;
    a delete on B is refused on A within 2 s, though A had card and head cached, and A drops
    its cached files; a version published on B is A's latest at once."""
    url = postgres_url(database)

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(replica(tmp_path / "a", url))
            b = await stack.enter_async_context(replica(tmp_path / "b", url))
            await listening(a.feed)
            await listening(b.feed)
            await a.registry.publish("acme", "h", trained, "bb", FINGERPRINT)
            on_a = (await a.registry.load("acme", "h")).predict(PROBE)
            assert not b.files.folder("acme", "h", 1).exists()
            on_b = (await b.registry.load("acme", "h")).predict(PROBE)
            assert on_b == on_a
            assert (b.files.folder("acme", "h", 1) / "head.onnx").read_bytes() == (
                a.files.folder("acme", "h", 1) / "head.onnx"
            ).read_bytes()

            await b.registry.publish("acme", "h", trained, "bb", FINGERPRINT)
            await within(lambda: _latest_is(a.registry, 2))
            await b.registry.delete("acme", "h", 2)
            await a.registry.load("acme", "h", 1)  # cached on A: card and head
            await b.registry.delete("acme", "h")
            seconds = await within(refuses(lambda: a.registry.load("acme", "h", 1), NotFound))
            print(f"A refused the head {seconds:.3f}s after B deleted it")
            await within(lambda: _true(not a.files.folder("acme", "h", 1).exists()))

    run(scenario())


async def _latest_is(registry: HeadRegistry, version: int) -> bool:
    return (await registry.get("acme", "h")).version == version


def test_keys_made_on_one_replica_work_on_another_and_revocations_reach_it(
    tmp_path: Path, database: str
) -> None:
    """A key created on A authenticates on B (looked up once); revoked on A, B refuses it
    within 2 s."""
    url = postgres_url(database)

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(replica(tmp_path / "a", url))
            b = await stack.enter_async_context(replica(tmp_path / "b", url))
            await listening(b.feed)
            await a.directory.create_tenant("acme")
            key = await a.directory.create_key("acme")
            assert (await b.directory.authenticate(key.secret)).tenant == "acme"
            await a.directory.revoke_key(key.key_id)
            with pytest.raises(Unauthenticated):
                await a.directory.authenticate(key.secret)
            seconds = await within(
                refuses(lambda: b.directory.authenticate(key.secret), Unauthenticated)
            )
            print(f"B refused the key {seconds:.3f}s after A revoked it")

    run(scenario())


def test_a_killed_listener_reconnects_and_a_lost_notice_is_caught_by_the_re_read(
    tmp_path: Path, trained: TrainedHead, database: str
) -> None:
    """Its connection terminated by the server, the listener connects again by itself, re-reads,
    and sees later changes; a change made without a notice is seen at the next re-read."""
    url = postgres_url(database)

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(replica(tmp_path / "a", url, poll_s=0.5))
            b = await stack.enter_async_context(replica(tmp_path / "b", url))
            await listening(a.feed)
            await b.directory.create_tenant("acme")
            key = await b.directory.create_key("acme")
            await a.directory.authenticate(key.secret)
            await b.registry.publish("acme", "h", trained, "bb", FINGERPRINT)
            await a.registry.load("acme", "h")
            assert a.feed.listener is not None
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = %s",
                    (database, APPLICATION_NAME),
                ).fetchall()
            assert len(killed) == 2  # A's and B's listeners
            await within(lambda: _true(a.feed.listener and a.feed.listener.connects >= 2), 10)
            await b.registry.delete("acme", "h")
            await within(refuses(lambda: a.registry.load("acme", "h"), NotFound))

            # A change without a notice (as one sent while a listener was away).
            b.db.call(lambda s: s.execute(text("UPDATE api_keys SET revoked_at = now()")))
            await within(refuses(lambda: a.directory.authenticate(key.secret), Unauthenticated))

    run(scenario())


def test_an_outage_leaves_cached_heads_and_keys_serving_and_heals_by_itself(
    tmp_path: Path, trained: TrainedHead, database: str
) -> None:
    """With the database cut off, cached keys authenticate and cached heads load; what needs
    the database is UNAVAILABLE with a clear message. Healed, everything works again."""
    parsed = make_url(postgres_url(database))
    with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        url = parsed.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)

        async def scenario() -> None:
            async with replica(tmp_path / "a", url, poll_s=0.3) as a:
                await listening(a.feed)
                await a.directory.create_tenant("acme")
                key = await a.directory.create_key("acme")
                await a.registry.publish("acme", "h", trained, "bb", FINGERPRINT)
                await a.registry.publish("acme", "other", trained, "bb", FINGERPRINT)
                served = (await a.registry.load("acme", "h")).predict(PROBE)
                rereads = a.feed.rereads

                proxy.cut()
                await asyncio.sleep(1.0)  # re-reads fail meanwhile
                assert (await a.directory.authenticate(key.secret)).tenant == "acme"
                card = await a.registry.get("acme", "h")
                assert (await a.registry.load_stored(card)).predict(PROBE) == served
                with pytest.raises(Unavailable, match="database .* is unavailable"):
                    await a.registry.get("acme", "other", 1)
                with pytest.raises(Unavailable):
                    await a.directory.create_tenant("globex")

                proxy.heal()
                await within(lambda: _true(a.feed.rereads > rereads + 1), 15)
                await a.directory.create_tenant("globex")
                assert (await a.registry.get("acme", "other", 1)).version == 1

        run(scenario(), timeout_s=60)
