"""Canonical sender ids: how one person is recognised across the forms a channel reports.

For WhatsApp the canonical form is the number's E.164 digits without the `+` (ITU-T E.164:
country code first, at most 15 digits), e.g. `5521987650001`. Numbers are read by Google's
libphonenumber (the `phonenumbers` package) and accepted when libphonenumber calls them
*possible* (a known country code and a length its numbering plan allows), not only *valid*:
numbering plans change faster than its metadata, and WhatsApp still reports ids that it calls
invalid (the 12-digit Brazilian form below), so a message is never refused for that.

What is accepted, and how it is read:

- A WhatsApp JID of a person, `<number>@s.whatsapp.net` or `<number>@c.us` (the form some
  gateways use), with or without a device suffix (`5521987650001:12@s.whatsapp.net`): its
  number, read as international. Other JIDs are refused: a group (`…@g.us`) is not a person,
  and a broadcast list, a channel (`…@newsletter`) or a linked id (`…@lid`, which hides the
  number) carries no phone number.
- A number with a leading `+`: international.
- A number without `+` is read two ways: as international, country code first (how WhatsApp
  sends ids: `5511999999999`), and as a national number of the default region (setting
  `CRM_DEFAULT_REGION`, `BR` unless set: `(21) 98765-0001`, `021 98765-0001`). The first of
  these wins: valid international, valid national, possible international; valid is judged
  after the ninth-digit rule below, and a merely possible reading is taken only for digits
  alone (a channel's id, like the 12-digit form below), never for a number a person wrote with
  separators and no `+`. So a WhatsApp id that is valid as sent is never re-read as national,
  `(11) 98765-4321` (São Paulo) is not taken for a North American number that cannot exist,
  `(21) 8765-0001` (an old mobile) is `5521987650001`, and `98765-0001` (a local number
  without its area code, which BR's plan and Iran's `+98` both call possible) is refused
  rather than filed under a number that is nobody's.
- Digits, white space, `(`, `)`, `.`, `-` and one leading `+` only: letters (`1-800-FLOWERS`),
  extensions and anything else are refused, as is a number libphonenumber cannot parse, that
  is not possible (a local number without its area code included) or is over 15 digits.

Then the WhatsApp rule for Brazil (`55`), on the E.164 digits: Brazilian mobile numbers gained
a ninth digit (a leading 9 after the two-digit area code, DDD) between 2012 and 2016 (Anatel,
Resolução 553/2010), but WhatsApp still reports many older accounts in the 12-digit form:

- 13 digits, `55` + DDD + `9` + 8 digits: a mobile, already canonical;
- 12 digits, `55` + DDD + 8 digits whose first digit is 6, 7, 8 or 9: a mobile in the old form;
  the canonical form inserts the `9` after the DDD (`55 11 8765 4321` -> `55 11 9 8765 4321`);
- 12 digits whose first subscriber digit is 2, 3, 4 or 5: a landline, canonical as it is and
  never given a ninth digit.

Both forms of a mobile therefore resolve to one contact. Other channels' ids are kept as sent.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType, ValidationResult

from crm_core.config import get_settings

WHATSAPP = "whatsapp"
E164_MAX_DIGITS = 15
PERSON_JID_SERVERS = frozenset({"s.whatsapp.net", "c.us"})
GROUP_JID_SERVER = "g.us"
_PHONE_TEXT = re.compile(r"\+?[0-9\s().-]+")
_JID_USER = re.compile(r"(?P<number>[0-9]+)(?::[0-9]+)?")  # the number, then a device
_BRAZIL = "55"
_MOBILE_FIRST_DIGITS = frozenset("6789")


class InvalidSenderError(ValueError):
    """The sender id is not a valid id for its channel."""


def e164_digits(raw: str, region: str) -> str:
    """The E.164 digits (no `+`) of a phone number or person's JID, read as the module says.

    `region` is an ISO 3166-1 alpha-2 code libphonenumber knows (`BR`): the region of a number
    written in national form. Raises InvalidSenderError, whose message says what was expected,
    when `raw` is not a possible phone number (libphonenumber, `is_possible_number_with_reason`
    is IS_POSSIBLE) or not a person's JID.
    """
    user, at, server = raw.partition("@")
    if at:
        return _jid_number(user, server.lower(), region)
    if not _PHONE_TEXT.fullmatch(raw) or "+" in raw[1:]:
        raise InvalidSenderError(_not_a_number(region))
    number = _read_number(raw, region)
    if number is None:
        raise InvalidSenderError(_not_a_number(region))
    return _digits(number)


def brazilian_canonical(digits: str) -> str:
    """Give a 12-digit Brazilian mobile its ninth digit; leave every other number alone.

    `digits` are E.164 digits without `+`. The rule and its source are in the module docstring.
    """
    if digits.startswith(_BRAZIL) and len(digits) == 12 and digits[4] in _MOBILE_FIRST_DIGITS:
        return f"{digits[:4]}9{digits[4:]}"
    return digits


def canonical_sender_id(source: str, sender_id: str, region: str | None = None) -> str:
    """The form under which the contact of (source, sender_id) is stored and found.

    For WhatsApp, the E.164 digits of the number with the Brazilian ninth digit (module
    docstring); national forms are read in `region`, by default the `default_region` setting
    (`CRM_DEFAULT_REGION`). Other sources' ids are returned as they are. Raises
    InvalidSenderError for a WhatsApp id that is not a person's phone number.
    """
    if source != WHATSAPP:
        return sender_id
    return _canonical_whatsapp_id(sender_id, region or get_settings().default_region)


@functools.lru_cache(maxsize=65_536)  # a busy channel hears from the same people all day
def _canonical_whatsapp_id(sender_id: str, region: str) -> str:
    return brazilian_canonical(e164_digits(sender_id, region))


def _read_number(raw: str, region: str) -> PhoneNumber | None:
    """The first of: valid international, valid national, possible international (digits
    alone: a channel's id). A `+` allows only the international reading. Valid is judged after
    the Brazilian ninth-digit rule, so an old 8-digit mobile written with its area code counts."""
    if raw.startswith("+"):
        return _parsed(raw, None)
    international = _parsed(f"+{raw}", None)
    if international is not None and _valid(international):
        return international
    national = _parsed(raw, region)
    if national is not None and _valid(national):
        return national
    # A number a person wrote (separators, no `+`) must be valid: `98765-0001`, a local number
    # without its area code, is possible in BR's plan and as Iran's +98, and would file the
    # message under a number that is nobody's.
    return international if raw.isdigit() else None


def _valid(number: PhoneNumber) -> bool:
    """libphonenumber's `is_valid_number`, for the number with its Brazilian ninth digit."""
    digits = _digits(number)
    canonical = brazilian_canonical(digits)
    if canonical != digits:
        number = phonenumbers.parse(f"+{canonical}", None)
    return bool(phonenumbers.is_valid_number(number))


def _jid_number(user: str, server: str, region: str) -> str:
    if server == GROUP_JID_SERVER:
        raise InvalidSenderError(
            "is a WhatsApp group (…@g.us), not a person's phone number: a message's sender_id "
            "is the number (or …@s.whatsapp.net id) of the person who sent it"
        )
    if server not in PERSON_JID_SERVERS:
        raise InvalidSenderError(
            f"is a WhatsApp id on @{server}, which is not a phone number; only …@s.whatsapp.net "
            "and …@c.us ids name a person's number"
        )
    user_part = _JID_USER.fullmatch(user)
    number = _parsed(f"+{user_part['number']}", None) if user_part else None
    if number is None:
        raise InvalidSenderError(_not_a_number(region))
    return _digits(number)


def _parsed(text: str, region: str | None) -> PhoneNumber | None:
    """The number `text` is in `region` (None: international), if it is a possible one."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    if len(_digits(number)) > E164_MAX_DIGITS:
        return None
    return number


def _digits(number: PhoneNumber) -> str:
    """E.164 without the `+`: the country code, then the national significant number."""
    return f"{number.country_code}{phonenumbers.national_significant_number(number)}"


def _not_a_number(region: str) -> str:
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    national = (
        f" (e.g. {phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)})"
        if example is not None
        else ""
    )
    return (
        "must be a phone number: E.164 digits, country code first (e.g. 5511999999999), a "
        f"national number of {region}{national}, or a person's WhatsApp id "
        "(5511999999999@s.whatsapp.net)"
    )
