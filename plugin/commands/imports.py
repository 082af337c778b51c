"""`callmood import PATH... [--sidecar FILE]`: the day's recordings, each one call
(plugin/flow/batch_import.py), analysed by the running workers."""

from __future__ import annotations

import sys

import click

from plugin.commands.common import config_option, load_config, open_services


@click.command("import")
@config_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--sidecar", type=click.Path(dir_okay=False),
              help="CSV or JSON naming each file's customer_id, customer_phone, agent_id, queue, ticket_id "
                   "and channels; default: the imports.sidecar file (calls.csv) in each folder.")
def import_command(config_path, paths, sidecar):
    """Import recordings: files, folders (with their subfolders) and globs.

    The same bytes are one call, however often and under whatever name they are imported.
    Exits 1 when a file or a sidecar row was refused (each is listed, with why)."""
    from tqdm import tqdm

    from plugin.flow.batch_import import BatchImportError, import_paths

    cfg = load_config(config_path)
    svc = open_services(cfg)

    def progress(found):
        return tqdm(found, unit="file", desc="import", file=sys.stderr,
                    disable=len(found) < 2 or not sys.stderr.isatty())

    try:
        report = import_paths(list(paths), cfg, svc.intake(), sidecar=sidecar, progress=progress)
    except BatchImportError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        svc.close()
    for path, call_id in report.new:
        click.echo(f"new      call {call_id:<6} {path}")
    for path, call_id, status in report.already:
        click.echo(f"already  call {call_id:<6} {path} ({status})")
    for what, why in report.refused:
        click.echo(f"refused  {what}: {why}", err=True)
    click.echo(report.line())
    if report.new:
        click.echo("The workers analyse the new calls (`callmood serve` or `callmood worker`).")
    if report.refused:
        sys.exit(1)
