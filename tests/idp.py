"""A stand-in OpenID Connect identity provider on 127.0.0.1 (a real HTTP server): the
discovery document, its JWKS, an authorize endpoint that signs in whoever the test says,
and a token endpoint that checks the client, the code and PKCE, and issues an RS256 ID
token (joserfc, the JOSE library Authlib itself uses)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.helpers import FakeServer, Recorded, Reply

CLIENT_ID = "callmood"
CLIENT_SECRET = "idp-client-secret"


class StandInIdP:
    def __init__(self, server: FakeServer):
        self.server, self.url = server, server.url
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.signing_key = self.key  # a test swaps in another key to forge tokens
        self.claims: dict = {}  # who signs in next: preferred_username, groups...
        self.overrides: dict = {}  # claims forced into the ID token (a wrong aud, an old exp...)
        self.codes: dict[str, dict] = {}
        server.routes["/.well-known/openid-configuration"] = Reply(200, {
            "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"]})
        server.routes["/jwks"] = Reply(200, {"keys": [self.key.as_dict(private=False)]})
        server.routes["/authorize"] = self._authorize
        server.routes["/token"] = self._token

    def _authorize(self, rec: Recorded) -> Reply:
        q = dict(parse_qsl(urlsplit(rec.path).query))
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return Reply(400, {"error": "invalid_request"})
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q.get("nonce"), "redirect_uri": q["redirect_uri"],
                            "challenge": q.get("code_challenge"), "claims": dict(self.claims)}
        return Reply(302, b"", {"Location": f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"})

    def _token(self, rec: Recorded) -> Reply:
        form = dict(parse_qsl(rec.body.decode()))
        basic = rec.headers.get("Authorization", "")
        if basic != "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode():
            return Reply(401, {"error": "invalid_client"})
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return Reply(400, {"error": "invalid_grant"})
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return Reply(400, {"error": "invalid_grant", "error_description": "PKCE"})
        now = int(time.time())
        claims = {"iss": self.url, "sub": "sub-" + str(grant["claims"].get("preferred_username")),
                  "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **grant["claims"], **self.overrides}
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.signing_key)
        return Reply(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                           "expires_in": 300, "id_token": id_token})


def oidc_config(idp: StandInIdP, **extra) -> dict:
    return {"issuer": idp.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "roles": {"cm-admins": "admin", "cm-supervisors": "supervisor", "staff": "viewer"}, **extra}
