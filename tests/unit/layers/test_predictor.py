"""The Predictor on a real registry (SQLite, head files) and a head trained on tiny embeddings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from heads import TrainedHead, train_head
from service.backbones.inputs import EmbeddingInput, Input, TextInput
from service.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from service.predictor import Predictor
from service.reply_size import predict_reply_bound
from service.store.database import Database
from service.store.head_files import HeadFiles
from service.store.registry import HeadRegistry
from tests.support.scenario import run
from tests.support.tiny_backbone import TOPICS, TinyStack, TinyTextBackbone, running_embedder

#: Phrases made of each topic's words (not training texts), and their topic.
PROBES = {
    "a goal for the team": "sports",
    "garlic and butter in the oven": "cooking",
    "rain and snow tonight": "weather",
}


@pytest.fixture(scope="module")
def topic_head(backbone: TinyTextBackbone) -> TrainedHead:
    """A logistic regression head over every TOPICS text, embedded by the tiny backbone."""
    texts = [text for examples in TOPICS.values() for text in examples]
    labels = [topic for topic, examples in TOPICS.items() for _ in examples]
    return train_head("logistic_regression", backbone.vectors(texts), labels)


@dataclass
class Serving:
    predictor: Predictor
    stack: TinyStack
    registry: HeadRegistry


@asynccontextmanager
async def serving(
    data_dir: Path, backbone: TinyTextBackbone, head: TrainedHead, max_reply_bytes: int = 1 << 20
) -> AsyncIterator[Serving]:
    """A Predictor over the tiny backbone, with `head` published as acme's "topic" v1."""
    db = Database(data_dir)
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-heads")
    registry = HeadRegistry(db, HeadFiles(data_dir), cache_size=4, executor=pool)
    try:
        async with running_embedder(backbone) as stack:
            card = backbone.card
            await registry.publish("acme", "topic", head, card.name, card.fingerprint)
            yield Serving(
                Predictor(stack.embedder, registry, pool, max_reply_bytes), stack, registry
            )
    finally:
        db.close()
        pool.shutdown(wait=True)


def test_texts_and_embeddings_are_predicted_by_the_tenants_head(
    tmp_path: Path, backbone: TinyTextBackbone, topic_head: TrainedHead
) -> None:
    """Texts are embedded (as the calling tenant, in one request) and embeddings go straight to
    the head; each input gets its topic, scores over every label, best first, or top_k of them."""
    texts = list(PROBES)
    inputs: list[Input] = [
        TextInput(texts[0]),
        EmbeddingInput(backbone.vectors([texts[1]])[0]),
        TextInput(texts[2]),
    ]

    async def scenario() -> None:
        async with serving(tmp_path, backbone, topic_head) as s:
            result = await s.predictor.predict("acme", "topic", 0, inputs, top_k=0)
            assert (result.head, result.version) == ("topic", 1)
            assert [p.label for p in result.predictions] == list(PROBES.values())
            for prediction in result.predictions:
                assert sorted(label for label, _ in prediction.scores) == sorted(TOPICS)
                values = [score for _, score in prediction.scores]
                assert values == sorted(values, reverse=True)
                assert sum(values) == pytest.approx(1.0, abs=1e-5)
            (submission,) = s.stack.runtime.submissions
            assert submission.tenant == "acme" and len(submission.items) == 2
            top = await s.predictor.predict("acme", "topic", 1, inputs, top_k=1)
            assert [len(p.scores) for p in top.predictions] == [1, 1, 1]
            assert [p.scores[0][0] for p in top.predictions] == list(PROBES.values())

    run(scenario())


def test_another_tenants_head_is_not_found_and_nothing_is_embedded(
    tmp_path: Path, backbone: TinyTextBackbone, topic_head: TrainedHead
) -> None:
    """Tenant isolation: globex asking for acme's head gets NOT_FOUND, worded like a head that
    never existed; so does a version acme never published. No input is embedded for either."""

    async def scenario() -> None:
        async with serving(tmp_path, backbone, topic_head) as s:
            probe = [TextInput("a goal for the team")]
            with pytest.raises(NotFound) as other_tenants:
                await s.predictor.predict("globex", "topic", 0, probe, top_k=0)
            with pytest.raises(NotFound) as never_trained:
                await s.predictor.predict("acme", "topik", 0, probe, top_k=0)
            assert str(other_tenants.value) == str(never_trained.value).replace("topik", "topic")
            with pytest.raises(NotFound, match="version 2"):
                await s.predictor.predict("acme", "topic", 2, probe, top_k=0)
            assert s.stack.runtime.submissions == []

    run(scenario())


def test_a_reply_too_large_is_refused_before_any_work(
    tmp_path: Path, backbone: TinyTextBackbone, topic_head: TrainedHead
) -> None:
    """The reply's size is bounded from the head's card first: over the limit is
    RESOURCE_EXHAUSTED naming a top_k that fits, with nothing embedded; that top_k then works."""
    inputs: list[Input] = [TextInput(text) for text in TOPICS["sports"]]

    async def scenario() -> None:
        async with serving(tmp_path, backbone, topic_head) as probe_size:
            card = await probe_size.registry.get("acme", "topic")
        limit = predict_reply_bound(card, len(inputs), 0) - 1
        assert predict_reply_bound(card, len(inputs), 1) <= limit
        async with serving(tmp_path / "limited", backbone, topic_head, limit) as s:
            with pytest.raises(ResourceExhausted, match=r"top_k=(\d+)") as refused:
                await s.predictor.predict("acme", "topic", 0, inputs, top_k=0)
            assert s.stack.runtime.submissions == []
            fitting = int(refused.value.message.split("top_k=")[1].split()[0])
            assert 1 <= fitting < len(TOPICS)
            result = await s.predictor.predict("acme", "topic", 0, inputs, top_k=fitting)
            assert all(len(p.scores) == fitting for p in result.predictions)

    run(scenario())


def test_bad_embeddings_and_a_stale_backbone_are_refused(
    tmp_path: Path, backbone: TinyTextBackbone, topic_head: TrainedHead
) -> None:
    """An embedding of the wrong width is named by index; a head trained on another export of
    the backbone (another fingerprint) is FAILED_PRECONDITION, not served with wrong vectors."""

    async def scenario() -> None:
        async with serving(tmp_path, backbone, topic_head) as s:
            wrong = [TextInput("goal"), EmbeddingInput(np.zeros(3, np.float32))]
            with pytest.raises(InvalidArgument) as refused:
                await s.predictor.predict("acme", "topic", 0, wrong, top_k=0)
            assert refused.value.field == "inputs[1].embedding"
            nan = np.full(backbone.card.dim, np.nan, np.float32)
            with pytest.raises(InvalidArgument, match="NaN"):
                await s.predictor.predict("acme", "topic", 0, [EmbeddingInput(nan)], top_k=0)
            await s.registry.publish("acme", "old", topic_head, backbone.card.name, "0" * 64)
            with pytest.raises(FailedPrecondition, match="train it again"):
                await s.predictor.predict("acme", "old", 0, [TextInput("goal")], top_k=0)
            assert s.stack.runtime.submissions == []

    run(scenario())
