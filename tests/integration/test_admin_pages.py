"""The admin pages (issue 14, item 6; plugin/web/admin_pages.py), on SQLite and PostgreSQL
through Flask's test client: only admins open them; /admin/rules shows the rules in force
and a refused edit with its file and line; /admin/routing shows the routing tree and no
secret of any sink; /admin/users adds users, sets roles, disables, resets passwords and
makes and revokes API tokens (a token shown once), with CSRF, hostile input refused and
shown as text, and never without an enabled admin."""

from __future__ import annotations

import logging
import re

import pytest

from plugin.core import passwords
from tests.conftest import ALWAYS, authed, make_config

PASSWORD = "correct horse battery"
PAGES = ("/admin/rules", "/admin/routing", "/admin/users")
FORMS = ("/admin/users/add", "/admin/users/role", "/admin/users/disable", "/admin/users/enable",
         "/admin/users/password", "/admin/tokens/create", "/admin/tokens/1/revoke")
HOSTILE = "<script>alert(1)</script>"

# Every secret a sink's config holds here: none of them may reach the routing page.
# (The config itself refuses credentials in a sink's URL and anything after an api_base's host.)
SECRETS = ("ROBOT-KEY-SECRET", "CORP-SECRET-VALUE", "CBTOKENSECRET", "CRM-QUERY-SECRET", "CRM-HEADER-SECRET",
           "ZD-TOKEN-SECRET", "HS-TOKEN-SECRET", "PATH-KEY-SECRET")
SINKS = {
    "crm": {"type": "rest", "auth_header": "Bearer CRM-HEADER-SECRET",
            "url": "https://crm.example.com/api/{{ call.customer_id }}/tags?api_key=CRM-QUERY-SECRET"},
    "wecom": {"type": "wecom_robot", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=ROBOT-KEY-SECRET",
              "mentioned_list": ["supervisor01"]},
    "wecom_app": {"type": "wecom_app", "corpid": "ww0123456789abcdef", "agentid": 1000002,
                  "secret": "CORP-SECRET-VALUE", "callback_token": "CBTOKENSECRET",
                  "api_base": "https://wecom-proxy.example.com", "touser": ["lead01"]},
    "zendesk": {"type": "zendesk", "subdomain": "acme", "email": "bot@example.com", "api_token": "ZD-TOKEN-SECRET"},
    "hubspot": {"type": "hubspot", "access_token": "HS-TOKEN-SECRET"},
    "chat": {"type": "rest", "url": "https://hooks.slack.com/services/T0/B0/PATH-KEY-SECRET"},  # a key in the path
}
ROUTING = """\
defaults: {group_by: [customer_id], cooldown: 2h}
receivers:
  supervisors: {sink: wecom}
  finance_leads: {sink: wecom_app, touser: [finance01], mentions: []}
routes:
  - match: {scenario: [everything], severity: [critical], labels: {team: [finance]}}
    receiver: finance_leads
    cooldown: 1h30m
    continue: true
  - receiver: supervisors
quiet_hours: {timezone: Asia/Shanghai, start: "22:00", end: "08:00", min_severity: critical}
"""


@pytest.fixture
def site(tmp_path, db_url, app_factory, rules_dir):
    """The app with a rules directory of its own (always.yaml and a routing.yaml), sinks
    full of secrets, and an admin user "root" who logs in."""
    (rules_dir / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    cfg = make_config(tmp_path, None, db_url, rules={"path": str(rules_dir)}, sinks=SINKS)
    svc, client = app_factory(cfg, role=None)
    add_user(svc, "root", "admin")
    return svc, client.application, rules_dir


def add_user(svc, name: str, role: str, password: str = PASSWORD):
    return svc.accounts.add_user(name, role, passwords.hash_password(password))


def csrf_of(client, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def logged_in(app, name: str, password: str = PASSWORD):
    """A test client with a session cookie of ``name`` (as a browser has after logging in)."""
    client = app.test_client()
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_of(client)})
    assert r.status_code == 302, r.text
    return client


