"""Signed deep links: a token that opens one call's page without a login, for a number of
days. Supervisors open alert links on a phone inside WeCom, where no session exists.

The token names the call it opens and when it was made, signed with the link key
(``auth.link_key``, else the secret key) and a salt of its own, so no other signature of
this service passes for it. Rotating the key revokes every link. Its age is judged by the
one clock, the same clock that stamped it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Callable

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

SALT = "callmood.call-link.v1"


class _ClockSigner(TimestampSigner):
    def __init__(self, *args, now: Callable[[], datetime], **kwargs):
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return int(self._now().replace(tzinfo=timezone.utc).timestamp())


class CallLinkSigner:
    def __init__(self, key: str, days: float, now: Callable[[], datetime]):
        """``now``: naive-UTC time from the one clock."""
        self.max_age_s = int(days * 86400)
        self._serializer = URLSafeTimedSerializer(
            key, salt=SALT, signer=_ClockSigner,
            signer_kwargs={"now": now, "digest_method": hashlib.sha256})

    def token(self, call_id: int) -> str:
        return self._serializer.dumps(int(call_id))

    def opens(self, token: str, call_id: int) -> bool:
        """Whether ``token`` is a live link to call ``call_id``: signed with this key,
        younger than the link lifetime and made for that call (not another)."""
        if not token or len(token) > 200:
            return False
        try:
            found = self._serializer.loads(token, max_age=self.max_age_s)
        except BadData:  # bad signature, expired, malformed
            return False
        return type(found) is int and found == call_id
