"""Fairness: a victim tenant's latency while another tenant floods the same backbone.

Against a real `transferd serve` with default settings, in one run:
  * one full inference call alone: a max-size batch (max_batch_tokens / 256 texts of 256 tokens),
    the most a small request should wait behind others (the call in flight) besides its own;
  * tenant B's 1-text Embed latency, quiet;
  * tenant A floods from several threads with large requests (1024 long texts each) while B
    keeps sending 1-text Embeds; B's p50 and p99, and how many of B's requests were refused.
The ratio B p99 / full call is the figure (target: at most 3); B refused must be 0. B p99 / B
quiet p50 says how much the flood costs B at all (B runs in a lane of its own, beside A's call). Then A's
requests are cancelled, which also shows the server dropping their queued calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkout  # noqa: F401 - devtools from the checkout

from devtools.client import authed_channel
from devtools.launcher import ServerProcess
from service.export.corpus import real_texts
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
MAX_BATCH_TOKENS = 8192  # the server's default: one full call is 32 texts of 256 tokens
QUERY = "how do I read a file line by line"


def long_texts(count: int) -> list[str]:
    """`count` distinct texts of real prose, each well over the model's 256 tokens."""
    paragraphs = real_texts(600)
    texts = []
    for index in range(count):
        words: list[str] = [f"({index})"]
        position = index
        while len(words) < 400:
            words += paragraphs[position % len(paragraphs)].split()
            position += 7
        texts.append(" ".join(words[:400]))
    return texts


def request(texts: list[str]) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(
        backbone=BACKBONE, inputs=[common_pb2.Input(text=t) for t in texts]
    )


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


class Flood:
    """A's threads: each keeps one large Embed in flight until stopped, then cancels it."""

    def __init__(self, stub: embedding_pb2_grpc.EmbeddingServiceStub, big, threads: int) -> None:
        self.stub, self.big = stub, big
        self.stop = threading.Event()
        self.served = self.refused = 0
        self._threads = [threading.Thread(target=self._loop) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            call = self.stub.Embed.future(self.big, timeout=3600)
            while not call.done() and not self.stop.wait(0.05):
                pass
            if not call.done():
                call.cancel()
                return
            try:
                call.result()
                self.served += 1
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self.refused += 1
                time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--a-threads", type=int, default=3, help="A's concurrent requests")
    parser.add_argument("--a-texts", type=int, default=1024, help="texts per A request")
    parser.add_argument("--b-requests", type=int, default=20, help="B's 1-text Embeds measured")
    parser.add_argument(
        "--model-repo",
        type=Path,
        default=Path(os.environ.get("TRANSFERD_MODEL_REPO", "model_repo")),
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    texts = long_texts(args.a_texts)
    full = request(texts[: MAX_BATCH_TOKENS // 256])
    big = request(texts)
    query = request([QUERY])
    log = Path(tempfile.mkdtemp(prefix="transferd-bench-")) / "server.log"
    # The embedding cache off: the flood repeats its texts, which must load the backbone.
    env = {
        "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
        "TRANSFERD_LOG_LEVEL": "WARNING",
        "TRANSFERD_EMBEDDING_CACHE_MB": "0",
    }
    with ServerProcess(env, log) as server:
        key_a, key_b = server.create_tenant_key("flooder"), server.create_tenant_key("victim")
        with (
            authed_channel(server.address, key_a) as ch_a,
            authed_channel(server.address, key_b) as ch_b,
        ):
            stub_a = embedding_pb2_grpc.EmbeddingServiceStub(ch_a)
            stub_b = embedding_pb2_grpc.EmbeddingServiceStub(ch_b)
            stub_a.Embed(full)  # warm-up: first calls allocate
            stub_b.Embed(query)
            call = statistics.median(timed(lambda: stub_a.Embed(full)) for _ in range(3))
            quiet = [timed(lambda: stub_b.Embed(query)) for _ in range(20)]

            flood = Flood(stub_a, big, args.a_threads)
            latencies: list[float] = []
            refused = 0
            try:
                time.sleep(2 * call)  # A's requests are queued
                for _ in range(args.b_requests):
                    started = time.perf_counter()
                    try:
                        stub_b.Embed(query, timeout=600)
                        latencies.append(time.perf_counter() - started)
                    except grpc.RpcError as error:
                        refused += 1
                        print(f"B refused: {error.code().name}: {error.details()}")
                    time.sleep(0.05)
            finally:
                flood.finish()

    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print(
        f"flood: tenant A, {args.a_threads} threads x {args.a_texts} texts of 256 tokens a "
        f"request ({flood.served} served, {flood.refused} refused over its share)"
    )
    print(f"full inference call alone ({len(full.inputs)} x 256 tokens): {call * 1000:.0f} ms")
    print(f"B 1-text Embed quiet: p50 {statistics.median(quiet) * 1000:.1f} ms")
    print(
        f"B 1-text Embed under flood: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"({len(latencies)} requests)"
    )
    print(f"B refused: {refused}")
    print(f"ratio B p99 / B quiet p50 {p99 / statistics.median(quiet):.1f}")
    print(f"ratio B p99 / full call {p99 / call:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
