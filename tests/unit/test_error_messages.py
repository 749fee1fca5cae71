"""Error messages never grow with the request: echoed values are cut, and so is every message."""

from __future__ import annotations

import grpc
import pytest

from heads import InvalidParams
from heads.kinds import get_kind
from heads.params import FloatParam, parse_params
from service.api.interceptors import MAX_MESSAGE_CHARS, status_of
from service.errors import InvalidArgument, NotFound, shown

HUGE = "x" * 1_000_000


def test_shown_quotes_and_cuts_to_64_characters() -> None:
    assert shown("acme") == "'acme'"
    assert shown(HUGE).startswith("'" + "x" * 64 + "… (1000000 characters)")
    assert len(shown(HUGE)) < 100


def test_an_unknown_kind_is_echoed_cut() -> None:
    with pytest.raises(InvalidParams) as caught:
        get_kind(HUGE)
    assert len(str(caught.value)) < 300


def test_an_unknown_param_name_and_value_are_echoed_cut() -> None:
    specs = {"C": FloatParam("inverse regularisation", 1.0, gt=0.0)}
    with pytest.raises(InvalidParams) as caught:
        parse_params(specs, {HUGE: "1"})
    assert len(str(caught.value)) < 300
    with pytest.raises(InvalidParams) as caught:
        parse_params(specs, {"C": HUGE})
    assert len(str(caught.value)) < 300


def test_every_client_message_is_bounded() -> None:
    code, message = status_of(NotFound(f"job {HUGE} not found"))
    assert code is grpc.StatusCode.NOT_FOUND
    assert len(message) <= MAX_MESSAGE_CHARS + 1
    code, message = status_of(InvalidArgument("inputs", "short"))
    assert message == "inputs: short"
