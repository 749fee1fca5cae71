"""Admission: a backbone's capacity shared by the tenants using it, counted before any work."""

from __future__ import annotations

import pytest

from service.backbones.admission import LOCAL_TENANT, AdmissionGate, calling_tenant
from service.backbones.modalities.text import text_tokens_bound
from service.errors import ResourceExhausted


def test_a_tenant_over_its_share_is_refused_naming_its_share() -> None:
    gate = AdmissionGate("minilm", capacity=1000, unit="tokens")
    gate.admit("a", 600)
    with pytest.raises(ResourceExhausted, match="this tenant's share of backbone 'minilm'"):
        gate.admit("a", 500)  # alone, a's share is all 1000


def test_a_tenant_under_its_share_is_let_in_while_another_floods() -> None:
    gate = AdmissionGate("minilm", capacity=1000, unit="tokens")
    gate.admit("a", 400)
    gate.admit("a", 400)
    gate.admit("b", 300)  # two tenants now: shares of 500; b holds 300
    gate.admit("b", 200)
    with pytest.raises(ResourceExhausted):
        gate.admit("a", 10)  # a holds 800, over its 500
    with pytest.raises(ResourceExhausted):
        gate.admit("b", 10)  # b at exactly its share


def test_a_tenant_holding_nothing_is_always_let_in_once() -> None:
    """However many tenants hold the capacity, a newcomer's first request goes in (progress)."""
    gate = AdmissionGate("minilm", capacity=100, unit="tokens")
    for tenant in "abcd":
        gate.admit(tenant, 100)
    gate.admit("e", 5000)
    assert gate.held("e") == 5000
    with pytest.raises(ResourceExhausted):
        gate.admit("e", 1)


def test_released_tickets_give_the_share_back_once() -> None:
    gate = AdmissionGate("minilm", capacity=100, unit="tokens")
    with gate.admit("a", 80):
        assert gate.held("a") == 80
        with pytest.raises(ResourceExhausted):
            gate.admit("a", 30)
    assert gate.held("a") == 0
    ticket = gate.admit("a", 30)
    ticket.release()
    ticket.release()  # idempotent: never gives back twice
    assert gate.held("a") == 0
    assert gate.share("b") == 100


def test_text_cost_is_an_upper_bound_capped_at_the_model_length() -> None:
    assert text_tokens_bound("hello", 256) == 7  # 5 bytes + [CLS] + [SEP]
    assert text_tokens_bound("é" * 10, 256) == 22  # bytes, not characters: byte-level BPE
    assert text_tokens_bound("word " * 1000, 256) == 256


def test_without_a_principal_work_counts_as_the_local_tenant() -> None:
    assert calling_tenant() == LOCAL_TENANT
