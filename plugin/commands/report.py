"""`callmood report [--day D | --week W] [--csv FILE|-] [--png FILE] [--markdown] [--send]`:
the emotion review report (plugin/flow/report/) on demand, as text by default."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from plugin.commands.common import config_option, load_config, open_services
from plugin.config import ConfigError


@click.command("report")
@config_option
@click.option("--day", metavar="YYYY-MM-DD", help="That day's report (default: yesterday's, in reports.timezone).")
@click.option("--week", metavar="YYYY-Www|YYYY-MM-DD", help="That ISO week's report (Monday to Sunday): "
              "its number, or any date in it.")
@click.option("--csv", "csv_to", metavar="FILE|-", help="Write the report as CSV (UTF-8 with BOM) to FILE; "
              "'-' writes it to stdout instead of the text.")
@click.option("--png", "png_to", metavar="FILE", type=click.Path(dir_okay=False), help="Write the chart to FILE.")
@click.option("--markdown", is_flag=True, help="Print the WeCom markdown instead of the text.")
@click.option("--send", is_flag=True, help="Store the report for the WeCom robots of reports.<daily|weekly>.sinks "
              "and send it now (what cannot be sent now stays pending for the service; a dead one is sent again). "
              "Delivered once per period; only a period that is over.")
def report_command(config_path, day, week, csv_to, png_to, markdown, send):
    """The emotion review report (情绪复盘报告) of a day or an ISO week.

    Calls analysed, negative customer speech by queue, agent and scenario against the
    previous period, the top red-flagged customers, alerts and their precision."""
    from plugin.flow.report import render
    from plugin.flow.report import send as sending
    from plugin.flow.report.period import PeriodError, last_complete, period_of, zone

    if day and week:
        raise click.UsageError("give --day or --week, not both")
    if csv_to == "-" and markdown:
        raise click.UsageError("--csv - and --markdown both write to stdout: pick one")
    cfg = load_config(config_path)
    kind = "weekly" if week else "daily"
    tz = zone(cfg.reports.timezone)
    period = None
    if day or week:
        try:
            period = period_of(kind, day or week, tz)
        except PeriodError as exc:
            raise click.BadParameter(str(exc), param_hint="--week" if week else "--day") from None
    sinks = list(getattr(cfg.reports, kind).sinks)
    if send:
        if not sinks:
            raise click.ClickException(f"reports.{kind}.sinks names no WeCom robot: nothing to send to")
        try:
            cfg.require_env("sinks")  # the robots' keys; nothing else this command does needs a secret
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    svc = open_services(cfg)
    dead = False
    try:
        outputs = svc.outputs
        if period is None:
            with svc.sessions() as s:
                period = last_complete(kind, svc.clock.now(s), tz)
        with svc.sessions() as s:
            if sending.incomplete(period, svc.clock.now(s)):
                click.echo(f"{period.key} is not over yet: the figures are those so far", err=True)
        report = sending.build(cfg, outputs, period)
        if csv_to == "-":
            click.get_binary_stream("stdout").write(render.csv_bytes(report))
        elif csv_to:
            _write(csv_to, render.csv_bytes(report))
            click.echo(f"CSV written to {csv_to}", err=True)
        if png_to:
            _write(png_to, render.chart_png(report))
            click.echo(f"chart written to {png_to}", err=True)
        if markdown:
            click.echo(render.markdown(report, sending.page_url(cfg.server.public_url, period),
                                       outputs.links.call, cfg.reports.min_calls))
        elif csv_to != "-" and not send:
            click.echo(render.text(report), nl=False)
        if send:
            try:
                stored = sending.store(cfg, outputs, period, sinks)
            except sending.ReportError as exc:
                raise click.ClickException(str(exc)) from None
            owner = f"{socket.gethostname()}:{os.getpid()}:report"
            for x in sending.send_now(cfg, outputs, stored, owner):
                # With the CSV on stdout, what was sent goes to stderr: the CSV stays a CSV.
                click.echo(f"report {period.key}: {x.line()}", err=csv_to == "-")
                dead = dead or x.status == "dead"
    finally:
        svc.close()
    if dead:  # a robot refused it for good: the operator must look
        sys.exit(1)


def _write(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
