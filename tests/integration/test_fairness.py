"""Tenants are isolated for resources: a flood, abandoned deadlines, image and scan bombs.

One real server, two tenants: `alice` attacks, `bob` is the victim. Every figure is compared with a
baseline measured in the same test (the machine is small and shared: only ratios mean anything),
and every load loop is bounded. Run alone: `pytest tests/integration/test_fairness.py`.

The server's calls are made small (4 texts of 256 tokens) so that the floods fit a test's time on
a 2-core machine; the fairness does not depend on the size (bench/fairness.py uses the defaults).
Its embedding cache is off: the baselines repeat one request, and a flood of repeated texts would
be served from the cache rather than load the backbone (a flood of new texts is what these
tests stand for).
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from tests.conftest import BACKBONE
from tests.integration.conftest import start_server, text_request
from tests.integration.scrape import server_metrics, value
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

IMAGE_BACKBONE = "efficientnet-lite0"
CALL_TOKENS = 1024  # one full call: 4 texts of 256 tokens
WORDS = "river stone market quiet engine orange signal harbour window ladder".split()


def long_text(seed: int, words: int = 400) -> str:
    """About 400 words: well over the model's 256 tokens, so every text costs a full row."""
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), words))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def metric(server: ServerProcess, name: str, backbone: str = BACKBONE) -> float:
    """One sample of the server's Prometheus metrics (0 when not yet exported)."""
    return value(server_metrics(server), name, backbone=backbone)


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` until it holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[ServerProcess]:
    server = start_server(
        tmp_path_factory.mktemp("fairness"),
        model_repo,
        TRANSFERD_MAX_BATCH_TOKENS=str(CALL_TOKENS),
        TRANSFERD_MAX_BATCH_SIZE="16",
        TRANSFERD_EMBEDDING_CACHE_MB="0",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(arena: ServerProcess) -> Iterator[embedding_pb2_grpc.EmbeddingServiceStub]:
    with authed_channel(arena.address, arena.create_tenant_key("alice")) as channel:
        yield embedding_pb2_grpc.EmbeddingServiceStub(channel)


@pytest.fixture(scope="module")
def bob(arena: ServerProcess) -> Iterator[embedding_pb2_grpc.EmbeddingServiceStub]:
    with authed_channel(arena.address, arena.create_tenant_key("bob")) as channel:
        yield embedding_pb2_grpc.EmbeddingServiceStub(channel)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def quiet_latency(bob: embedding_pb2_grpc.EmbeddingServiceStub, count: int = 15) -> float:
    """Bob's median 1-text Embed latency with nobody else calling."""
    request = text_request(["how late is the harbour market open"])
    bob.Embed(request)  # warm
    return statistics.median(timed(lambda: bob.Embed(request)) for _ in range(count))


def full_call_time(alice: embedding_pb2_grpc.EmbeddingServiceStub) -> float:
    """One full inference call alone: CALL_TOKENS / 256 texts of 256 tokens."""
    request = text_request([long_text(1000 + i) for i in range(CALL_TOKENS // 256)])
    alice.Embed(request)  # warm
    return statistics.median(timed(lambda: alice.Embed(request)) for _ in range(3))


class Flood:
    """Alice's threads loop large Embeds until stopped (at most `rounds` each)."""

    def __init__(
        self,
        stub: embedding_pb2_grpc.EmbeddingServiceStub,
        request: embedding_pb2.EmbedRequest,
        timeout: float,
        threads: int = 4,
        rounds: int = 200,
    ) -> None:
        self.stub, self.request, self.timeout, self.rounds = stub, request, timeout, rounds
        self.stop = threading.Event()
        self.served = 0
        self.errors: list[grpc.RpcError] = []
        self._pool = ThreadPoolExecutor(threads)
        self._futures = [self._pool.submit(self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        for _ in range(self.rounds):
            if self.stop.is_set():
                return
            try:
                self.stub.Embed(self.request, timeout=self.timeout)
                self.served += 1
            except grpc.RpcError as error:
                self.errors.append(error)

    def finish(self) -> None:
        self.stop.set()
        for future in self._futures:
            future.result(timeout=600)
        self._pool.shutdown()


def test_a_flooding_tenant_does_not_refuse_or_stall_another(arena, alice, bob) -> None:
    quiet = quiet_latency(bob)
    call = full_call_time(alice)
    # 4 threads x 8 full calls: a FIFO would make Bob wait for about 32 calls.
    flood = Flood(alice, text_request([long_text(i) for i in range(32)]), timeout=20 * call)
    latencies: list[float] = []
    errors: list[grpc.RpcError] = []
    try:
        until(
            lambda: metric(arena, "transferd_queue_depth") >= 2 * CALL_TOKENS // 256,
            timeout=60,
            what="Alice's requests never queued",
        )
        request = text_request(["how late is the harbour market open"])
        for _ in range(20):
            started = time.perf_counter()
            try:
                bob.Embed(request, timeout=60)
                latencies.append(time.perf_counter() - started)
            except grpc.RpcError as error:
                errors.append(error)
            time.sleep(0.03)
        backlog = metric(arena, "transferd_queue_depth")
    finally:
        flood.finish()
    assert not errors, [e.details() for e in errors]
    p50, p95, worst = statistics.median(latencies), percentile(latencies, 0.95), max(latencies)
    print(
        f"quiet {quiet * 1000:.1f} ms, full call {call * 1000:.0f} ms, bob under flood "
        f"p50 {p50 * 1000:.0f} ms p95 {p95 * 1000:.0f} ms max {worst * 1000:.0f} ms, "
        f"alice served {flood.served}, backlog {backlog:.0f} texts"
    )
    assert backlog >= 2 * CALL_TOKENS // 256  # the flood was real: calls were still queued
    assert flood.served >= 1  # and Alice was served too
    # At most about the call in flight plus his own, never Alice's whole queue (a FIFO: about
    # 32 calls). Of 20 requests on a shared 2-core machine one may meet a pause of the OS (seen:
    # 3.2 calls once in a CI run): the p95 holds the bound, and even the worst stays far below
    # the queue.
    assert p95 <= max(10 * quiet, 3 * call), (p95, quiet, call)
    assert worst <= max(10 * quiet, 8 * call), (worst, quiet, call)
    # And usually not even that: his calls run in a lane of their own, beside hers.
    assert p50 < call, (p50, call)
    for error in flood.errors:  # over her share, or her own deadline: never anything else
        assert error.code() in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ), error
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert "tenant's share" in (error.details() or "")


def _give_up(
    stub: embedding_pb2_grpc.EmbeddingServiceStub,
    request: embedding_pb2.EmbedRequest,
    timeout: float,
) -> grpc.StatusCode:
    try:
        stub.Embed(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_abandoned_requests_are_not_computed(arena, alice, bob) -> None:
    quiet = quiet_latency(bob)
    call = full_call_time(alice)
    before = metric(arena, "transferd_batch_size_sum")
    dropped_before = metric(arena, "transferd_dropped_inputs_total")
    request = text_request([long_text(i) for i in range(64)])  # 16 full calls each
    count = 12
    with ThreadPoolExecutor(count) as pool:
        outcomes = list(pool.map(lambda _: _give_up(alice, request, call), range(count)))
    assert all(code == grpc.StatusCode.DEADLINE_EXCEEDED for code in outcomes), outcomes
    # Right after giving up: Bob waits for at most the call in flight, not 192 calls.
    next_embed = timed(lambda: bob.Embed(text_request(["is the ladder in the window"])))
    time.sleep(3 * call)  # anything still queued would run now
    computed = metric(arena, "transferd_batch_size_sum") - before - 1  # - Bob's text
    dropped = metric(arena, "transferd_dropped_inputs_total") - dropped_before
    print(
        f"full call {call * 1000:.0f} ms; abandoned {count * 64} texts, computed "
        f"{computed:.0f}, dropped {dropped:.0f}; bob next {next_embed * 1000:.0f} ms"
    )
    # One deadline is about one call: only the calls in flight then ran; a FIFO ran all 768.
    assert computed <= count * 64 / 8, computed
    # Queued work was dropped unrun (the rest was cancelled before it was even queued).
    assert dropped >= 2 * CALL_TOKENS // 256, dropped
    assert next_embed <= max(10 * quiet, 3 * call), (next_embed, quiet, call)


def sixteen_bit_png(side: int, seed: int) -> bytes:
    """A 16-bit grey PNG of flat blocks: 36 MP (within the 40 MP limit) in about 100 KB."""
    blocks = np.random.default_rng(seed).integers(0, 65535, (side // 100, side // 100))
    out = io.BytesIO()
    Image.fromarray(np.kron(blocks, np.ones((100, 100))).astype(np.uint16)).save(out, "PNG")
    return out.getvalue()


def test_images_do_not_slow_another_tenants_text(arena, alice, bob) -> None:
    quiet = quiet_latency(bob)
    bombs = [sixteen_bit_png(6000, seed) for seed in range(12)]
    assert sum(len(b) for b in bombs) < 2_000_000
    request = embedding_pb2.EmbedRequest(
        backbone=IMAGE_BACKBONE, inputs=[common_pb2.Input(image=b) for b in bombs]
    )
    # How long the twelve take here, undisturbed (seconds of decoding each, more or less
    # depending on the machine): Alice then gives up halfway through them.
    whole = timed(lambda: alice.Embed(request, timeout=300))
    dropped_before = metric(arena, "transferd_dropped_inputs_total", IMAGE_BACKBONE)
    with ThreadPoolExecutor(1) as pool:
        images = pool.submit(_give_up, alice, request, whole / 2)
        time.sleep(0.5)  # decoding has started
        text = text_request(["how late is the harbour market open"])
        latencies = []
        for _ in range(20):
            latencies.append(timed(lambda: bob.Embed(text, timeout=60)))
            time.sleep(0.03)
        busy = not images.done()
        outcome = images.result(timeout=120)
    time.sleep(3)  # a decode in flight when Alice gave up ends; the rest must never start
    dropped = metric(arena, "transferd_dropped_inputs_total", IMAGE_BACKBONE) - dropped_before
    p50 = statistics.median(latencies)
    print(
        f"bob text quiet {quiet * 1000:.1f} ms, next to 12 16-bit PNGs p50 {p50 * 1000:.1f} ms "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms; decodes dropped {dropped:.0f}; "
        f"the twelve alone {whole:.1f} s"
    )
    assert busy, "the images were still decoding while Bob was measured"
    assert outcome == grpc.StatusCode.DEADLINE_EXCEEDED
    # Text never waits for image decoding: only for the CPU the decoder shares with it.
    assert p50 <= 10 * quiet, (p50, quiet)
    assert dropped >= 1  # images Alice abandoned were never decoded


def progressive_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def scan_bomb(scans: int) -> bytes:
    """A progressive JPEG whose scans (with the tables between them) repeat until `scans`."""
    data = progressive_jpeg()
    first, end = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    body = data[first:end]
    repeats = -(-scans // body.count(b"\xff\xda"))
    return data[:first] + body * repeats + data[end:]


def test_a_scan_bomb_is_refused_before_decoding(alice) -> None:
    def embed(data: bytes) -> embedding_pb2.EmbedResponse:
        request = embedding_pb2.EmbedRequest(
            backbone=IMAGE_BACKBONE,
            inputs=[common_pb2.Input(text="x"), common_pb2.Input(image=data)][1:],
        )
        return alice.Embed(request, timeout=60)

    normal = progressive_jpeg()
    assert normal.count(b"\xff\xda") < 20
    embed(normal)  # warm
    baseline = statistics.median(timed(lambda: embed(normal)) for _ in range(3))
    bomb = scan_bomb(5000)
    assert len(bomb) < 2_000_000 and bomb.count(b"\xff\xda") >= 5000
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as caught:
        embed(bomb)
    refused = time.perf_counter() - started
    print(
        f"normal progressive JPEG {baseline * 1000:.0f} ms; scan bomb refused in "
        f"{refused * 1000:.0f} ms"
    )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("inputs[0].image: JPEG with")
    assert "scans exceeds the limit" in caught.value.details()
    assert refused <= 3 * baseline, (refused, baseline)
