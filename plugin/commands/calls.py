"""`callmood calls ...`: work on stored calls. `callmood calls rerun ID...` and
`callmood calls rerun --failed --since 1d` queue calls for analysis again
(plugin/flow/rerun.py); the running service's workers pick them up."""

from __future__ import annotations

import getpass

import click

from plugin.commands.common import config_option, load_config, open_services, since_seconds
from plugin.web.converters import ROW_ID_MAX


@click.group("calls")
def calls_group():
    """Work on stored calls: queue them for analysis again."""


@calls_group.command("rerun")
@config_option
@click.argument("call_ids", metavar="[ID]...", nargs=-1, type=click.IntRange(1, ROW_ID_MAX))
@click.option("--failed", is_flag=True, help="Every call that failed within --since.")
@click.option("--since", help="With --failed: how far back, e.g. 90m, 12h, 7d (default 1d).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="With --failed: at most this many calls (the oldest first).")
def rerun(config_path, call_ids, failed, since, limit):
    """Queue calls for analysis again: the calls ID..., or with --failed those that failed
    recently. A call already queued or being analysed is not queued twice; an alert that
    fired before is not sent again."""
    from plugin.flow.rerun import counts, rerun_calls, rerun_failed

    if bool(call_ids) == failed:
        raise click.UsageError("give call ids, or --failed [--since 1d]; one or the other")
    if since is not None and not failed:
        raise click.UsageError("--since goes with --failed")
    seconds = since_seconds(since or "1d")
    cfg = load_config(config_path)
    svc = open_services(cfg)
    by = f"{_user()} (command line)"
    left = 0
    try:
        if failed:
            done, left = rerun_failed(svc.sessions, svc.clock, svc.jobs, seconds, by, limit)
        else:
            done = rerun_calls(svc.sessions, svc.jobs, call_ids, by)
    finally:
        svc.close()
    for r in done:
        click.echo(r.line())
    tail = f"; {left} more failed call(s) not re-run (--limit {limit}): run it again" if left else ""
    click.echo(("no call failed within " + (since or "1d") if failed and not done else counts(done)) + tail)
    if any(r.outcome in ("not_found", "purged") for r in done):
        raise SystemExit(1)


def _user() -> str:
    """Who runs the command, for the audit line (the service's own user when unknown)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown user"
