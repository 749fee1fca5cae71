"""Exception hierarchy of the `heads` package.

The service maps these kinds to gRPC status codes in one place (its error interceptor):
`InvalidTrainingData`, `InvalidParams` and `InvalidInput` are the caller's fault and carry the
request field they refer to; `HeadVerificationError` and `HeadFormatError` are ours.
"""

from __future__ import annotations

SHOWN_CHARS = 64


def cut(value: object) -> str:
    """A request value as an error message may echo it: cut to 64 characters.

    Errors must never grow with the request (a 1 MB value would make the error itself fail).
    """
    text = str(value)
    if len(text) > SHOWN_CHARS:
        return f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"
    return text


def shown(value: object) -> str:
    """`cut(value)`, quoted."""
    return repr(cut(value))


class HeadError(Exception):
    """Base class of every error raised on purpose by `heads`."""


class _FieldError(HeadError):
    """An error caused by one field of the caller's request.

    Attributes:
        field: The request field at fault, in the API's own spelling, e.g. ``examples[3].label``,
            ``params[C]``, ``validation_fraction`` or ``kind``.
        message: A human-readable explanation, without the field name.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTrainingData(_FieldError):
    """The examples cannot be trained on (mixed target kinds, empty labels, NaN values...)."""


class InvalidParams(_FieldError):
    """The kind, a hyper-parameter or the validation fraction is unknown or out of range."""


class InvalidInput(_FieldError, ValueError):
    """Inputs given to a loaded head for prediction do not fit it (wrong dimension, NaN...).

    Also a `ValueError`, so callers that only know the builtin hierarchy still catch it.
    """


class HeadVerificationError(HeadError):
    """The exported ONNX graph does not reproduce the fitted model; nothing may be published."""


class HeadFormatError(HeadError):
    """A stored head card or ONNX file cannot be loaded (corrupt, tampered or unsupported)."""
