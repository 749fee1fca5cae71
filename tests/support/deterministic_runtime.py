"""A deterministic backbone runtime for tests: the real fair batcher in front of a fake model.

`DeterministicRuntime` is a `BackboneRuntime` built the way the real runtimes are: it advertises
its `RuntimeNeeds`, asks the backbone's modality for its call policy, collate and warm-up calls
(`Modality.batching`), feeds a real `FairBatcher` (one call in flight per tenant, lanes beside
it), and runs the warm-up calls before it reports ready. Only the model is replaced: a call's rows
come from its collated tensors through a fixed random projection (a bag of token ids for text), so
equal inputs give bit-equal rows whatever call they share, texts sharing words embed close, and no
file but a tokenizer is needed.

Hooks for tests, all driven by events (never by sleeping):

- `hold()`: from then on every call, warm-up calls included, starts and then waits until the test
  lets it go (`let_go(call)`), or until `release()` lets every call go, now and later.
- `calls`: every call in the order it started (`Call.items`, `.warm_up`, `.state`);
  `padded_tokens(call)`: its items x the length its texts were padded to.
- `submissions`: every `embed`, as (tenant, items), recorded when the batcher is asked.
- `until(condition)`: waits until `condition()` is true, checked again on every change of the
  two lists above and of each call's state.
- `failure`: while set, every call raises it (a broken model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.backbones.batcher import FairBatcher
from service.backbones.card import BackboneCard
from service.backbones.modalities.base import Modality
from service.backbones.modalities.tensors import TEXT_IDS
from service.backbones.runtimes.base import RuntimeNeeds
from service.backbones.runtimes.warm_up import warm_up

#: How long `until` waits before failing the test: a net under a broken test, never a pause.
UNTIL_TIMEOUT_S = 10.0


class Projection:
    """Collated tensors → unit rows, deterministically (a fixed seed, no state between calls).

    Text (``input_ids`` with ``attention_mask``): the sum of one fixed random vector per token id
    under the mask, normalised, so padding never changes a row and shared words mean close rows.
    Anything else (pixels): each row flattened through a fixed random matrix, normalised.
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        self._tokens: dict[int, np.ndarray] = {}
        self._matrices: dict[int, np.ndarray] = {}

    def token(self, token_id: int) -> np.ndarray:
        row = self._tokens.get(token_id)
        if row is None:
            rng = np.random.default_rng([self.seed, 0, token_id])
            row = self._tokens[token_id] = rng.standard_normal(self.dim)
        return row

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if "input_ids" in feed:
            ids = feed["input_ids"]
            mask = feed.get("attention_mask", np.ones_like(ids))
            rows = np.zeros((ids.shape[0], self.dim))
            for index in range(ids.shape[0]):
                for token_id in ids[index][mask[index] != 0]:
                    rows[index] += self.token(int(token_id))
        else:
            values = next(iter(feed.values()))
            flat = values.reshape(values.shape[0], -1).astype(np.float64)
            width = flat.shape[1]
            if width not in self._matrices:
                rng = np.random.default_rng([self.seed, 1, width])
                self._matrices[width] = rng.standard_normal((width, self.dim))
            rows = flat @ self._matrices[width]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return (rows / np.where(norms == 0, 1.0, norms)).astype(np.float32)


@dataclass(eq=False)
class Call:
    """One call the runtime received: warm-up or from the batcher."""

    items: list[Any]
    warm_up: bool
    state: str = "waiting"  # waiting (started, not let go yet), done, failed, cancelled
    go: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass(frozen=True)
class Submission:
    """One `embed` of the runtime: whose, and what (prepared items)."""

    tenant: str
    items: list[Any]


