"""How predicted emotions agree with the true ones: the tutorial's per-class table
(precision, recall, F1, count), unweighted and weighted accuracy, the confusion matrix.

Pure: (true, predicted) pairs in, numbers out. A label with no window to judge is
predicted NONE and counts as a miss (never a class of its own in the per-class table).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from plugin.core.data import EMOTIONS

NONE = "(none)"  # no window of the model's overlapped the label


@dataclass(frozen=True)
class ClassRow:
    label: str
    precision: float | None  # None: never predicted
    recall: float | None  # None: not in the truth
    f1: float
    count: int  # support: how many labels say this class
    predicted: int  # how many predictions say it


@dataclass(frozen=True)
class Metrics:
    rows: list[ClassRow]  # every class in the truth or the predictions, in EMOTIONS order
    ua: float | None  # unweighted accuracy: mean recall over the classes in the truth
    wa: float | None  # weighted accuracy: correct / all
    correct: int
    total: int
    confusion: dict[tuple[str, str], int]  # (true, predicted) -> labels
    truths: list[str]  # confusion rows (EMOTIONS order)
    columns: list[str]  # confusion columns: the classes, then NONE

    def cell(self, true: str, predicted: str) -> int:
        return self.confusion.get((true, predicted), 0)


def _order(labels: set[str]) -> list[str]:
    known = [e for e in EMOTIONS if e in labels]
    return known + sorted(labels - set(EMOTIONS) - {NONE})


def compute(pairs: list[tuple[str, str]]) -> Metrics:
    """The metrics of ``pairs``: (true emotion, predicted emotion or NONE), one per label."""
    confusion = Counter(pairs)
    support = Counter(t for t, _ in pairs)
    said = Counter(p for _, p in pairs)
    classes = _order(set(support) | {p for p in said if p != NONE})
    rows = []
    for c in classes:
        tp = confusion[(c, c)]
        fp, fn = said[c] - tp, support[c] - tp
        precision = tp / said[c] if said[c] else None
        recall = tp / support[c] if support[c] else None
        # 2TP / (2TP + FP + FN): the harmonic mean of P and R where both exist, and 0 where
        # a class was never predicted or never true (there is nothing right about it).
        f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 0.0
        rows.append(ClassRow(c, precision, recall, f1, support[c], said[c]))
    recalls = [r.recall for r in rows if r.recall is not None]
    correct = sum(n for (t, p), n in confusion.items() if t == p)
    total = len(pairs)
    return Metrics(rows=rows, ua=sum(recalls) / len(recalls) if recalls else None,
                   wa=correct / total if total else None, correct=correct, total=total,
                   confusion=dict(confusion), truths=[c for c in classes if support[c]],
                   columns=classes + [NONE])
