"""Canonical sender ids: phone numbers through libphonenumber, JIDs, the Brazilian ninth digit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
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
        pytest.param("552187650001", "5521987650001", id="br-mobile-12-digits-only-possible"),
        pytest.param("551133334444", "551133334444", id="br-landline-never-gets-a-9"),
        pytest.param("552125551234", "552125551234", id="br-landline-starting-2"),
        pytest.param("+55 (11) 99999-9999", "5511999999999", id="punctuation-dropped"),
        pytest.param("14155552671", "14155552671", id="us-number-untouched"),
        pytest.param("+1 415 555 2671", "14155552671", id="us-number-with-plus"),
        pytest.param("351912345678", "351912345678", id="12-digit-portugal-untouched"),
        pytest.param("447911123456", "447911123456", id="uk-mobile-not-read-as-national"),
    ],
)
def test_whatsapp_numbers_are_canonical(raw: str, canonical: str) -> None:
    assert canonical_sender_id("whatsapp", raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        pytest.param("(21) 98765-0001", "5521987650001", id="area-code-in-parentheses"),
        pytest.param("21 98765-0001", "5521987650001", id="area-code-and-spaces"),
        pytest.param("21987650001", "5521987650001", id="national-digits-only"),
        pytest.param("(11) 98765-4321", "5511987654321", id="sao-paulo-not-read-as-nanp"),
        pytest.param("021 98765-0001", "5521987650001", id="trunk-prefix"),
        pytest.param("(11) 8765-4321", "5511987654321", id="national-old-form-gets-the-9"),
        pytest.param("(11) 3333-4444", "551133334444", id="national-landline"),
        # libphonenumber reads a trunk 0 then a carrier code (55) then the area code
        pytest.param("0551199999999", "5511999999999", id="trunk-and-carrier-code"),
    ],
)
def test_national_numbers_are_read_in_the_default_region(raw: str, canonical: str) -> None:
    assert canonical_sender_id("whatsapp", raw) == canonical


def test_the_default_region_can_be_given() -> None:
    assert canonical_sender_id("whatsapp", "912 345 678", region="PT") == "351912345678"
    # digits-only WhatsApp ids stay international whatever the region
    assert canonical_sender_id("whatsapp", "5511999999999", region="PT") == "5511999999999"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        pytest.param("5521987650001@s.whatsapp.net", "5521987650001", id="jid"),
        pytest.param("5521987650001:12@s.whatsapp.net", "5521987650001", id="jid-with-device"),
        pytest.param("5521987650001@c.us", "5521987650001", id="c-us-jid"),
        pytest.param("552187650001@s.whatsapp.net", "5521987650001", id="jid-old-form-gets-the-9"),
        pytest.param("14155552671@c.us", "14155552671", id="jid-of-another-country"),
    ],
)
def test_whatsapp_jids_map_to_their_number(raw: str, canonical: str) -> None:
    assert canonical_sender_id("whatsapp", raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("120363040000000000@g.us", "group", id="group"),
        pytest.param("5511999999999-1600000000@g.us", "group", id="old-group"),
        pytest.param("status@broadcast", "not a phone number", id="status-broadcast"),
        pytest.param("123456789012345@lid", "not a phone number", id="linked-id"),
        pytest.param("120363000000000000@newsletter", "not a phone number", id="channel"),
        pytest.param("abc@s.whatsapp.net", "phone number", id="jid-without-digits"),
    ],
)
def test_jids_that_are_not_a_persons_number_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidSenderError, match=reason):
        canonical_sender_id("whatsapp", raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "55119999x9999",
        "1234567",
        "1" * 16,
        "+999 1234 5678",  # no such country code
        "1-800-FLOWERS",  # letters are not read as digits
        "5511999999999 ext. 12",
        "55+11999999999",
        "(21) 98765",
        "++5511999999999",
        # a local number without its area code: possible in BR's plan and as Iran's +98, but
        # written by a person, so it must be valid, and filing it under +98 would be nobody's
        "98765-0001",
        "3333-4444",
    ],
)
def test_whatsapp_ids_that_are_not_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidSenderError, match="phone number"):
        canonical_sender_id("whatsapp", raw)


@given(st.text(max_size=40) | st.from_regex(r"\+?[0-9 ().-]{0,20}(@[a-z.]{0,16})?", fullmatch=True))
def test_any_text_is_e164_digits_or_refused_with_an_invalid_sender_error(raw: str) -> None:
    try:
        canonical = canonical_sender_id("whatsapp", raw)
    except InvalidSenderError:
        return
    assert canonical.isascii()
    assert canonical.isdigit()
    assert len(canonical) <= 15, canonical


def test_other_channels_keep_their_ids() -> None:
    assert canonical_sender_id("instagram", "551199999999") == "551199999999"
    assert canonical_sender_id("webchat", "(21) 98765-0001") == "(21) 98765-0001"


# Every two-digit area code but 90, which Brazil does not use: libphonenumber reads a national
# number's leading 90 as the collect-call prefix and drops it.
DDDS = st.integers(11, 99).filter(lambda ddd: ddd != 90)


@given(
    ddd=DDDS,
    first=st.sampled_from("6789"),
    rest=st.text("0123456789", min_size=7, max_size=7),
)
def test_both_forms_of_a_brazilian_mobile_are_one_sender(ddd: int, first: str, rest: str) -> None:
    old = f"55{ddd}{first}{rest}"
    new = f"55{ddd}9{first}{rest}"
    assert canonical_sender_id("whatsapp", old) == canonical_sender_id("whatsapp", new) == new
    assert canonical_sender_id("whatsapp", f"{old}@s.whatsapp.net") == new


@given(
    ddd=DDDS,
    first=st.sampled_from("2345"),
    rest=st.text("0123456789", min_size=7, max_size=7),
)
def test_a_brazilian_landline_is_its_own_canonical_form(ddd: int, first: str, rest: str) -> None:
    landline = f"55{ddd}{first}{rest}"
    assert canonical_sender_id("whatsapp", landline) == landline


# The same input behaves the same on every route that takes a sender id.

FORMS = ["(21) 98765-0001", "5521987650001:12@s.whatsapp.net", "552187650001@c.us"]


def _message(sender_id: str, content: str = "oi") -> dict[str, Any]:
    return {"source": "whatsapp", "sender_id": sender_id, "content": content, "metadata": {}}


def test_every_form_of_a_number_is_one_contact_on_every_route(client: TestClient) -> None:
    single = client.post("/ingest/message", json=_message(FORMS[0]))
    assert single.status_code == 202, single.text
    contact_id = single.json()["contact_id"]
    batch = client.post("/ingest/messages", json={"messages": [_message(f) for f in FORMS[1:]]})
    assert batch.status_code == 200, batch.text
    assert [r["contact_id"] for r in batch.json()["results"]] == [contact_id, contact_id]
    for form in [*FORMS, "5521987650001"]:
        found = client.get("/contacts", params={"source": "whatsapp", "sender_id": form}).json()
        assert [c["id"] for c in found["data"]] == [contact_id], form
        assert found["data"][0]["sender_id"] == "5521987650001"
    group = {"source": "whatsapp", "sender_id": "120363040000000000@g.us"}
    assert client.get("/contacts", params=group).json()["data"] == []  # a filter, not a 422
    messages = client.get(f"/contacts/{contact_id}/messages").json()["data"]
    assert sorted(m["sender_id"] for m in messages) == sorted(FORMS)  # kept as sent


@pytest.mark.parametrize("sender_id", ["120363040000000000@g.us", "não é número"])
def test_a_sender_that_is_not_a_persons_number_is_a_422_on_both_ingest_routes(
    client: TestClient, sender_id: str
) -> None:
    single = client.post("/ingest/message", json=_message(sender_id))
    assert single.status_code == 422, single.text
    assert single.headers["content-type"] == "application/problem+json"
    assert "sender_id" in single.text
    batch = client.post("/ingest/messages", json={"messages": [_message(sender_id)]}).json()
    (result,) = batch["results"]
    assert result["status"] == "rejected"
    assert result["problem"]["status"] == 422
    (error,) = single.json()["errors"]
    assert error["pointer"] == "#/sender_id"
    assert "phone number" in error["detail"]
    (batch_error,) = result["problem"]["errors"]
    assert batch_error["pointer"] == "#/messages/0/sender_id"
    assert batch_error["detail"] == error["detail"]  # the same message on both routes
