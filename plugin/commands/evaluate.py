"""`callmood evaluate LABELS.csv`: the model's emotions against people's labels on this
center's own calls (per-class precision, recall, F1; UA, WA; the confusion matrix), and per
scenario the alert precision and recall for thresholds 0.50 to 0.95 (plugin/flow/evaluate/)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from plugin.commands.common import config_option, load_config
from plugin.core import scrub, trial


@click.command("evaluate")
@config_option
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--rules", "rules_path", type=click.Path(exists=True),
              help="The rules to sweep (a directory or one file); default: rules.path.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Also write per_class.csv, confusion.csv, thresholds.csv, predictions.csv and "
                   "evaluation.png to this folder.")
@click.option("--fresh", is_flag=True, help="Run the model on every labelled file, even one already imported "
                                            "and analysed.")
def evaluate_command(config_path, labels, rules_path, out_dir, fresh):
    """Measure the model against labelled calls (LABELS.csv: file or call_id, start, end, role,
    emotion, channels, scenario) and sweep each scenario's threshold.

    Stored calls are read from the database; files imported and analysed already use
    their stored results; other files are analysed by the model now. Exits 1, evaluating
    nothing, when a row is wrong (each is listed with its line). A file that fails only
    once the model runs on it is listed ("not evaluated"), the rest is evaluated, and the
    command exits 1 at the end."""
    from tqdm import tqdm

    from plugin.flow.evaluate import output
    from plugin.flow.evaluate.labels import LabelsError
    from plugin.flow.evaluate.run import evaluate_labels
    from plugin.model.loading import EmotionModel, ModelUnavailable
    from rules.engine import RulesError, load_rules

    cfg = load_config(config_path)
    if out_dir:  # before hours of analysis, not after
        problem = output.out_problem(Path(out_dir))
        if problem:
            raise click.ClickException(str(problem))
    try:
        ruleset = load_rules(rules_path or cfg.rules_path)
    except RulesError as exc:
        raise click.ClickException(f"rules: {exc}") from None
    sessions, engine = _database(cfg)

    def load_model() -> EmotionModel:
        # Only when a labelled file has no stored results: stored calls need no model.
        try:
            model = EmotionModel(cfg.model)
        except ModelUnavailable as exc:
            raise click.ClickException(f"{exc} (needed for the labelled files that have no stored results)") from None
        if model.trial:
            click.echo(f"{cfg.model.path}: {trial.TEXT}: every emotion it gives is meaningless", err=True)
        return model

    def progress(jobs):
        return tqdm(jobs, unit="file", desc="analyse", file=sys.stderr,
                    disable=len(jobs) < 2 or not sys.stderr.isatty())

    try:
        ev = evaluate_labels(labels, cfg, sessions, ruleset, load_model, fresh, progress)
    except LabelsError as exc:
        for line in exc.lines():
            click.echo(line, err=True)
        raise click.ClickException(f"{labels}: {len(exc.problems)} problem(s); nothing evaluated") from None
    finally:
        engine.dispose()
    for line in ev.notes + ev.skipped:
        click.echo(line, err=True)
    click.echo(output.text(ev, trial.LABEL))
    if out_dir:
        try:
            written = output.write_all(ev, Path(out_dir), trial.LABEL)
        except output.OutputError as exc:
            for path in exc.written:
                click.echo(f"wrote {path}", err=True)
            raise click.ClickException(str(exc)) from None
        for path in written:
            click.echo(f"wrote {path}", err=True)
    if ev.skipped:  # scripts notice: the figures above leave those labels out
        raise click.ClickException(f"{labels}: {len(ev.skipped)} label(s) not evaluated (listed above)")


def _database(cfg):
    """Sessions on the configured database (migrated, as every command finds it)."""
    from plugin.store import engine as db

    try:
        engine = db.make_engine(cfg.database_url, echo=cfg.database.echo)
        db.upgrade(engine)
    except Exception as exc:  # unreachable, bad URL...
        raise click.ClickException(scrub.text(f"cannot open database {cfg.database_url!r}: "
                                              f"{str(exc).splitlines()[0]}")) from None
    return db.make_sessionmaker(engine), engine
