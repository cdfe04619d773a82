"""Canonical sender ids: how one person is recognised across the forms a channel reports.

WhatsApp reports a sender as E.164 digits (country code first, no `+`). Brazilian mobile
numbers gained a ninth digit (a leading 9 after the two-digit area code, DDD) between 2012 and
2016, but WhatsApp still reports many older accounts in the 12-digit form without it. So for a
Brazilian number (`55`):

- 13 digits, `55` + DDD + `9` + 8 digits: a mobile, already canonical;
- 12 digits, `55` + DDD + 8 digits whose first digit is 6, 7, 8 or 9: a mobile in the old form;
  the canonical form inserts the `9` after the DDD (`55 11 8765 4321` -> `55 11 9 8765 4321`);
- 12 digits whose first subscriber digit is 2, 3, 4 or 5: a landline, canonical as it is and
  never given a ninth digit.

Both forms of a mobile therefore resolve to one contact. Other countries are kept as their
digits. `+`, spaces, dots, dashes and parentheses are dropped; anything else is refused, as is
a number that is not 8 to 15 digits long (E.164's maximum) or starts with 0.
"""

from __future__ import annotations

import functools
import re

WHATSAPP = "whatsapp"
_PUNCTUATION = re.compile(r"[\s().+-]")
_DIGITS = re.compile(r"[1-9][0-9]{7,14}")
_BRAZIL = "55"
_MOBILE_FIRST_DIGITS = frozenset("6789")


class InvalidSenderError(ValueError):
    """The sender id is not a valid id for its channel."""


def e164_digits(raw: str) -> str:
    """The digits of a phone number written as people and channels write it."""
    digits = _PUNCTUATION.sub("", raw)
    if not _DIGITS.fullmatch(digits):
        raise InvalidSenderError(
            "must be a phone number in E.164 form: 8 to 15 digits, country code first "
            "(e.g. 5511999999999)"
        )
    return digits


def brazilian_canonical(digits: str) -> str:
    """Give a 12-digit Brazilian mobile its ninth digit; leave every other number alone."""
    if digits.startswith(_BRAZIL) and len(digits) == 12 and digits[4] in _MOBILE_FIRST_DIGITS:
        return f"{digits[:4]}9{digits[4:]}"
    return digits


@functools.lru_cache(maxsize=65_536)  # a busy channel hears from the same people all day
def canonical_sender_id(source: str, sender_id: str) -> str:
    """The form under which the contact of (source, sender_id) is stored and found."""
    if source == WHATSAPP:
        return brazilian_canonical(e164_digits(sender_id))
    return sender_id