def post(client, path: str, **data):
    """A form posted as the browser does: with the page's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_of(client, "/admin/users"), **data})


# --- who may open them -------------------------------------------------------------------------

def test_only_admins_open_the_admin_pages(site):
    svc, app, _ = site
    add_user(svc, "vera", "viewer")
    add_user(svc, "sam", "supervisor")
    anon = app.test_client()
    for path in PAGES:
        r = anon.get(path)
        assert r.status_code == 302 and r.location.startswith("/login?next="), path
    for role in ("viewer", "supervisor"):
        token = authed(app, role)
        for path in PAGES:
            assert token.get(path).status_code == 403, (role, path)
        for path in FORMS:
            assert token.post(path, data={"name": "x", "role": "admin"}).status_code == 403, (role, path)
    for name in ("vera", "sam"):
        person = logged_in(app, name)
        for path in PAGES:
            r = person.get(path)
            assert r.status_code == 403 and "<html" in r.text.lower(), (name, path)  # a page, not JSON
        assert 'href="/admin/rules"' not in person.get("/calls").text  # no Admin link in their nav
    assert [u.name for u in svc.accounts.users()] == ["root", "sam", "vera"]  # the forms did nothing

    admin = logged_in(app, "root")
    for path in PAGES:
        assert admin.get(path).status_code == 200, path
        assert authed(app, "admin").get(path).status_code == 200, path
    assert 'href="/admin/rules"' in admin.get("/calls").text  # the nav's Admin link
    assert admin.get("/admin/").location.endswith("/admin/rules")
    nav = admin.get("/admin/users").text
    for path in ("/admin/rules", "/admin/routing", "/admin/deliveries"):
        assert f'href="{path}"' in nav


# --- /admin/rules --------------------------------------------------------------------------------

def test_the_rules_page_shows_version_files_and_rules(site):
    svc, app, rules_dir = site
    (rules_dir / "hostile.yaml").write_text(
        f"scenario: hostile\ndescription: '{HOSTILE}'\nmatch: {{queue: ['vip*']}}\npriority: 5\nrules:\n"
        "  - name: escalating\n    severity: warning\n    labels: {team: quality}\n    when:\n      all:\n"
        "        - {emotions: [angry], min_rise: 0.3}\n        - {emotions: [angry, sad], window: {last_s: 60},"
        " min_segments: 2}\n", encoding="utf-8")
    assert svc.rules_holder.reload_if_changed() is True
    page = authed(app, "admin").get("/admin/rules?lang=en").text
    assert svc.rules_holder.version in page
    for name in ("always.yaml", "routing.yaml", "hostile.yaml"):
        assert f">{name}</code>" in page
    assert f"{len(ALWAYS.encode())} bytes" in page
    assert "any_customer_emotion" in page and "everything" in page and "emotion-seen" in page  # a rule, its action
    assert "all of these hold:" in page and "<code>min_rise</code>" in page and "<b>0.3</b>" in page
    assert "only the last 60 s of the call" in page and "<code>queue</code>: vip*" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the file's text stays text
    assert "refused" not in page.lower()


# Keywords and patterns are the rule file's text (anyone who may edit it, or paste into it):
# shown as text, quotes and all.
WORDS = """\
scenario: words
match: {queue: [complaints]}
rules:
  - name: regulator_threat
    severity: critical
    when:
      says: [投诉, 12315, "<script>alert('kw')</script>", 'he said "refund" \\ now']
      min_mentions: 2
  - name: upset_and_crying
    severity: warning
    when:
      role: any
      says_regex: ['(?:^|\\D)12315(?:\\D|$)', '[<"]img[>&]']
      emotions: [sad]
      min_confidence: 0.55
      tag_emotions: [angry]
      events: [cry]
