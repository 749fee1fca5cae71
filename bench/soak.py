"""Soak: a mixed-tenant load with faults injected, checked for lost heads and stuck jobs.

For `--minutes` (default 10), against a real `transferd serve` (embedded runtime):
  - `good`: the well-behaved tenant, 1-text Embeds and small Predicts back to back (its latency
    is the figure that matters);
  - `flood`: large Embeds (256 long texts) from two threads, as fast as it is answered;
  - `trainer`: small training jobs one after another, some cancelled, recording every version
    it saw published;
  - `hostile`: malformed messages, oversized counts, huge labels, unknown heads and jobs;
  - every `--fault-every` seconds the server is killed with SIGKILL and restarted on the same
    ports and data directory. (Triton restarts under load are covered by the Triton tests,
    tests/triton/test_triton_outages.py.)
At the end every published version must still be listed and answer Predict (zero lost heads),
and every job must have ended (zero stuck jobs). Calls refused while the server was down are
counted apart; the good tenant's p50/p99 are over the calls outside those windows.
Exit status 1 when a head was lost, a job is stuck, or the good tenant was refused while up.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import checkout  # noqa: F401 - devtools from the checkout
import grpc

from devtools.client import bearer
from devtools.launcher import ServerProcess
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, heads_pb2, heads_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
TOPICS = {
    "billing": ["I was charged twice", "refund my payment", "the invoice is wrong"],
    "shipping": ["where is my parcel", "the delivery is late", "track my order"],
    "login": ["I cannot sign in", "reset my password", "my account is locked"],
}
KEEP_VERSIONS = 10
DOWN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Tally:
    """What one tenant saw: latencies of successes, and status codes of failures."""

    latencies: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def failed(self, code: grpc.StatusCode) -> None:
        with self.lock:
            self.codes[code.name] = self.codes.get(code.name, 0) + 1


@dataclass
class Soak:
    server: ServerProcess
    keys: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    up: threading.Event = field(default_factory=threading.Event)
    tallies: dict[str, Tally] = field(default_factory=dict)
    published: set[tuple[str, str, int]] = field(default_factory=set)  # tenant, head, version
    jobs: list[str] = field(default_factory=list)

    def tally(self, name: str) -> Tally:
        return self.tallies.setdefault(name, Tally())

    def call(self, name: str, fn, *args, **kwargs):
        """Calls `fn`, counting the outcome for tenant `name`; None when it failed."""
        if not self.up.is_set():
            self.up.wait(5)
            return None
        started = time.perf_counter()
        try:
            reply = fn(*args, **kwargs)
        except grpc.RpcError as error:
            self.tally(name).failed(
                error.code() if self.up.is_set() else grpc.StatusCode.UNAVAILABLE
            )
            if error.code() in DOWN or error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                time.sleep(0.2)  # back off, as a client should
            return None
        self.tally(name).ok(time.perf_counter() - started)
        return reply


def _embed_request(texts: list[str]) -> embedding_pb2.EmbedRequest:
    return embedding_pb2.EmbedRequest(
        backbone=BACKBONE, inputs=[common_pb2.Input(text=t) for t in texts]
    )


def _train_request(head: str) -> heads_pb2.TrainHeadRequest:
    examples = [
        heads_pb2.Example(input=common_pb2.Input(text=text), label=label)
        for label, texts in TOPICS.items()
        for text in texts
    ]
    return heads_pb2.TrainHeadRequest(head=head, backbone=BACKBONE, examples=examples)


def good_tenant(soak: Soak) -> None:
    meta = bearer(soak.keys["good"])
    with grpc.insecure_channel(soak.server.address) as channel:
        embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        heads = heads_pb2_grpc.HeadServiceStub(channel)
        has_head = False
        while not soak.stop.is_set():
            soak.call(
                "good",
                embed.Embed,
                _embed_request(["is my order late?"]),
                metadata=meta,
                timeout=30,
            )
            if not has_head:
                job = soak.call(
                    "good-train", heads.TrainHead, _train_request("mine"), metadata=meta, timeout=30
                )
                if job is not None:
                    soak.jobs.append(f"good/{job.job_id}")
                    version = _wait_published(heads, job.job_id, meta)
                    if version:
                        soak.published.add(("good", "mine", version))
                        has_head = True
            else:
                request = heads_pb2.PredictRequest(
                    head="mine", inputs=[common_pb2.Input(text="refund me")]
                )
                reply = soak.call("good-predict", heads.Predict, request, metadata=meta, timeout=30)
                if reply is None:
                    time.sleep(0.05)
            time.sleep(0.01)


def _wait_published(heads: heads_pb2_grpc.HeadServiceStub, job_id: str, meta: tuple) -> int:
    """The version the job published, or 0 (failed, cancelled, or the server went down)."""
    try:
        request = heads_pb2.WatchJobRequest(job_id=job_id)
        final = list(heads.WatchJob(request, metadata=meta, timeout=300))[-1]
    except grpc.RpcError:
        return 0  # the server went down mid-watch: checked at the end like every job
    return final.version if final.state == heads_pb2.JOB_STATE_SUCCEEDED else 0


def flood_tenant(soak: Soak, texts: list[str]) -> None:
    meta = bearer(soak.keys["flood"])
    with grpc.insecure_channel(soak.server.address) as channel:
        embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        while not soak.stop.is_set():
            soak.call("flood", embed.Embed, _embed_request(texts), metadata=meta, timeout=60)


def trainer_tenant(soak: Soak) -> None:
    meta = bearer(soak.keys["trainer"])
    rng = random.Random(1)
    with grpc.insecure_channel(soak.server.address) as channel:
        heads = heads_pb2_grpc.HeadServiceStub(channel)
        while not soak.stop.is_set():
            head = f"topics-{rng.randrange(3)}"
            job = soak.call(
                "trainer", heads.TrainHead, _train_request(head), metadata=meta, timeout=30
            )
            if job is None:
                continue
            soak.jobs.append(f"trainer/{job.job_id}")
            if rng.random() < 0.2:
                soak.call(
                    "trainer",
                    heads.CancelJob,
                    heads_pb2.CancelJobRequest(job_id=job.job_id),
                    metadata=meta,
                    timeout=30,
                )
            version = _wait_published(heads, job.job_id, meta)
            if not version:
                continue
            soak.published.add(("trainer", head, version))
            # Stay within the versions quota: delete the oldest beyond KEEP_VERSIONS.
            mine = sorted(v for t, h, v in soak.published if (t, h) == ("trainer", head))
            for old in mine[:-KEEP_VERSIONS]:
                request = heads_pb2.DeleteHeadRequest(head=head, version=old)
                if (
                    soak.call("trainer", heads.DeleteHead, request, metadata=meta, timeout=30)
                    is not None
                ):
                    soak.published.discard(("trainer", head, old))


def hostile_tenant(soak: Soak) -> None:
    meta = bearer(soak.keys["hostile"])
    attacks = [
        ("/transferd.v1.EmbeddingService/Embed", bytes([0x12, 0]) * 2_000_000),
        ("/transferd.v1.EmbeddingService/Embed", bytes([0x0A, 2, 0xC3, 0x28])),
        (
            "/transferd.v1.HeadService/GetJob",
            heads_pb2.GetJobRequest(job_id="x" * 60_000).SerializeToString(),
        ),
        (
            "/transferd.v1.HeadService/Predict",
            heads_pb2.PredictRequest(
                head="nope", inputs=[common_pb2.Input(text="x")]
            ).SerializeToString(),
        ),
        (
            "/transferd.v1.HeadService/TrainHead",
            heads_pb2.TrainHeadRequest(
                head="bomb",
                backbone=BACKBONE,
                examples=[
                    heads_pb2.Example(input=common_pb2.Input(text="a"), label="x" * 1_000_000)
                ]
                * 2,
            ).SerializeToString(),
        ),
    ]
    with grpc.insecure_channel(
        soak.server.address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        while not soak.stop.is_set():
            method, body = random.choice(attacks)
            soak.call("hostile", channel.unary_unary(method), body, metadata=meta, timeout=30)
            time.sleep(0.05)


def faults(soak: Soak, every_s: float) -> int:
    """Kills and restarts the server every `every_s` seconds until the end; returns the count."""
    count = 0
    while not soak.stop.wait(every_s):
        soak.up.clear()
        soak.server.kill()
        time.sleep(1)
        soak.server.start()  # same ports, same data directory
        soak.up.set()
        count += 1
        print(f"  fault {count}: killed with SIGKILL and restarted", flush=True)
    return count


def _time_alone(address: str, key: str, texts: list[str]) -> float:
    """Seconds of one flood request on the quiet server (best of 3): what the good tenant's
    latency under the flood should be compared with."""
    with grpc.insecure_channel(address) as channel:
        embed = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            embed.Embed(_embed_request(texts), metadata=bearer(key), timeout=120)
            best = min(best, time.perf_counter() - started)
    return best


def check_end_state(soak: Soak) -> tuple[int, int]:
    """(lost heads, stuck jobs) once every job had time to end."""
    with grpc.insecure_channel(soak.server.address) as channel:
        heads = heads_pb2_grpc.HeadServiceStub(channel)
        stuck = 0
        deadline = time.monotonic() + 120
        for entry in soak.jobs:
            tenant, job_id = entry.split("/")
            meta = bearer(soak.keys[tenant])
            while True:
                job = heads.GetJob(
                    heads_pb2.GetJobRequest(job_id=job_id), metadata=meta, timeout=30
                )
                ended = job.state in (
                    heads_pb2.JOB_STATE_SUCCEEDED,
                    heads_pb2.JOB_STATE_FAILED,
                    heads_pb2.JOB_STATE_CANCELLED,
                )
                if ended or time.monotonic() > deadline:
                    stuck += not ended
                    break
                time.sleep(0.5)
        lost = 0
        for tenant, head, version in sorted(soak.published):
            request = heads_pb2.PredictRequest(
                head=head, version=version, inputs=[common_pb2.Input(text="refund")]
            )
            try:
                heads.Predict(request, metadata=bearer(soak.keys[tenant]), timeout=30)
            except grpc.RpcError as error:
                print(f"  LOST {tenant}/{head} v{version}: {error.code().name} {error.details()}")
                lost += 1
    return lost, stuck


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault-every", type=float, default=90.0, help="seconds between kills")
    parser.add_argument("--model-repo", type=Path, default=Path("model_repo"))
    args = parser.parse_args()
    texts = [f"a long request text number {i} " + "with many words in it " * 8 for i in range(256)]
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
            "TRANSFERD_DATA_DIR": f"{tmp}/data",
        }
        server = ServerProcess(env, Path(tmp) / "server.log").start()
        keys = {
            name: server.create_tenant_key(name) for name in ("good", "flood", "trainer", "hostile")
        }
        soak = Soak(server, keys)
        soak.up.set()
        flood_alone = _time_alone(server.address, keys["flood"], texts)
        workers = [
            threading.Thread(target=good_tenant, args=(soak,)),
            threading.Thread(target=flood_tenant, args=(soak, texts)),
            threading.Thread(target=flood_tenant, args=(soak, texts)),
            threading.Thread(target=trainer_tenant, args=(soak,)),
            threading.Thread(target=hostile_tenant, args=(soak,)),
        ]
        print(
            f"soak: {args.minutes:g} min, SIGKILL + restart every {args.fault_every:g} s",
            flush=True,
        )
        for worker in workers:
            worker.start()
        fault_count = [0]
        injector = threading.Thread(
            target=lambda: fault_count.__setitem__(0, faults(soak, args.fault_every))
        )
        injector.start()
        time.sleep(args.minutes * 60)
        soak.stop.set()
        injector.join()
        for worker in workers:
            worker.join(timeout=120)
        soak.up.set()
        lost, stuck = check_end_state(soak)
        server.stop()
    good = soak.tally("good")
    p50 = statistics.median(good.latencies) * 1000
    p99 = statistics.quantiles(good.latencies, n=100)[98] * 1000
    refused = good.codes.get("RESOURCE_EXHAUSTED", 0)
    for name, tally in sorted(soak.tallies.items()):
        print(
            f"  {name:13s} ok {len(tally.latencies):6d}  failed {dict(sorted(tally.codes.items()))}"
        )
    print(f"faults injected: {fault_count[0]}")
    print(
        f"versions checked (published, not deleted): {len(soak.published)}, jobs: {len(soak.jobs)}"
    )
    print(
        f"good tenant 1-text Embed: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(good.latencies)} calls"
    )
    print(f"one flood request alone (256 texts, the quiet server): {flood_alone * 1000:.0f} ms")
    print(f"good tenant refused while up: {refused}")
    print(f"lost heads: {lost}, stuck jobs: {stuck}")
    return 1 if lost or stuck or refused else 0


if __name__ == "__main__":
    sys.exit(main())
