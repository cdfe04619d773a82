"""Canonical sender ids: E.164 digits, and the Brazilian ninth digit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_core.services.senders import InvalidSenderError, canonical_sender_id


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        pytest.param("5511999999999", "5511999999999", id="br-mobile-13-digits"),
        pytest.param("551199999999", "5511999999999", id="br-mobile-12-digits-gets-the-9"),
        pytest.param("558187654321", "5581987654321", id="br-mobile-12-digits-starting-8"),
        pytest.param("551160001234", "5511960001234", id="br-mobile-12-digits-starting-6"),
        pytest.param("551133334444", "551133334444", id="br-landline-never-gets-a-9"),
        pytest.param("552125551234", "552125551234", id="br-landline-starting-2"),
        pytest.param("+55 (11) 99999-9999", "5511999999999", id="punctuation-dropped"),
        pytest.param("14155552671", "14155552671", id="us-number-untouched"),
        pytest.param("351912345678", "351912345678", id="12-digit-portugal-untouched"),
    ],
)
def test_whatsapp_numbers_are_canonical(raw: str, canonical: str) -> None:
    assert canonical_sender_id("whatsapp", raw) == canonical


@pytest.mark.parametrize("raw", ["", "abc", "55119999x9999", "0551199999999", "1234567", "1" * 16])
def test_whatsapp_ids_that_are_not_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidSenderError):
        canonical_sender_id("whatsapp", raw)


def test_other_channels_keep_their_ids() -> None:
    assert canonical_sender_id("instagram", "551199999999") == "551199999999"


@given(
    ddd=st.integers(11, 99),
    first=st.sampled_from("6789"),
    rest=st.text("0123456789", min_size=7, max_size=7),
)
def test_both_forms_of_a_brazilian_mobile_are_one_sender(ddd: int, first: str, rest: str) -> None:
    old = f"55{ddd}{first}{rest}"
    new = f"55{ddd}9{first}{rest}"
    assert canonical_sender_id("whatsapp", old) == canonical_sender_id("whatsapp", new) == new


@given(
    ddd=st.integers(11, 99),
    first=st.sampled_from("2345"),
    rest=st.text("0123456789", min_size=7, max_size=7),
)
def test_a_brazilian_landline_is_its_own_canonical_form(ddd: int, first: str, rest: str) -> None:
    landline = f"55{ddd}{first}{rest}"
    assert canonical_sender_id("whatsapp", landline) == landline
