"""The steps of `callmood evaluate`, in order: read the labels, find each call's results
(stored, or the model on the file), predict, measure, sweep.

Nothing is measured while a row is wrong: every problem, each with its line, is raised
together (LabelsError), before the model is loaded: the files it would analyse are probed
as decode first does. A file that still fails once the model runs on it (hours into a
large labels set) is set aside with its lines (Evaluation.skipped) and the rest is
measured; only when no label is left is nothing evaluated.

Each labelled call is counted as it comes (its predictions kept, its sweep tallied) and
its segment results let go, so a large labels file is not held in memory whole."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from plugin.config import Config
from plugin.flow.evaluate import metrics, predict
from plugin.flow.evaluate.labels import Label, LabelsError, read_labels
from plugin.flow.evaluate.output import Evaluation
from plugin.flow.evaluate.sweep import Case, Sweeper
from plugin.model.loading import EmotionModel
from rules.engine import RuleSet

SHOWN_LINES = 10  # label lines named in one note; more are counted


def _raise(name: str, problems: list[tuple[int, str]]) -> None:
    if problems:
        raise LabelsError([f"{name}:{line}: {what}" for line, what in sorted(problems)])


def scenario_problems(labels: list[Label], ruleset: RuleSet) -> list[tuple[int, str]]:
    known = [s.scenario for s in ruleset.scenarios]
    return [(lab.line, f"scenario: {lab.scenario!r} is not a scenario of the rules "
                       f"({', '.join(known) or 'none'}; rules: {ruleset.path})")
            for lab in labels if lab.scenario is not None and lab.scenario not in known]


def lines_of(labels: list[Label]) -> str:
    lines = [str(lab.line) for lab in labels]
    more = len(lines) - SHOWN_LINES
    return ", ".join(lines[:SHOWN_LINES]) + (f" and {more} more" if more > 0 else "")


def evaluate_labels(labels_path: str | Path, cfg: Config, sessions: sessionmaker[Session], ruleset: RuleSet,
                    load_model: Callable[[], EmotionModel], fresh: bool = False,
                    progress: Callable[[list], Iterable] = lambda xs: xs) -> Evaluation:
    """The evaluation of the labels at ``labels_path``. ``load_model`` is called only when a
    file has no stored results (or with ``fresh``); what it raises (ModelUnavailable) goes
    to the caller. Raises LabelsError listing every row that cannot be evaluated."""
    name = Path(labels_path).name
    labels = read_labels(labels_path)
    problems = scenario_problems(labels, ruleset)
    planned = predict.plan(labels, sessions, cfg.fetch.max_bytes, fresh)
    problems += planned.problems
    if planned.to_run:
        problems += predict.probe_files(planned.to_run.values(), cfg.audio)
    _raise(name, problems)

    preds: dict[int, predict.Prediction] = {}  # by label line
    sweeper = Sweeper(ruleset)
    counts = {predict.STORED: 0, predict.MODEL: 0}
    made_by_trial = False
    skipped: list[tuple[int, str]] = []
    notes: list[str] = []

    def count(unit: predict.Unit) -> None:
        nonlocal made_by_trial
        for p in predict.predictions(unit):
            preds[p.label.line] = p
        sweeper.add(Case(unit.key, unit.analysis, unit.context,
                         [(lab.role, lab.emotion, lab.scenario) for lab in unit.labels]))
        counts[unit.origin] += 1
        made_by_trial |= unit.trial

    for unit in predict.stored_units(sessions, planned.stored):
        count(unit)
    if planned.to_run:
        for ran in predict.run_model(planned.to_run.values(), cfg, load_model(), progress):
            rows = ran.job.labels
            if ran.unit is None:
                skipped += [(lab.line, ran.failure) for lab in rows]
                continue
            if ran.note:
                notes.append(f"{name}:{rows[0].line}: file: {rows[0].file_text!r}: {ran.note} "
                             f"(label lines {lines_of(rows)})")
            count(ran.unit)
    if not preds:
        _raise(name, skipped)  # every file the model ran on failed: nothing to measure
    ordered = [preds[lab.line] for lab in labels if lab.line in preds]
    return Evaluation(
        predictions=ordered, metrics=metrics.compute([(p.label.emotion, p.predicted) for p in ordered]),
        sweeps=sweeper.results, units=sum(counts.values()), stored=counts[predict.STORED],
        modelled=counts[predict.MODEL], trial=made_by_trial, rules_path=str(ruleset.path or ""),
        skipped=[f"{name}:{line}: not evaluated: {what}" for line, what in sorted(skipped)], notes=notes)
