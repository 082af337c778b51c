"""The red-flag list masks phone numbers for viewers in thousands of summaries at once
(the CSV), skipping text without seven digits close together: the skip must never leave
unmasked what the phone finder (plugin/core/scrub.py) would mask."""

import random

from plugin.core import scrub
from plugin.web.auth import redact

ALPHABET = "0123456789１２٣ ()-+%2Babc.\u00a0x客"


def test_text_the_guard_skips_has_no_phone_number_to_mask():
    rng = random.Random(14)
    for _ in range(30_000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30)))
        if scrub.phones(text) != text:
            assert redact._SEVEN_DIGITS.search(text), text


def test_a_row_for_a_viewer_has_every_phone_masked():
    row = {"last_summary": "客户来电 +86 138-1234-5678 很生气", "phone": "+8613812345678",
           "handling": {"note": "call 13812345678 back", "assigned_to": "ann"}, "customer_id": "c-1"}
    seen = redact.flagged(row, phones=False)
    assert "5678" in seen["last_summary"] and "1234" not in seen["last_summary"]
    assert seen["phone"] == "+86138****5678" and "1234" not in seen["handling"]["note"]
    assert redact.flagged(row, phones=True) is row
    plain = {**row, "last_summary": "客户 C000354 生气 45%", "handling": None}
    assert redact.flagged(plain, phones=False)["last_summary"] == "客户 C000354 生气 45%"
