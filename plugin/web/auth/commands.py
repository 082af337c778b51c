"""`callmood users ...` and `callmood tokens ...`: accounts for people and API tokens for
programs, kept in the service's database (plugin/store/accounts.py)."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import click

from plugin.core.roles import ROLES

role_choice = click.Choice(ROLES)
config_option = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
                             help="YAML config file (default: $CALLMOOD_CONFIG, else ./config.yaml if there is one, "
                                  "else built-in defaults).")


@contextmanager
def _accounts(config_path: str | None):
    """The accounts in the configured database (migrated to the newest schema)."""
    from plugin import config as config_mod
    from plugin.core.clock import DatabaseClock
    from plugin.store import engine as db
    from plugin.store.accounts import Accounts

    try:
        cfg = config_mod.load(config_path)
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(cfg.origin_line, err=True)  # found as every command finds it (config.locate)
    try:
        engine = db.make_engine(cfg.database_url)
        db.upgrade(engine)
    except Exception as exc:  # unreachable, bad URL
        raise click.ClickException(f"cannot open database: {str(exc).splitlines()[0]}") from None
    try:
        yield Accounts(db.make_sessionmaker(engine), DatabaseClock())
    finally:
        engine.dispose()


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _new_password(name: str, from_stdin: bool) -> str:
    from plugin.core import passwords

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True,
                                err=True)
    problem = passwords.weakness(password, name)
    if problem:
        raise click.ClickException(problem)
    return passwords.hash_password(password)


password_stdin = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of stdin (scripts).")


@click.group("users")
def users_group():
    """People who log in to the dashboard and the API: viewer < supervisor < admin."""


@users_group.command("add")
@config_option
@click.argument("name")
@click.option("--role", type=role_choice, required=True)
@password_stdin
def users_add(config_path, name, role, password_stdin):
    """Add a local user (the password is asked twice, or read with --password-stdin)."""
    from plugin.store.accounts import AccountError, check_name

    with _accounts(config_path) as accounts:
        try:
            check_name(name)
            if accounts.user(name) is not None:
                raise AccountError(f"user {name!r} already exists")
            user = accounts.add_user(name, role, _new_password(name, password_stdin))
        except AccountError as exc:
            raise _fail(exc) from None
    click.echo(f"user {user.name} added ({user.role})")


@users_group.command("list")
@config_option
def users_list(config_path):
    """Every user, with role, origin and last login."""
    with _accounts(config_path) as accounts:
        users = accounts.users()
    for u in users:
        state = f"disabled {u.disabled_at:%Y-%m-%d %H:%M}Z" if u.disabled_at else "active"
        last = f"{u.last_login_at:%Y-%m-%d %H:%M}Z" if u.last_login_at else "never"
        click.echo(f"{u.name}\t{u.role}\t{u.origin}\t{state}\tlast login {last}")


@users_group.command("set-role")
@config_option
@click.argument("name")
@click.argument("role", type=role_choice)
def users_set_role(config_path, name, role):
    """Give NAME another role (their sessions end)."""
    from plugin.store.accounts import AccountError

    try:
        with _accounts(config_path) as accounts:
            user = accounts.set_role(name, role)
    except AccountError as exc:
        raise _fail(exc) from None
    click.echo(f"user {user.name} is now {user.role}; their sessions have ended")


@users_group.command("passwd")
@config_option
@click.argument("name")
@password_stdin
def users_passwd(config_path, name, password_stdin):
    """Set NAME's password (their sessions end)."""
    from plugin.store.accounts import AccountError

    with _accounts(config_path) as accounts:
        if accounts.user(name) is None:
            raise click.ClickException(f"no user {name!r}")
        try:
            accounts.set_password(name, _new_password(name, password_stdin))
        except AccountError as exc:
            raise _fail(exc) from None
    click.echo(f"password of {name} changed; their sessions have ended")


@users_group.command("disable")
@config_option
@click.argument("name")
def users_disable(config_path, name):
    """NAME can no longer log in (their sessions end)."""
    from plugin.store.accounts import AccountError

    try:
        with _accounts(config_path) as accounts:
            accounts.disable(name)
    except AccountError as exc:
        raise _fail(exc) from None
    click.echo(f"user {name} disabled")


@click.group("tokens")
def tokens_group():
    """API tokens for programs: `Authorization: Bearer <token>` on /api/*, /metrics, /predict."""


@tokens_group.command("create")
@config_option
@click.argument("name")
@click.option("--role", type=role_choice, required=True)
@click.option("--expires-days", type=click.FloatRange(min=0, min_open=True),
              help="The token stops working after this many days (default: never).")
def tokens_create(config_path, name, role, expires_days):
    """Make a token and print it: it is shown only this once (the database keeps a hash)."""
    from plugin.store.accounts import AccountError

    try:
        with _accounts(config_path) as accounts:
            row, plaintext = accounts.create_token(name, role, created_by="cli", expires_days=expires_days)
    except AccountError as exc:
        raise _fail(exc) from None
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M}Z" if row.expires_at else ""
    click.echo(f"token {row.id} {row.name!r} ({row.role}{until}); it is shown only now:", err=True)
    click.echo(plaintext)


@tokens_group.command("list")
@config_option
def tokens_list(config_path):
    """Every token (never the token itself: only its first characters)."""
    with _accounts(config_path) as accounts:
        tokens = accounts.tokens()
    for t in tokens:
        state = (f"revoked {t.revoked_at:%Y-%m-%d %H:%M}Z" if t.revoked_at
                 else f"expires {t.expires_at:%Y-%m-%d %H:%M}Z" if t.expires_at else "no expiry")
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}Z" if t.last_used_at else "never"
        click.echo(f"{t.id}\t{t.name}\t{t.role}\t{t.prefix}…\t{state}\tlast used {used}")


@tokens_group.command("revoke")
@config_option
@click.argument("token_id", type=int)
def tokens_revoke(config_path, token_id):
    """Stop token ID from working, at once."""
    from plugin.store.accounts import AccountError

    try:
        with _accounts(config_path) as accounts:
            row = accounts.revoke_token(token_id)
    except AccountError as exc:
        raise _fail(exc) from None
    click.echo(f"token {row.id} {row.name!r} revoked")
