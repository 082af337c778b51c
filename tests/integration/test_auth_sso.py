"""Single sign-on: OpenID Connect against a stand-in identity provider on 127.0.0.1
(tests/idp.py: real HTTP, RS256 ID tokens), and the trusted reverse-proxy header mode."""

from __future__ import annotations

import pytest
import requests
from joserfc.jwk import RSAKey

from plugin.core import passwords
from plugin.web.auth.marks import role_needed
from tests.conftest import in_language, make_config
from tests.helpers import free_port
from tests.idp import StandInIdP, oidc_config

PUBLIC_URL = "http://127.0.0.1:8080"


@pytest.fixture
def idp(fake) -> StandInIdP:
    return StandInIdP(fake())


@pytest.fixture
def sso_app(tmp_path, db_url, app_factory, idp, clock):
    """``make(**oidc_extra) -> (services, anonymous client)`` with auth.oidc at the stand-in."""
    return lambda **extra: app_factory(make_config(tmp_path, None, db_url, auth={"oidc": oidc_config(idp, **extra)}),
                                       clock=clock, role=None)


def sign_in(client, idp: StandInIdP, next: str = "/api/me"):
    """The browser's round trip: CallMood -> the provider's authorize page -> back to the callback."""
    r = client.get(f"/login/oidc?next={next}")
    assert r.status_code == 302 and r.location.startswith(f"{idp.url}/authorize?"), r.text
    assert "code_challenge_method=S256" in r.location and "nonce=" in r.location
    back = requests.get(r.location, allow_redirects=False, timeout=5)
    assert back.status_code == 302, back.text
    assert back.headers["Location"].startswith(f"{PUBLIC_URL}/login/oidc/callback?")
    return client.get(back.headers["Location"].removeprefix(PUBLIC_URL))


def test_first_sign_in_makes_the_user_with_their_groups_role(sso_app, idp):
    svc, client = sso_app()
    assert "Sign in with single sign-on" in client.get("/login", headers={"Accept-Language": "en"}).text
    assert "使用 single sign-on 登录" in client.get("/login", headers={"Accept-Language": "zh-CN"}).text
    idp.claims = {"preferred_username": "lin", "groups": ["staff", "cm-supervisors", "other"]}
    r = sign_in(client, idp)
    assert r.status_code == 302 and r.location == "/api/me"
    me = client.get("/api/me").json
    assert (me["name"], me["role"], me["via"]) == ("lin", "supervisor", "oidc") and me["csrf_token"]
    user = svc.accounts.user("lin")
    assert (user.origin, user.password_hash, user.last_login_at) == ("oidc", None, svc.clock.now())
    # A password login never works for an SSO account (it has none).
    other = client.application.test_client()
    page = other.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert other.post("/login", data={"name": "lin", "password": "", "csrf_token": token}).status_code == 401

    idp.claims = {"preferred_username": "lin", "groups": ["cm-admins"]}  # promoted at the provider
    sign_in(client, idp)
    assert client.get("/api/me").json["role"] == "admin" and len(svc.accounts.users()) == 1

    idp.claims = {"preferred_username": "lin", "groups": ["nothing-mapped"]}
    r = sign_in(client.application.test_client(), idp)
    assert r.status_code == 403 and "lin is in no group that has a role here" in r.text


def test_a_default_role_a_string_claim_and_another_name_claim(sso_app, idp):
    _, client = sso_app(default_role="viewer", name_claim="email", role_claim="roles")
    idp.claims = {"email": "ann@example.com", "roles": "staff, cm-supervisors"}
    sign_in(client, idp)
    assert client.get("/api/me").json["role"] == "supervisor"
    c2 = client.application.test_client()
    idp.claims = {"email": "bo@example.com"}
    sign_in(c2, idp)
    assert c2.get("/api/me").json == {**c2.get("/api/me").json, "name": "bo@example.com", "role": "viewer"}


def test_a_local_account_is_not_taken_over_and_disabled_users_stay_out(sso_app, idp):
    svc, client = sso_app()
    svc.accounts.add_user("boss", "admin", passwords.hash_password("correct horse battery"))
    idp.claims = {"preferred_username": "boss", "groups": ["cm-admins"]}
    r = sign_in(client, idp)
    assert r.status_code == 403 and "boss is a local account here, not one of oidc" in r.text
    assert client.get("/api/me").status_code == 401

    idp.claims = {"preferred_username": "lin", "groups": ["staff"]}
    sign_in(client, idp)
    svc.accounts.disable("lin")
    assert client.get("/api/me").status_code == 401  # the session ended
    r = sign_in(client, idp)
    assert r.status_code == 403 and "lin is disabled here" in r.text


@pytest.mark.parametrize("forgery", ["other key", "audience", "expired", "issuer", "nonce"])
def test_forged_or_stale_id_tokens_are_refused(sso_app, idp, forgery):
    svc, client = sso_app()
    idp.claims = {"preferred_username": "mallory", "groups": ["cm-admins"]}
    if forgery == "other key":  # signed by someone else, with the provider's key id
        idp.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    else:
        idp.overrides = {"audience": {"aud": "another-client"}, "expired": {"exp": 1_000_000_000},
                         "issuer": {"iss": "https://evil.example"}, "nonce": {"nonce": "replayed"}}[forgery]
    r = sign_in(in_language(client, "en"), idp)
    assert r.status_code == 401 and "Single sign-on failed" in r.text
    assert client.get("/api/me").status_code == 401 and svc.accounts.user("mallory") is None