class DeterministicRuntime:
    """A `BackboneRuntime` whose model is a `Projection`; see the module's docstring.

    Args:
        card: The backbone's card (its name and dim are used).
        modality: Plans and collates the calls, as for a real runtime.
        max_batch_size: Items of one call (and of a full call, for the tenants' turns).
        lanes: Calls in flight at once; a tenant has one of them at most.
        max_batch_tokens: Padded tokens of one text call (None: the modality's default).
        bucketed: Ask for Triton's needs instead of the embedded runtime's: texts padded to
            length buckets, and the gateway neither merges groups nor plans a tenant's
            requests together (Triton's own batcher merges calls).
        seed: The projection's seed.
    """

    kind = "deterministic"

    def __init__(
        self,
        card: BackboneCard,
        modality: Modality,
        *,
        max_batch_size: int = 4,
        lanes: int = 2,
        max_batch_tokens: int | None = None,
        bucketed: bool = False,
        seed: int = 0,
    ) -> None:
        self.card = card
        self.needs = RuntimeNeeds(
            max_batch_size=lambda: max_batch_size,
            full_call_items=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            bucketed=bucketed,
            merges=not bucketed,
        )
        self._batching = modality.batching(self.needs)
        self._batcher: FairBatcher[Any, np.ndarray] = FairBatcher(
            card.name,
            self._run_call,
            self._batching.calls,
            max_in_flight=lanes,
            one_call_per_tenant=True,
            fill_items=max_batch_size,
            coalesce_items=0 if bucketed else 4 * max_batch_size,
        )
        self.projection = Projection(card.dim, seed)
        self.calls: list[Call] = []
        self.submissions: list[Submission] = []
        self.failure: Exception | None = None
        self._held = False
        self._ready = False
        self._waiters: list[asyncio.Event] = []

    # The BackboneRuntime protocol.

    async def start(self) -> None:
        await warm_up(self.card.name, self._batching.warm_up(), self._warm_up_call)
        self._batcher.start()
        self._ready = True

    def is_ready(self) -> bool:
        return self._ready

    async def embed(
        self, items: list[Any], tenant: str, deadline: float | None = None
    ) -> np.ndarray:
        self.submissions.append(Submission(tenant, list(items)))
        self._changed()
        rows = await self._batcher.submit(tenant, items, deadline)
        return np.stack(rows).astype(np.float32, copy=False)

    async def close(self) -> None:
        self._ready = False
        self.release()
        await self._batcher.close()

    # Hooks for tests.

    def vectors(self, items: list[Any]) -> np.ndarray:
        """The rows these prepared items get, computed here without the batcher."""
        return self.projection(self._batching.collate(items))

    def padded_tokens(self, call: Call) -> int:
        """What a call costs the model in tokens: items x the sequence length it was padded to
        (the collated ids' shape, so bucket rounding is counted)."""
        ids = self._batching.collate(call.items)[TEXT_IDS]
        return int(ids.shape[0] * ids.shape[1])

    @property
    def served_calls(self) -> list[Call]:
        """The calls the batcher made (warm-up calls left out)."""
        return [call for call in self.calls if not call.warm_up]

    def submitted(self, tenant: str) -> int:
        """How many times `tenant`'s work reached this runtime."""
        return sum(1 for submission in self.submissions if submission.tenant == tenant)

    def hold(self) -> None:
        """Every call from now on waits, once started, until it is let go."""
        self._held = True

    def let_go(self, call: Call) -> None:
        call.go.set()

    def release(self) -> None:
        """Lets every waiting call go, and no later call wait."""
        self._held = False
        for call in self.calls:
            call.go.set()

    async def until(self, condition: Callable[[], bool], what: str = "") -> None:
        """Waits until `condition()` holds (checked on each change the runtime sees)."""
        try:
            async with asyncio.timeout(UNTIL_TIMEOUT_S):
                while not condition():
                    event = asyncio.Event()
                    self._waiters.append(event)
                    await event.wait()
        except TimeoutError:
            raise AssertionError(f"never happened: {what or condition}") from None

    # The model.

    async def _warm_up_call(self, items: list[Any]) -> np.ndarray:
        return await self._call(items, warm_up=True)

    async def _run_call(self, items: list[Any]) -> np.ndarray:
        return await self._call(items, warm_up=False)

    async def _call(self, items: list[Any], warm_up: bool) -> np.ndarray:
        call = Call(list(items), warm_up)
        self.calls.append(call)
        if not self._held:
            call.go.set()
        self._changed()
        try:
            await call.go.wait()
            if self.failure is not None:
                raise self.failure
            rows = self.vectors(items)
            call.state = "done"
        except asyncio.CancelledError:
            call.state = "cancelled"
            raise
        except Exception:
            call.state = "failed"
            raise
        finally:
            self._changed()
        return rows

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()
