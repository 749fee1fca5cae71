"""Raw request bytes → a protobuf message, with every limit checked before the decode.

gRPC hands our handlers the raw bytes (the interceptor removes its deserializer), so the order
is ours: the caller is authenticated first, then the size is checked, then the repeated fields
are counted on the wire, and only then is the message decoded, off the event loop when it is
large. A malformed message is INVALID_ARGUMENT with one log line, like any other bad input.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from google.protobuf.message import DecodeError

from service.api import wire
from service.api.request_limits import (
    MAX_OTHER_FIELDS,
    OFF_LOOP_BYTES,
    MethodLimits,
    NestedLimit,
    PathLimit,
)
from service.errors import InvalidArgument, ResourceExhausted

log = logging.getLogger(__name__)

Parse = Callable[[bytes], Any]


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} bytes"


def check_and_parse(method: str, raw: bytes, limits: MethodLimits, parse: Parse) -> Any:
    """Checks `raw` against `limits`, then decodes it (pure CPU work: call it anywhere).

    Raises:
        ResourceExhausted: the message is larger than the method allows.
        InvalidArgument: a repeated field has too many elements (naming it), or the bytes are
            not a valid message of this method.
    """
    if len(raw) > limits.max_bytes:
        raise ResourceExhausted(
            f"request of {_size(len(raw))} exceeds the limit of {_size(limits.max_bytes)} "
            f"for {method}"
        )
    try:
        over = wire.count_top_level(raw, limits.counts, MAX_OTHER_FIELDS)
    except wire.MalformedMessage as error:
        log.warning("malformed %s request (%d bytes): %s", method, len(raw), error)
        raise InvalidArgument("request", "is not a valid protobuf message") from None
    if over is not None:
        if over.field_number == 0:
            raise InvalidArgument("request", f"has more than {over.limit} unexpected fields")
        name, limit = limits.repeated[over.field_number]
        raise InvalidArgument(name, f"more than {limit} given; at most {limit} per request")
    if limits.nested is not None:
        _check_nested(method, raw, limits.nested)
    for path in limits.paths:
        _check_path(method, raw, path)
    try:
        return parse(raw)
    except DecodeError as error:  # e.g. a string field that is not valid UTF-8
        log.warning("malformed %s request (%d bytes): %s", method, len(raw), error)
        raise InvalidArgument("request", "is not a valid protobuf message") from None


def _check_nested(method: str, raw: bytes, nested: NestedLimit) -> None:
    (outer, outer_number), (inner, inner_number) = nested.outer, nested.inner
    try:
        over = wire.count_nested(raw, outer_number, inner_number, nested.per_element, nested.in_all)
    except wire.MalformedMessage as error:
        log.warning("malformed %s request (%d bytes): %s", method, len(raw), error)
        raise InvalidArgument("request", "is not a valid protobuf message") from None
    if over is None:
        return
    if over.index is None:
        raise InvalidArgument(
            outer, f"more than {over.limit} {inner} in all; at most {over.limit} per request"
        )
    raise InvalidArgument(
        f"{outer}[{over.index}].{inner}", f"more than {over.limit} given; at most {over.limit}"
    )


def _check_path(method: str, raw: bytes, path: PathLimit) -> None:
    try:
        over = wire.count_in_path(raw, path.numbers, path.limit, path.packed)
    except wire.MalformedMessage as error:
        log.warning("malformed %s request (%d bytes): %s", method, len(raw), error)
        raise InvalidArgument("request", "is not a valid protobuf message") from None
    if over:
        raise InvalidArgument(
            path.name, f"more than {path.limit} given; at most {path.limit} per request"
        )


class RequestDecoder:
    """Decodes one method's requests under its limits, off the event loop when they are large.

    Args:
        executor: Where large requests are checked and decoded.
        limits: Limits by full method name; methods not listed get `default`.
        default: Limits of methods without bulk data.
    """

    def __init__(
        self, executor: Executor, limits: dict[str, MethodLimits], default: MethodLimits
    ) -> None:
        self._executor = executor
        self._limits = limits
        self._default = default

    def limits_of(self, method: str) -> MethodLimits:
        return self._limits.get(method, self._default)

    @property
    def largest(self) -> int:
        """The largest request any method accepts (gRPC's own receive limit)."""
        return max([self._default.max_bytes, *(m.max_bytes for m in self._limits.values())])

    async def decode(self, method: str, raw: bytes, parse: Parse) -> Any:
        limits = self.limits_of(method)
        if len(raw) <= OFF_LOOP_BYTES or len(raw) > limits.max_bytes:
            return check_and_parse(method, raw, limits, parse)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, check_and_parse, method, raw, limits, parse
        )
