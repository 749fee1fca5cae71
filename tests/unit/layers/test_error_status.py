"""Error kinds → gRPC status codes and messages, as the interceptor maps them (no server)."""

from __future__ import annotations

import re

import grpc
import pytest

import heads
from service import errors
from service.api.interceptors import INTERNAL_MESSAGE, status_of

#: Every kind of service error a client can get, and the status code it must get.
EXPECTED: dict[type[Exception], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
}

#: Every error kind `service.errors` defines (the base class aside).
DEFINED = sorted(
    (
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type)
        and issubclass(kind, errors.TransferdError)
        and kind is not errors.TransferdError
    ),
    key=lambda kind: kind.__name__,
)


def _example(kind: type[Exception]) -> Exception:
    if kind is errors.InvalidArgument:
        return errors.InvalidArgument("inputs[3].text", "must not be empty")
    return kind("tenant 'acme' already has 2 jobs")


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda kind: kind.__name__)
def test_each_error_kind_gets_its_status_code_and_its_own_message(kind: type[Exception]) -> None:
    """The client sees the kind's status code and the error's message, unchanged."""
    error = _example(kind)
    assert status_of(error) == (EXPECTED[kind], str(error))


def test_the_field_of_an_invalid_argument_leads_its_message() -> None:
    """INVALID_ARGUMENT messages start with the offending field, so clients can point at it."""
    code, message = status_of(errors.InvalidArgument("examples[7].input.text", "must not be empty"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "examples[7].input.text: must not be empty"


@pytest.mark.parametrize("kind", DEFINED, ids=lambda kind: kind.__name__)
def test_every_defined_kind_is_mapped_to_the_code_it_is_named_after(kind: type[Exception]) -> None:
    """A new error kind added to service.errors without a mapping would reach clients as
    INTERNAL; each kind's code is the one its name spells (AlreadyExists → ALREADY_EXISTS)."""
    code_name = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).upper()
    code, _ = status_of(_example(kind))
    assert code is getattr(grpc.StatusCode, code_name)


def test_a_subclass_is_mapped_like_its_kind() -> None:
    """Errors are mapped by kind, so a specialised error keeps its kind's status code."""

    class QuotaExceeded(errors.ResourceExhausted):
        pass

    assert status_of(QuotaExceeded("over quota")) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "over quota",
    )


@pytest.mark.parametrize(
    "error",
    [
        heads.InvalidTrainingData("examples[2].label", "must not be empty"),
        heads.InvalidParams("params[C]", "must be a number"),
        heads.InvalidInput("inputs", "has NaN values"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_heads_callers_errors_are_invalid_argument_naming_the_field(error: Exception) -> None:
    """The heads package's errors about the request are the caller's: INVALID_ARGUMENT, field
    first."""
    code, message = status_of(error)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == str(error) and message.startswith(error.field)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [
        KeyError("/var/lib/transferd/heads/acme"),
        RuntimeError("secret internal state"),
        heads.HeadVerificationError("the export differs"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_anything_else_is_internal_and_shows_nothing_of_itself(error: Exception) -> None:
    """Unexpected errors are INTERNAL with one fixed message: no paths or internals leak."""
    assert status_of(error) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