def test_a_callback_without_its_state_is_refused(sso_app, idp):
    svc, client = sso_app()
    idp.claims = {"preferred_username": "lin", "groups": ["staff"]}
    r = client.get("/login/oidc")
    back = requests.get(r.location, allow_redirects=False, timeout=5).headers["Location"]
    stranger = client.application.test_client()  # another browser: not the one that started
    assert stranger.get(back.removeprefix(PUBLIC_URL)).status_code == 401
    forged = back.split("state=")[0] + "state=forged"
    assert client.get(forged.removeprefix(PUBLIC_URL)).status_code == 401
    assert client.get("/login/oidc/callback?error=access_denied&state=x").status_code == 401
    assert svc.accounts.user("lin") is None


def test_an_unreachable_provider_is_a_clear_502(tmp_path, db_url, app_factory):
    cfg = {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "x", "client_secret": "y", "timeout_s": 2}
    _, client = app_factory(make_config(tmp_path, None, db_url, auth={"oidc": cfg}), role=None)
    r = client.get("/login/oidc", headers={"Accept-Language": "en"})
    assert r.status_code == 502 and "identity provider does not answer" in r.text


def test_the_sign_in_endpoints_are_the_only_new_public_ones(sso_app):
    _, client = sso_app()
    app = client.application
    public = {r.endpoint for r in app.url_map.iter_rules()
              if r.endpoint == "static" or role_needed(app.view_functions[r.endpoint]) is None}
    assert public == {"webhooks.receive", "webhooks.token", "health.health", "health.live", "auth.login",
                      "auth.logout", "static", "wecom_callback.verify_url", "wecom_callback.receive",
                      "oidc.start", "oidc.callback"}


# --- a trusted reverse proxy that names the user ------------------------------------------

PROXY = {"enabled": True, "trusted_networks": ["10.1.0.0/16"], "roles": {"ops": "admin", "support": "supervisor"},
         "default_role": None}


def test_proxy_headers_are_believed_only_from_the_proxy(tmp_path, db_url, app_factory):
    svc, client = app_factory(make_config(tmp_path, None, db_url, auth={"proxy_header": PROXY}), role=None)
    from_proxy = {"REMOTE_ADDR": "10.1.2.3"}
    headers = {"X-Forwarded-User": "ops-anna", "X-Forwarded-Groups": "staff, ops"}
    me = client.get("/api/me", headers=headers, environ_overrides=from_proxy).json
    assert (me["name"], me["role"], me["via"]) == ("ops-anna", "admin", "proxy")
    assert svc.accounts.user("ops-anna").origin == "proxy"
    # The same headers from anyone else are nothing.
    assert client.get("/api/me", headers=headers, environ_overrides={"REMOTE_ADDR": "10.9.9.9"}).status_code == 401
    r = client.get("/api/me", headers={"X-Forwarded-User": "x", "X-Forwarded-Groups": "none"}, environ_overrides=from_proxy)
    assert r.status_code == 403 and "x is in no group that has a role here" in r.json["error"]
    # A cookie-like credential: a state-changing request needs its CSRF token.
    r = client.post("/api/alerts/1/feedback", json={"verdict": "correct"}, headers=headers, environ_overrides=from_proxy)
    assert r.status_code == 400 and "CSRF" in r.json["error"]

    _, off = app_factory(make_config(tmp_path, None, db_url, auth={"proxy_header": {**PROXY, "enabled": False}}),
                         role=None)
    assert off.get("/api/me", headers=headers, environ_overrides=from_proxy).status_code == 401


def test_forwarded_addresses_only_from_trusted_proxies(tmp_path, db_url, app_factory, clock):
    cfg = make_config(tmp_path, None, db_url, server={"trusted_proxies": ["10.1.0.0/16"]},
                      auth={"login_max_failures": 1})
    svc, client = app_factory(cfg, clock=clock, role=None)

    def fail(peer: str, forwarded: str) -> None:
        c = client.application.test_client()
        page = c.get("/login", environ_overrides={"REMOTE_ADDR": peer}).text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        c.post("/login", data={"name": f"n{peer}{forwarded}", "password": "wrong password", "csrf_token": token},
               headers={"X-Forwarded-For": forwarded}, environ_overrides={"REMOTE_ADDR": peer})

    fail("10.1.0.1", "203.0.113.7")  # through the proxy: the client's address counts
    fail("198.51.100.1", "203.0.113.8")  # straight in, claiming another address: its own counts
    assert [svc.accounts.recent_failures(f"ip:{a}", 900)[0] != [] for a in
            ("203.0.113.7", "10.1.0.1", "198.51.100.1", "203.0.113.8")] == [True, False, True, False]