"""


def rule_html(page: str, name: str) -> str:
    """The page's <div class="rule"> of the rule ``name``."""
    return next(part for part in page.split('<div class="rule">')[1:] if f"<h4>{name} " in part).split("</div>")[0]


def test_the_rules_page_shows_what_a_rule_listens_for_as_text(site):
    svc, app, rules_dir = site
    (rules_dir / "words.yaml").write_text(WORDS, encoding="utf-8")
    assert svc.rules_holder.reload_if_changed() is True
    admin = authed(app, "admin")
    page = admin.get("/admin/rules?lang=en").text
    for raw in ("<script>alert('kw')", '[<"]img[>&]', 'said "refund"'):
        assert raw not in page, raw
    threat = rule_html(page, "regulator_threat")
    assert ('says any of these words: <q class="said">投诉</q>, <q class="said">12315</q>, '
            '<q class="said">&lt;script&gt;alert(&#39;kw&#39;)&lt;/script&gt;</q>, '
            '<q class="said">he said &#34;refund&#34; \\ now</q> <code>says</code>') in threat
    assert "mentions at least <b>2</b> <code>min_mentions</code>" in threat  # labelled, as the others are
    assert "only calls with a transcript (asr:) can match this<" in threat
    # No emotions: no confidence said (its default 0.7 judges nothing), no empty list.
    assert "confidence" not in threat and "customer</b>:\n" in threat

    upset = rule_html(page, "upset_and_crying")
    assert ('matching any of these regular expressions: <code class="said">(?:^|\\D)12315(?:\\D|$)</code>, '
            '<code class="said">[&lt;&#34;]img[&gt;&amp;]</code> <code>says_regex</code>') in upset
    assert "any speaker</b>: sad" in upset and "a segment counts at confidence 0.55 or more" in upset
    assert "with one of these emotions: angry <code>tag_emotions</code>" in upset
    assert "one of these sounds: crying <code>events</code>" in upset  # the page's name, not the code "cry"
    assert "every part of it must hold in the same segment" in upset
    assert "no threshold: one matching segment fires the rule" in upset

    zh = rule_html(admin.get("/admin/rules?lang=zh").text, "upset_and_crying")
    assert "难过" in zh and "生气 <code>tag_emotions</code>" in zh and "哭声 <code>events</code>" in zh
    assert "[&lt;&#34;]img[&gt;&amp;]" in zh


