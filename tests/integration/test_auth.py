"""Closed by default (plugin/web/auth/): who may reach what, with API tokens, logins and
signed call links; CSRF, security headers, masking by role. Flask's test client against
SQLite and PostgreSQL, a ManualClock for every time that matters."""

from __future__ import annotations

import re

import pytest
from flask import url_for
from werkzeug.routing import IntegerConverter

from plugin.core import passwords
from plugin.store.tables import AlertRow, ApiToken, Call, Delivery, Notification, NotificationAlert
from plugin.web.auth.marks import role_needed
from plugin.web.paths import is_page
from tests.conftest import api_token, authed, in_language, make_config

PUBLIC = {"webhooks.receive", "webhooks.token", "health.health", "health.live", "auth.login", "auth.logout",
          "static", "wecom_callback.verify_url", "wecom_callback.receive"}
PASSWORD = "correct horse battery"
PHONE = "+8613812345678"
RECORDING = "https://rec.example.com/r/1.wav?token=REC-SECRET-123"


def add_user(services, name: str, role: str, password: str = PASSWORD):
    return services.accounts.add_user(name, role, passwords.hash_password(password))


def csrf_of(client, path: str = "/login") -> str:
    page = client.get(path).text
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(client, name: str, password: str = PASSWORD, next: str | None = None, **kw):
    data = {"name": name, "password": password, "csrf_token": csrf_of(client)}
    if next is not None:
        data["next"] = next
    return client.post("/login", data=data, **kw)


def seed(services) -> dict[str, int]:
    """A call with a phone number and a signed recording URL, an alert whose summary
    prints the phone, a delivery of that alert, and a notification with its delivery."""
    with services.sessions.begin() as s:
        now = services.clock.now(s)
        call = Call(source="generic", external_id="c-1", recording_url=RECORDING, customer_id="cust-1",
                    customer_phone=PHONE, event={}, status="analyzed", received_at=now, analyzed_at=now)
        s.add(call)
        s.flush()
        other = Call(source="generic", external_id="c-2", recording_url="http://x/2.wav", customer_id="cust-2",
                     event={}, status="analyzed", received_at=now)
        s.add(other)
        alert = AlertRow(call_id=call.id, rule="angry_customer", scenario="general", severity="warning",
                         role="customer", emotions=["angry"], share=0.5, confidence=0.9, matched=[],
                         summary=f"cust-1 ({PHONE}) was angry", customer_id="cust-1", created_at=now,
                         routing=[{"receiver": "sup", "outcome": "sent", "reason": f"new group {PHONE}"}])
        s.add(alert)
        s.flush()
        s.add(Delivery(alert_id=alert.id, sink="crm", payload={"body": {"phone": PHONE}},
                       next_attempt_at=now, created_at=now))
        n = Notification(receiver="sup", sink="wecom", group_key=PHONE, severity="warning", flush_at=now,
                         created_at=now)
        s.add(n)
        s.flush()
        s.add(NotificationAlert(notification_id=n.id, alert_id=alert.id))
        s.add(Delivery(notification_id=n.id, sink="wecom", payload={"text": f"call {PHONE}"},
                       next_attempt_at=now, created_at=now))
        return {"call": call.id, "other": other.id, "alert": alert.id, "notification": n.id}


def sample_url(app, rule) -> str:
    values = {arg: 1 if isinstance(rule._converters[arg], IntegerConverter) else "generic"
              for arg in rule.arguments}
    with app.test_request_context():
        return url_for(rule.endpoint, **values)


# --- closed by default -------------------------------------------------------------------

