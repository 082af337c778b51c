"""Phone numbers from vendors, in one form: E.164 ("+8613800138000").

Contact centers write the same number as "13800138000", "+86 138 0013 8000",
"008613800138000" or "sip:+8613800138000@pbx"; the CRM lookup and the dashboard need one.
"""

from __future__ import annotations

import phonenumbers

from plugin.core import ids


def e164(value: str | None, region: str = "CN") -> str | None:
    """``value`` as E.164, or None when it is empty or not a phone number (an anonymous
    caller, "anonymous", a SIP user name). ``region``: the country of numbers written
    without one (ISO 3166 code)."""
    if not value:
        return None
    text = value.strip()
    if text.lower().startswith(("sip:", "tel:")):
        text = text[4:].split("@", 1)[0].split(";", 1)[0]
    if ids.phone_problem(text) is not None:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def written_forms(value: str, region: str = "CN") -> set[str]:
    """The ways a stored number may be written when a source kept it as it came: the
    text itself, its digits, E.164 (with and without "+"), the national number and, with
    the trunk prefix, "0" + it. For searching stored numbers by any one of them."""
    forms = {value.strip(), "".join(c for c in value if c.isdigit())}
    normal = e164(value, region)
    if normal:
        forms |= {normal, normal[1:]}
        number = phonenumbers.parse(normal)
        national = str(number.national_number)
        forms |= {national, "0" + national}
    return {f for f in forms if f}