def test_a_refused_edit_shows_its_file_line_and_problem(site):
    svc, app, rules_dir = site
    good = svc.rules_holder.version
    text = (rules_dir / "always.yaml").read_text(encoding="utf-8")
    (rules_dir / "always.yaml").write_text(text.replace("min_confidence: 0.0", "min_confidence: 7"),
                                           encoding="utf-8")
    (rules_dir / "broken.yaml").write_text("scenario: broken\nrules: [\n", encoding="utf-8")  # a YAML syntax error
    assert svc.rules_holder.reload_if_changed() is False  # refused, as the service's reloader does
    admin = authed(app, "admin")
    page = admin.get("/admin/rules?lang=en").text
    section = page.split('class="refused"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td>\s*<td>(.*?)</td><td>(.*?)</td></tr>", section, re.S)
    found = {(re.sub(r"<[^>]+>", "", f), line): what for f, line, what in rows}
    assert "Input should be less than or equal to 1" in found[("always.yaml", "11")]
    assert "rules.0.when.min_confidence" in found[("always.yaml", "11")]
    [broken] = [what for (f, _), what in found.items() if f == "broken.yaml"]
    assert "invalid YAML" in broken
    assert f"(version {good})" in section  # the last good rules stay in force, and are shown
    assert "any_customer_emotion" in page and f"<code>{good}</code>" in page
    assert "not in force (new since the rules were loaded)" in page  # broken.yaml

    # Fixed: the refusal is gone from the page.
    (rules_dir / "broken.yaml").unlink()
    (rules_dir / "always.yaml").write_text(text, encoding="utf-8")
    svc.rules_holder.reload_if_changed()
    assert 'class="refused"' not in admin.get("/admin/rules").text


# --- /admin/routing ------------------------------------------------------------------------------

def test_the_routing_page_shows_the_tree_and_no_secret(site):
    svc, app, _ = site
    page = authed(app, "admin").get("/admin/routing?lang=en").text
    for secret in SECRETS:
        assert secret not in page, secret
    for shown in ("supervisors", "finance_leads", "finance01", "supervisor01", "wecom_robot", "wecom_app",
                  "zendesk", "hubspot", "https://qyapi.weixin.qq.com/…", "https://hooks.slack.com/…",
                  "https://crm.example.com/…", "https://wecom-proxy.example.com"):
        assert shown in page, shown
    assert "Route 1" in page and "Route 2" in page and "continue: later routes are tried too" in page
    assert "<code>1h30m</code>" in page and "<code>2h</code>" in page  # the route's cooldown, the default
    assert "From 22:00 to 08:00 (Asia/Shanghai)" in page
    assert "every alert (catch-all)" in page and "<code>labels.team</code> = finance" in page


def test_the_routing_page_without_routing_yaml(tmp_path, db_url, app_factory, rules_dir):
    svc, admin = app_factory(make_config(tmp_path, None, db_url, rules={"path": str(rules_dir)}))
    page = admin.get("/admin/routing?lang=en").text
    assert "No routing.yaml in the rules in force" in page and "No sinks configured." in page


# --- /admin/users --------------------------------------------------------------------------------

def test_an_admin_adds_a_user_who_then_logs_in(site):
    svc, app, _ = site
    admin = logged_in(app, "root")
    r = post(admin, "/admin/users/add?lang=en", name="alice", role="supervisor", password="alice's long pass",
             password_again="alice's long pass")
    assert r.status_code == 303 and r.location.endswith("/admin/users")
    page = admin.get("/admin/users?lang=en").text
    assert "User alice added (supervisor)." in page and "alice's long pass" not in page
    user = svc.accounts.user("alice")
    assert (user.role, user.origin) == ("supervisor", "local") and passwords.verify(user.password_hash,
                                                                                       "alice's long pass")
    assert logged_in(app, "alice", "alice's long pass").get("/api/me").json["role"] == "supervisor"


@pytest.mark.parametrize("name, role, password, again, status, says", [
    (HOSTILE, "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("a b", "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("-dash", "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("名字", "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("x" * 129, "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("", "viewer", PASSWORD, PASSWORD, 400, "use 1-128 letters"),
    ("bob", "root", PASSWORD, PASSWORD, 400, "Pick a role"),
    ("bob", "viewer", "Sh0rt!xy", "Sh0rt!xy", 400, "The password is too short: at least 10 characters."),
    ("bob.builder", "viewer", "Bob.Builder", "Bob.Builder", 400, "The password must not be the user name."),
    ("bob", "viewer", PASSWORD, PASSWORD + "!", 400, "The two passwords differ."),
    ("bob", "viewer", "p" * 1025, "p" * 1025, 400, "at most 1024 characters"),
    ("root", "viewer", PASSWORD, PASSWORD, 409, "User root already exists."),
])
def test_adding_a_user_checks_as_the_cli_does(site, name, role, password, again, status, says):
    svc, app, _ = site
    admin = logged_in(app, "root")
    r = post(admin, "/admin/users/add?lang=en", name=name, role=role, password=password, password_again=again)
    assert r.status_code == status and says in r.text, r.text[-2000:]
    assert HOSTILE not in r.text and password not in r.text
    assert [u.name for u in svc.accounts.users()] == ["root"]


def test_forms_need_their_csrf_token(site):
    svc, app, _ = site
    add_user(svc, "bob", "viewer")
    admin = logged_in(app, "root")
    for path, data in (("/admin/users/add", {"name": "eve", "role": "admin", "password": PASSWORD,
                                             "password_again": PASSWORD}),
                       ("/admin/users/role", {"name": "bob", "role": "admin"}),
                       ("/admin/users/disable", {"name": "bob"}),
                       ("/admin/tokens/create", {"name": "t", "role": "admin"})):
        assert admin.post(path, data=data).status_code == 400, path
        assert admin.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    assert svc.accounts.user("eve") is None and svc.accounts.user("bob").role == "viewer"
    assert svc.accounts.user("bob").disabled_at is None and svc.accounts.tokens() == []


def test_set_role_disable_enable_and_reset_password(site):
    svc, app, _ = site
    add_user(svc, "bob", "viewer")
    bob = logged_in(app, "bob")
    admin = logged_in(app, "root")

    assert post(admin, "/admin/users/role", name="bob", role="supervisor").status_code == 303
    assert svc.accounts.user("bob").role == "supervisor"
    assert bob.get("/api/me").status_code == 401  # the new role ended bob's session
    bob = logged_in(app, "bob")
    assert post(admin, "/admin/users/role", name="bob", role="supervisor").status_code == 303
    assert bob.get("/api/me").status_code == 200  # the same role again changes nothing: the session stays
    assert post(admin, "/admin/users/role", name="root", role="admin").status_code == 303
    assert admin.get("/api/me").status_code == 200

    assert post(admin, "/admin/users/disable", name="bob").status_code == 303
    assert svc.accounts.user("bob").disabled_at is not None and bob.get("/api/me").status_code == 401
    assert "disabled" in admin.get("/admin/users?lang=en").text
    assert post(admin, "/admin/users/enable", name="bob").status_code == 303
    assert svc.accounts.user("bob").disabled_at is None

    new = "a brand new passphrase"
    r = post(admin, "/admin/users/password?lang=en", name="bob", password=new, password_again="typo" + new)
    assert r.status_code == 400 and "The two passwords differ." in r.text
    assert post(admin, "/admin/users/password", name="bob", password=new, password_again=new).status_code == 303
    assert logged_in(app, "bob", new).get("/api/me").json["name"] == "bob"
    assert app.test_client().post("/login", data={
        "name": "bob", "password": PASSWORD, "csrf_token": csrf_of(app.test_client())}).status_code in (400, 401)

    for path, data in (("/admin/users/role", {"name": "nobody", "role": "viewer"}),
                       ("/admin/users/disable", {"name": "nobody"}),
                       ("/admin/users/disable", {"name": HOSTILE}),
                       ("/admin/users/password", {"name": "nobody", "password": new, "password_again": new})):
        r = post(admin, path, **data)
        assert r.status_code == 404 and HOSTILE not in r.text, path
    assert post(admin, "/admin/users/role", name="bob", role="owner").status_code == 400


def test_a_single_sign_on_user_gets_no_password_here(site):
    svc, app, _ = site
    svc.accounts.add_user("sso.person", "viewer", None, origin="oidc")
    admin = logged_in(app, "root")
    r = post(admin, "/admin/users/password?lang=en", name="sso.person", password=PASSWORD, password_again=PASSWORD)
    assert r.status_code == 409 and "signs in through oidc" in r.text
    assert svc.accounts.user("sso.person").password_hash is None


def test_the_last_enabled_admin_stays_an_admin(site):
    svc, app, _ = site
    admin = logged_in(app, "root")
    for path, data in (("/admin/users/role", {"name": "root", "role": "supervisor"}),
                       ("/admin/users/disable", {"name": "root"})):
        r = post(admin, path + "?lang=en", **data)
        assert r.status_code == 409 and "ask another admin" in r.text, path
    token = authed(app, "admin")  # a program's admin token is no user: the last admin guard holds
    for path, data in (("/admin/users/role", {"name": "root", "role": "viewer"}),
                       ("/admin/users/disable", {"name": "root"})):
        r = token.post(path + "?lang=en", data=data)
        assert r.status_code == 409 and "root is the last enabled admin" in r.text, path
    user = svc.accounts.user("root")
    assert user.role == "admin" and user.disabled_at is None

    add_user(svc, "second", "admin")  # with another admin, root may demote or disable them (not itself)
    assert post(admin, "/admin/users/role", name="second", role="viewer").status_code == 303
    assert svc.accounts.user("second").role == "viewer"
    add_user(svc, "third", "admin")
    svc.accounts.disable("third")  # a disabled admin does not count
    r = token.post("/admin/users/disable?lang=en", data={"name": "root"})
    assert r.status_code == 409 and "root is the last enabled admin" in r.text
    assert post(admin, "/admin/users/role", name="third", role="viewer").status_code == 303  # not enabled: no guard


def test_a_new_token_is_shown_once_works_and_is_revoked(site, caplog):
    svc, app, _ = site
    caplog.set_level(logging.DEBUG)
    admin = logged_in(app, "root")
    r = post(admin, "/admin/tokens/create?lang=en", name="crm-sync", role="viewer", expires_days="1.5")
    assert r.status_code == 201
    [plaintext] = re.findall(r'<code id="new-token">(cm_[A-Za-z0-9_\-]+)</code>', r.text)
    assert r.text.count(plaintext) == 1 and "it is shown only this once" in r.text
    assert r.headers["Cache-Control"] == "no-store"
    [row] = svc.accounts.tokens()
    assert (row.name, row.role, row.created_by) == ("crm-sync", "viewer", "root (admin page)")
    assert row.expires_at is not None and row.prefix == plaintext[:10]

    program = app.test_client()
    program.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {plaintext}"
    assert program.get("/api/me").json == {"name": "crm-sync", "role": "viewer", "via": "token"}

    page = admin.get("/admin/users").text  # never again: only its first characters
    assert plaintext not in page and f"{plaintext[:10]}…" in page
    assert plaintext not in authed(app, "admin").get("/api/tokens").text
    assert plaintext not in caplog.text and "crm-sync" in caplog.text  # logged, without the token

    r = post(admin, f"/admin/tokens/{row.id}/revoke")
    assert r.status_code == 303 and program.get("/api/me").status_code == 401
    assert "revoked" in admin.get("/admin/users?lang=en").text
    assert post(admin, "/admin/tokens/99999/revoke").status_code == 404
    assert plaintext not in caplog.text


@pytest.mark.parametrize("name, role, days, says", [
    (HOSTILE, "viewer", "", "use 1-128 letters"),
    ("ok", "superuser", "", "Pick a role"),
    ("ok", "viewer", "0", "Expires in"),
    ("ok", "viewer", "-1", "Expires in"),
    ("ok", "viewer", "abc", "Expires in"),
    ("ok", "viewer", "nan", "Expires in"),
    ("ok", "viewer", "inf", "Expires in"),
    ("ok", "viewer", "1e309", "Expires in"),
    ("ok", "viewer", "3651", "Expires in"),
])
def test_token_forms_refuse_hostile_input(site, name, role, days, says):
    svc, app, _ = site
    admin = logged_in(app, "root")
    r = post(admin, "/admin/tokens/create?lang=en", name=name, role=role, expires_days=days)
    assert r.status_code == 400 and says in r.text and HOSTILE not in r.text
    assert svc.accounts.tokens() == [] and 'id="new-token"' not in r.text


def test_a_nul_in_a_form_field_is_a_400(site):
    svc, app, _ = site
    admin = logged_in(app, "root")
    assert post(admin, "/admin/users/add", name="a\x00b", role="viewer", password=PASSWORD,
                password_again=PASSWORD).status_code == 400
    assert [u.name for u in svc.accounts.users()] == ["root"]
