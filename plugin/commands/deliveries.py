"""`callmood deliveries ...`: the outbox by hand. `list` shows deliveries and why they
failed; `retry ID...` or `retry --dead --since 1d` sends them again with their stored
bodies and idempotency keys (plugin/flow/delivery_ops.py); the running service's
delivery loop sends them."""

from __future__ import annotations

import click

from plugin.commands.calls import _user
from plugin.commands.common import config_option, load_config, open_services, since_seconds
from plugin.web.converters import ROW_ID_MAX

STATUSES = ("pending", "sending", "delivered", "dead")
MAX_SINCE_S = 366 * 86400


def _since(text: str) -> float:
    seconds = since_seconds(text)
    if seconds > MAX_SINCE_S:
        raise click.BadParameter(f"{text!r}: at most 366 days", param_hint="--since")
    return seconds


@click.group("deliveries")
def deliveries_group():
    """The outbox: CRM and WeCom write-backs, their states, and sending them again."""


@deliveries_group.command("list")
@config_option
@click.option("--status", type=click.Choice(STATUSES), help="Only deliveries in this state.")
@click.option("--sink", help="Only deliveries to this sink (a name under sinks:).")
@click.option("--since", help="Created within this long, e.g. 90m, 12h, 7d.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_deliveries(config_path, status, sink, since, limit):
    """Deliveries, newest first: id, sink, state, attempts, what they are for, the last error."""
    from datetime import timedelta

    seconds = _since(since) if since else None
    cfg = load_config(config_path)
    svc = open_services(cfg)
    try:
        after = None
        if seconds is not None:
            with svc.sessions() as s:
                after = svc.clock.now(s) - timedelta(seconds=seconds)
        rows = svc.deliveries.listing(status, sink, after, limit)
    finally:
        svc.close()
    if not rows:
        click.echo("no deliveries" + (f" {status}" if status else ""))
        return
    for d in rows:
        what = (f"alert {d.alert_id}" if d.alert_id else f"notification {d.notification_id}"
                if d.notification_id else d.dedupe_key or "-")
        when = d.delivered_at if d.status == "delivered" else d.next_attempt_at if d.status == "pending" else None
        line = (f"{d.id:>7}  {d.sink:<12} {d.status:<9} attempts {d.attempts:<3} {what:<24} "
                f"created {d.created_at:%Y-%m-%d %H:%M:%S}Z"
                + (f"  {'delivered' if d.status == 'delivered' else 'next'} {when:%H:%M:%S}Z" if when else ""))
        click.echo(line)
        for extra in (d.last_error and f"error: {d.last_error}", d.note and f"note: {d.note}"):
            if extra:
                click.echo(f"         {extra[:300]}")


@deliveries_group.command("retry")
@config_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=click.IntRange(1, ROW_ID_MAX))
@click.option("--dead", is_flag=True, help="Every dead delivery created within --since.")
@click.option("--since", help="With --dead: how far back, e.g. 90m, 12h, 7d (default 1d).")
def retry(config_path, ids, dead, since):
    """Send deliveries again: ID..., or with --dead every dead one of the last --since.
    Each sends the body stored when it was planned, with its idempotency key."""
    from plugin.flow.delivery_ops import retry_ids, retry_status, summary

    if bool(ids) == dead:
        raise click.UsageError("give delivery ids, or --dead [--since 1d]; one or the other")
    if since is not None and not dead:
        raise click.UsageError("--since goes with --dead")
    seconds = _since(since or "1d")
    cfg = load_config(config_path)
    svc = open_services(cfg)
    by = f"{_user()} (command line)"
    try:
        done = (retry_status(svc.deliveries, svc.clock, "dead", seconds, by) if dead
                else retry_ids(svc.deliveries, list(ids), by))
    finally:
        svc.close()
    for r in done:
        click.echo(r.line())
    click.echo(summary(done) if done else f"no dead delivery within {since or '1d'}")
    if any(r.outcome == "not_found" for r in done):
        raise SystemExit(1)
