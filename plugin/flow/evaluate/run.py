"""The steps of `callmood evaluate`, in order: read the labels, find each call's results
(stored, or the model on the file), predict, measure, sweep.

Nothing is measured while a row is wrong: every problem, each with its line, is raised
together (LabelsError), and those of files the model cannot decode after it ran."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from plugin.config import Config
from plugin.flow.evaluate import metrics, predict
from plugin.flow.evaluate.labels import Label, LabelsError, read_labels
from plugin.flow.evaluate.output import Evaluation
from plugin.flow.evaluate.sweep import Case, sweep
from plugin.model.loading import EmotionModel
from rules.engine import RuleSet


def _raise(name: str, problems: list[tuple[int, str]]) -> None:
    if problems:
        raise LabelsError([f"{name}:{line}: {what}" for line, what in sorted(problems)])


def scenario_problems(labels: list[Label], ruleset: RuleSet) -> list[tuple[int, str]]:
    known = [s.scenario for s in ruleset.scenarios]
    return [(lab.line, f"scenario: {lab.scenario!r} is not a scenario of the rules "
                       f"({', '.join(known) or 'none'}; rules: {ruleset.path})")
            for lab in labels if lab.scenario is not None and lab.scenario not in known]


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
    _raise(name, problems + planned.problems)
    units = dict(planned.units)
    if planned.to_run:
        ran, failed = predict.run_model(planned.to_run.values(), cfg, load_model(), progress)
        _raise(name, failed)
        units.update(ran)
    preds = predict.predictions(units, labels)
    cases = [Case(u.key, u.analysis, u.context, [(lab.role, lab.emotion, lab.scenario) for lab in u.labels])
             for u in units.values()]
    return Evaluation(
        predictions=preds, metrics=metrics.compute([(p.label.emotion, p.predicted) for p in preds]),
        sweeps=sweep(ruleset, cases), units=len(units),
        stored=sum(u.origin == predict.STORED for u in units.values()),
        modelled=sum(u.origin == predict.MODEL for u in units.values()),
        trial=any(u.trial for u in units.values()), rules_path=str(ruleset.path or ""))