def test_every_endpoint_but_the_public_ones_refuses_strangers(app, anon):
    """Walks the app's url_map, so an endpoint added later is checked without editing this."""
    public, checked = set(), 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or role_needed(app.view_functions[rule.endpoint]) is None:
            public.add(rule.endpoint)
            continue
        url = sample_url(app, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            r = anon.open(url, method=method, data=b"{}", content_type="application/json")
            checked += 1
            if is_page(url) and method == "GET":
                assert r.status_code == 302 and r.location.startswith("/login?next="), (method, url)
            else:
                assert r.status_code == 401, (method, url, r.status_code)
                assert r.json["status"] == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert public == PUBLIC  # a new public endpoint is a decision: add it here on purpose
    assert checked >= 12


def test_a_new_endpoint_is_closed_without_a_mark(tmp_path, db_url, app_factory):
    _, client = app_factory(make_config(tmp_path, None, db_url), role=None)
    client.application.add_url_rule("/api/new-thing", "new_thing", lambda: {"secret": 42})
    assert client.get("/api/new-thing").status_code == 401
    assert authed(client.application, "viewer").get("/api/new-thing").json == {"secret": 42}


def test_roles(client_as, services):
    ids = seed(services)
    viewer, supervisor, admin = client_as("viewer"), client_as("supervisor"), client_as("admin")
    feedback = f"/api/alerts/{ids['alert']}/feedback"
    r = viewer.post(feedback, json={"verdict": "correct"})
    assert r.status_code == 403 and r.json["error"] == "needs the supervisor role (you are viewer)"
    assert supervisor.post(feedback, json={"verdict": "correct"}).status_code == 200
    for path in ("/api/users", "/api/tokens"):
        assert viewer.get(path).status_code == 403 and supervisor.get(path).status_code == 403
        assert admin.get(path).status_code == 200
    for c, role in ((viewer, "viewer"), (supervisor, "supervisor"), (admin, "admin")):
        assert c.get("/api/me").json == {"name": f"test-{role}", "role": role, "via": "token"}
        assert c.get("/api/calls").status_code == 200 and c.get("/dashboard").status_code == 200


def test_admin_lists_users_and_tokens_without_secrets(client, services):
    add_user(services, "alice", "viewer")
    row, plaintext = services.accounts.create_token("ci", "viewer", created_by="admin")
    users = client.get("/api/users").json["users"]
    assert [(u["name"], u["role"], u["origin"], u["disabled_at"]) for u in users] == [("alice", "viewer", "local", None)]
    r = client.get("/api/tokens")
    listed = {t["name"]: t for t in r.json["tokens"]}
    assert listed["ci"]["prefix"] == plaintext[:10] and listed["ci"]["role"] == "viewer"
    assert plaintext not in r.text and row.token_hash not in r.text and "hash" not in r.text
    assert "argon2" not in client.get("/api/users").text


# --- what each role sees ---------------------------------------------------------------------

def test_viewers_see_phone_numbers_masked_and_nobody_sees_recording_tokens(client_as, services):
    ids = seed(services)
    masked = "+86138****5678"
    viewer, supervisor, admin = client_as("viewer"), client_as("supervisor"), client_as("admin")
    for path in (f"/api/calls/{ids['call']}", "/api/calls", f"/api/alerts/{ids['alert']}", "/api/notifications",
                 f"/api/notifications/{ids['notification']}", "/api/flagged", f"/calls/{ids['call']}", "/dashboard"):
        seen = viewer.get(path)
        assert seen.status_code == 200, path
        assert PHONE not in seen.text and "8613812345678" not in seen.text, path
        assert "REC-SECRET" not in seen.text and "REC-SECRET" not in admin.get(path).text, path
        assert '"payload"' not in seen.text and '"payload"' not in supervisor.get(path).text, path
    call = viewer.get(f"/api/calls/{ids['call']}").json
    assert call["customer_phone"] == masked and call["recording_url"] == "https://rec.example.com/r/1.wav?***"
    [alert] = call["alerts"]
    assert alert["summary"] == f"cust-1 ({masked}) was angry" and "payload" not in alert["deliveries"][0]
    assert alert["routing"][0]["reason"] == f"new group {masked}"
    assert masked in viewer.get(f"/calls/{ids['call']}").text

    call = supervisor.get(f"/api/calls/{ids['call']}").json
    assert call["customer_phone"] == PHONE and call["alerts"][0]["summary"] == f"cust-1 ({PHONE}) was angry"
    assert call["recording_url"] == "https://rec.example.com/r/1.wav?***"
    assert PHONE in supervisor.get(f"/calls/{ids['call']}").text

    call = admin.get(f"/api/calls/{ids['call']}").json
    assert call["alerts"][0]["deliveries"][0]["payload"] == {"body": {"phone": PHONE}}
    assert admin.get(f"/api/notifications/{ids['notification']}").json["delivery"]["payload"] == {"text": f"call {PHONE}"}


# --- logins ----------------------------------------------------------------------------------

def test_login_and_logout(anon, services):
    add_user(services, "sup", "supervisor")
    assert anon.get("/calls/5").location == "/login?next=/calls/5"
    r = login(in_language(anon, "en"), "sup", "wrong password!")
    assert r.status_code == 401 and "Wrong name or password." in r.text
    r = login(in_language(anon, "zh-CN"), "nobody", PASSWORD)
    assert r.status_code == 401 and "用户名或密码错误。" in r.text
    r = login(anon, "sup", next="/api/me")
    assert r.status_code == 302 and r.location == "/api/me"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    me = anon.get("/api/me").json
    assert (me["name"], me["role"], me["via"]) == ("sup", "supervisor", "session") and me["csrf_token"]
    assert services.accounts.user("sup").last_login_at == services.clock.now()
    page = anon.get("/dashboard", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "sup (supervisor)" in page.text and "Log out" in page.text
    page = anon.get("/dashboard", headers={"Accept-Language": "zh-CN"})
    assert page.status_code == 200 and "sup (主管)" in page.text and "退出登录" in page.text

    assert anon.post("/logout").status_code == 400  # no CSRF token
    assert anon.get("/api/me").status_code == 200
    r = anon.post("/logout", data={"csrf_token": csrf_of(anon, "/dashboard")})
    assert r.status_code == 302 and r.location == "/login"
    assert anon.get("/api/me").status_code == 401


@pytest.mark.parametrize("target, lands", [("/calls/7?x=1", "/calls/7?x=1"), ("//evil.example/x", "/dashboard"),
                                           ("https://evil.example/", "/dashboard"), ("/\\evil.example", "/dashboard"),
                                           ("javascript:alert(1)", "/dashboard"), ("", "/dashboard")])
def test_login_goes_back_only_to_this_site(app, services, target, lands):
    add_user(services, "v", "viewer")
    assert login(app.test_client(), "v", next=target).location == lands


def test_a_disabled_user_cannot_log_in(anon, services):
    add_user(services, "gone", "admin")
    services.accounts.disable("gone")
    r = login(in_language(anon, "en"), "gone")
    assert r.status_code == 401 and "Wrong name or password." in r.text


def test_https_public_url_makes_the_cookie_secure(tmp_path, db_url, app_factory):
    svc, client = app_factory(make_config(tmp_path, None, db_url, server={"public_url": "https://cm.example"}),
                              role=None)
    add_user(svc, "v", "viewer")
    r = login(client, "v")
    assert "Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_login_attempts_are_throttled_per_account_and_per_address(tmp_path, db_url, app_factory, clock):
    cfg = make_config(tmp_path, None, db_url, auth={"login_max_failures": 3, "login_window_s": 60})
    svc, first = app_factory(cfg, clock=clock, role=None)
    _, second = app_factory(cfg, clock=clock, role=None)  # another web process, same database
    add_user(svc, "sup", "supervisor")
    for i in range(3):
        clock.advance(seconds=10)
        addr = {"REMOTE_ADDR": f"10.0.0.{i}"}
        assert login(first, "sup", "wrong password!", environ_overrides=addr).status_code == 401
    # Per account: the right password from a fresh address waits, in the other process too.
    r = login(in_language(second, "en"), "sup", environ_overrides={"REMOTE_ADDR": "10.9.9.9"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "40" and "Try again in 1 minute" in r.text
    clock.advance(seconds=41)  # the oldest failure left the window
    assert login(second, "sup", environ_overrides={"REMOTE_ADDR": "10.9.9.9"}).status_code == 302

    # Per address: three names from one address, then even a right password from there waits.
    for name in ("a", "b", "c"):
        login(first, name, "wrong password!", environ_overrides={"REMOTE_ADDR": "10.6.6.6"})
    r = login(first.application.test_client(), "sup", environ_overrides={"REMOTE_ADDR": "10.6.6.6"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 60


def test_sessions_end_after_a_password_change_a_new_role_or_a_disable(app, services):
    add_user(services, "sup", "supervisor")
    for change in (lambda a: a.set_password("sup", passwords.hash_password("another good password")),
                   lambda a: a.set_role("sup", "viewer"), lambda a: a.disable("sup")):
        c = app.test_client()
        password = PASSWORD if services.accounts.user("sup").session_version == 0 else "another good password"
        assert login(c, "sup", password).status_code == 302 and c.get("/api/me").status_code == 200
        change(services.accounts)
        assert c.get("/api/me").status_code == 401
        assert c.get("/dashboard").location == "/login?next=/dashboard"


def test_a_session_lasts_session_hours_by_the_clock(tmp_path, db_url, app_factory, clock):
    svc, c = app_factory(make_config(tmp_path, None, db_url, auth={"session_hours": 2}), clock=clock, role=None)
    add_user(svc, "v", "viewer")
    login(c, "v")
    clock.advance(hours=1, minutes=59)
    assert c.get("/api/me").status_code == 200
    clock.advance(minutes=2)
    assert c.get("/api/me").status_code == 401


# --- CSRF and JSON ---------------------------------------------------------------------------

def test_cookie_requests_need_a_csrf_token_and_json_needs_json(anon, services):
    ids = seed(services)
    add_user(services, "sup", "supervisor")
    login(anon, "sup")
    feedback = f"/api/alerts/{ids['alert']}/feedback"
    body = '{"verdict": "correct"}'
    # What another site's form can send: text/plain, the cookie, no token.
    r = anon.post(feedback, data=body, content_type="text/plain")
    assert r.status_code == 400 and "CSRF" in r.json["error"]
    r = anon.post(feedback, json={"verdict": "correct"})  # JSON, still no token
    assert r.status_code == 400 and "CSRF" in r.json["error"]
    token = anon.get("/api/me").json["csrf_token"]
    r = anon.post(feedback, data=body, content_type="text/plain", headers={"X-CSRFToken": token})
    assert r.status_code == 415 and "application/json" in r.json["error"]
    assert services.accounts.user("sup") and anon.get(f"/api/alerts/{ids['alert']}").json["feedback"] is None
    r = anon.post(feedback, data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.json["feedback"]["verdict"] == "correct"
    r = anon.post(feedback, json={"verdict": "correct"}, headers={"X-CSRFToken": "forged"})
    assert r.status_code == 400


def test_a_login_form_without_its_token_is_refused(anon, services):
    add_user(services, "v", "viewer")
    r = anon.post("/login", data={"name": "v", "password": PASSWORD})
    assert r.status_code == 400 and anon.get("/api/me").status_code == 401


def test_bearer_tokens_need_no_csrf_token_but_json_all_the_same(client_as, services):
    ids = seed(services)
    sup = client_as("supervisor")
    feedback = f"/api/alerts/{ids['alert']}/feedback"
    assert sup.post(feedback, json={"verdict": "false_alarm"}).status_code == 200
    r = sup.post(feedback, data='{"verdict": "correct"}', content_type="text/plain")
    assert r.status_code == 415


# --- API tokens ------------------------------------------------------------------------------

def test_tokens_are_stored_hashed_and_stop_when_revoked_or_expired(app, anon, services, clock):
    row, plaintext = services.accounts.create_token("ci", "viewer", expires_days=1)
    assert plaintext.startswith("cm_") and len(plaintext) >= 40
    with services.sessions() as s:
        stored = s.get(ApiToken, row.id)
        columns = [str(getattr(stored, c.key)) for c in ApiToken.__table__.columns]
    assert not any(plaintext in v for v in columns) and stored.prefix == plaintext[:10]
    auth = {"Authorization": f"Bearer {plaintext}"}
    assert anon.get("/api/calls", headers=auth).status_code == 200
    assert services.accounts.tokens()[-1].last_used_at == clock.now()
    clock.advance(seconds=30)
    anon.get("/api/calls", headers=auth)
    assert services.accounts.tokens()[-1].last_used_at == clock.now() - __import__("datetime").timedelta(seconds=30)
    clock.advance(seconds=31)
    anon.get("/api/calls", headers=auth)
    assert services.accounts.tokens()[-1].last_used_at == clock.now()

    clock.advance(days=1)
    r = anon.get("/api/calls", headers=auth)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]

    row, plaintext = services.accounts.create_token("ci2", "viewer")
    auth = {"Authorization": f"Bearer {plaintext}"}
    assert anon.get("/api/calls", headers=auth).status_code == 200
    services.accounts.revoke_token(row.id)
    assert anon.get("/api/calls", headers=auth).status_code == 401
    assert anon.get("/api/calls", headers={"Authorization": "Bearer cm_forged"}).status_code == 401
    assert anon.get("/api/calls", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    # A public endpoint takes a stale token as none (a helpdesk may send its own header).
    assert anon.get("/health", headers={"Authorization": "Bearer cm_forged"}).status_code == 503


# --- signed call links -----------------------------------------------------------------------

def test_a_signed_link_opens_its_call_for_link_days(anon, services, clock):
    ids = seed(services)
    link = services.links.call(ids["call"])
    assert link.startswith(f"http://127.0.0.1:8080/calls/{ids['call']}?k=")
    path = link.removeprefix("http://127.0.0.1:8080")
    page = anon.get(path)
    assert page.status_code == 200 and "cust-1" in page.text
    assert PHONE not in page.text and "+86138****5678" in page.text  # a viewer's view
    assert "Log out" not in page.text and "Set-Cookie" not in page.headers
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"

    token = path.split("k=", 1)[1]
    assert anon.get(f"/calls/{ids['other']}?k={token}").status_code == 403  # another call
    assert anon.get(f"/api/calls/{ids['call']}?k={token}").status_code == 401  # only the page
    assert anon.post(f"/api/alerts/{ids['alert']}/feedback?k={token}", json={"verdict": "correct"}).status_code == 401
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert anon.get(f"/calls/{ids['call']}?k={tampered}").status_code == 403
    assert anon.get(f"/calls/{ids['call']}?k=").location.startswith("/login")

    clock.advance(days=7, seconds=-5)
    assert anon.get(path).status_code == 200
    clock.advance(seconds=10)
    r = anon.get(path)
    assert r.status_code == 403 and "expired or is not valid" in r.text


def test_rotating_the_link_key_revokes_every_link(tmp_path, db_url, app_factory, clock):
    key = "k" * 40
    svc, anon = app_factory(make_config(tmp_path, None, db_url, auth={"link_key": key}), clock=clock, role=None)
    ids = seed(svc)
    path = svc.links.call(ids["call"]).removeprefix("http://127.0.0.1:8080")
    assert anon.get(path).status_code == 200
    _, rotated = app_factory(make_config(tmp_path, None, db_url, auth={"link_key": "n" * 40}), clock=clock, role=None)
    assert rotated.get(path).status_code == 403
    # Without link_key, links are signed with the secret key: a link_key link is not one.
    _, default = app_factory(make_config(tmp_path, None, db_url), clock=clock, role=None)
    assert default.get(path).status_code == 403


def test_a_logged_in_user_opening_a_link_keeps_their_own_rights(anon, services):
    ids = seed(services)
    add_user(services, "sup", "supervisor")
    login(anon, "sup")
    page = anon.get(services.links.call(ids["call"]).removeprefix("http://127.0.0.1:8080"))
    assert page.status_code == 200 and PHONE in page.text


# --- headers, /health, /metrics, /predict ------------------------------------------------

def test_security_headers_on_every_answer(client, anon):
    answers = [anon.get("/health"), anon.get("/api/calls"), anon.get("/dashboard"), anon.get("/login"),
               anon.get("/static/app.css"), anon.get("/no/such/page"), client.get("/api/calls"),
               client.get("/dashboard"), anon.post("/webhooks/generic", data=b"{}")]
    for r in answers:
        h = r.headers
        assert h["Content-Security-Policy"] == ("default-src 'self'; frame-ancestors 'none'; object-src 'none'; "
                                                "base-uri 'none'; form-action 'self'"), r.request.path
        assert (h["X-Content-Type-Options"], h["Referrer-Policy"], h["X-Frame-Options"]) == \
            ("nosniff", "no-referrer", "DENY")
    assert client.get("/api/calls").headers["Cache-Control"] == "no-store"
    assert client.get("/dashboard").headers["Cache-Control"] == "no-store"
    assert "<style>" not in client.get("/dashboard").text  # CSP allows no inline styles


def test_health_says_only_ready_or_not_without_admin(client, client_as, anon):
    r = anon.get("/health")
    assert r.status_code == 503 and r.json == {"status": "error", "message": "not ready"}
    assert client_as("supervisor").get("/health").json == {"status": "error", "message": "not ready"}
    r = client.get("/health")
    assert r.status_code == 503 and r.json["message"].startswith("Model not ready")
    assert set(r.json["detail"]) == {"model", "asr", "rules", "queue", "recent"}


def test_metrics_and_predict_need_a_login_and_can_be_turned_off(tmp_path, db_url, app_factory):
    _, anon = app_factory(make_config(tmp_path, None, db_url), role=None)
    assert anon.get("/metrics").status_code == 401
    assert anon.post("/predict", data={}, content_type="multipart/form-data").status_code == 401
    viewer = authed(anon.application, "viewer")
    assert "callmood_webhooks_total" in viewer.get("/metrics").text
    r = viewer.post("/predict", data={}, content_type="multipart/form-data")
    assert r.status_code not in (401, 403, 404)

    cfg = make_config(tmp_path, None, db_url, server={"metrics_enabled": False, "predict_enabled": False})
    _, admin = app_factory(cfg)
    assert admin.get("/metrics").status_code == 404
    assert admin.post("/predict", data={}, content_type="multipart/form-data").status_code == 404
    assert authed(admin.application, None).get("/metrics").status_code == 404


def test_webhooks_stay_open_to_signed_senders(anon):
    from tests.conftest import event, signed
    r = anon.post("/webhooks/generic", **signed(event("w-1", "http://127.0.0.1:9/r.wav")))
    assert r.status_code == 202
    assert anon.post("/webhooks/generic", data=b"{}", content_type="application/json").status_code == 401


def test_a_token_for_a_program_and_a_session_for_a_person_see_the_same(client, anon, services):
    seed(services)
    add_user(services, "adm", "admin")
    login(anon, "adm")
    assert anon.get("/api/calls").json == client.get("/api/calls").json
    assert api_token(services, "viewer") != api_token(services, "viewer")


# --- what an attacker-minded review found, and how it stays fixed -------------------------

def test_a_copied_session_cookie_dies_at_logout(anon, services, app):
    add_user(services, "sup", "supervisor")
    login(anon, "sup")
    stolen = app.test_client()  # a copy of the cookie: a shared PC, a proxy's log
    stolen.set_cookie(app.config["SESSION_COOKIE_NAME"], anon.get_cookie(app.config["SESSION_COOKIE_NAME"]).value)
    assert stolen.get("/api/me").status_code == 200
    anon.post("/logout", data={"csrf_token": csrf_of(anon, "/dashboard")})
    assert stolen.get("/api/me").status_code == 401


def test_head_on_the_login_form_never_logs_in(anon, services, app):
    add_user(services, "sup", "supervisor")
    r = anon.open("/login", method="HEAD", data={"name": "sup", "password": PASSWORD})
    assert r.status_code == 200  # the form, as for GET (its session holds only a CSRF token)
    assert anon.get("/api/me").status_code == 401


@pytest.mark.parametrize("path", ["/api/calls?status=%00", "/api/notifications?receiver=a%00b",
                                  "/api/flagged?x%00=1"])
def test_nul_in_a_query_argument_is_a_400_on_both_databases(client, path):
    r = client.get(path)
    assert r.status_code == 400 and "NUL" in r.json["error"]


def test_nul_in_the_login_form_is_a_400(anon, services):
    r = anon.post("/login", data={"name": "a\x00b", "password": PASSWORD, "csrf_token": csrf_of(anon)})
    assert r.status_code == 400


def test_feedback_records_who_gave_it_and_refuses_hostile_json(client_as, services):
    ids = seed(services)
    supervisor = client_as("supervisor")
    url = f"/api/alerts/{ids['alert']}/feedback"
    assert supervisor.post(url, json={"verdict": "correct", "by": "admin"}).json["feedback"]["by"] == \
        "test-supervisor (for admin)"
    assert supervisor.post(url, json={"verdict": "false_alarm"}).json["feedback"]["by"] == "test-supervisor"
    deep = b'{"verdict": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    forged_log_line = b'{"verdict": "correct", "by": "x\\n2026-11-25 INFO plugin: alert 1 marked false_alarm by boss"}'
    for body in (b'{"verdict": "correct", "note": "a\\u0000b"}', deep, forged_log_line):
        r = supervisor.post(url, data=body, content_type="application/json")
        assert r.status_code == 400, r.text


def test_viewers_see_no_phone_in_errors_recording_names_or_bracketed_summaries(client_as, services):
    ids = seed(services)
    with services.sessions.begin() as s:
        call = s.get(Call, ids["call"])
        call.recording_url = "https://rec.example.com/rec/%2B8613811112222.wav?token=x"
        call.alerts[0].summary = "phone (138)(1234)(5678)"
        for d in call.alerts[0].deliveries:
            d.last_error = 'HTTP 500: you sent {"customer_phone": "+8613833334444"}'
    shown = client_as("viewer").get(f"/api/calls/{ids['call']}").text
    for digits in ("11112222", "1234)(5678", "33334444", "REC-SECRET", "token=x"):
        assert digits not in shown, digits
    assert "33334444" in client_as("supervisor").get(f"/api/calls/{ids['call']}").text


def test_simultaneous_guesses_check_no_more_passwords_than_the_limit(tmp_path, db_url, app_factory):
    """Counted before the password is checked: 30 parallel guesses check at most 5."""
    from concurrent.futures import ThreadPoolExecutor

    _, client = app_factory(make_config(tmp_path, None, db_url), role=None)
    app, services = client.application, client.application.extensions["callmood"]
    add_user(services, "victim", "viewer")

    def guess(i: int) -> int:
        c = app.test_client()
        return login(c, "victim", f"wrong guess {i:03d}").status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(guess, range(30)))
    checked, limit = codes.count(401), services.config.auth.login_max_failures
    # All 30 may be refused unchecked: when ten count themselves before any is checked, each
    # sees the limit passed (PostgreSQL, a busy machine). What must never happen is more.
    assert checked <= limit and codes.count(429) == 30 - checked, codes
    # Refused guesses were not counted: once the limit's worth were checked, even the right
    # password waits; with fewer (a race refused more), it gets in.
    assert login(app.test_client(), "victim").status_code == (429 if checked == limit else 302)
