"""`callmood evaluate`'s numbers on a hand-built confusion, computed by hand:

    true \\ predicted  angry  happy  neutral  sad  (none)
    angry                3      0        1    0       0
    neutral              1      1        4    0       1
    sad                  0      0        1    1       0
"""

from __future__ import annotations

import pytest

from plugin.flow.evaluate.metrics import NONE, compute

PAIRS = ([("angry", "angry")] * 3 + [("angry", "neutral")]
         + [("neutral", "neutral")] * 4 + [("neutral", "angry"), ("neutral", NONE), ("neutral", "happy")]
         + [("sad", "sad"), ("sad", "neutral")])


def test_per_class_precision_recall_f1_and_count():
    m = compute(PAIRS)
    rows = {r.label: r for r in m.rows}
    assert [r.label for r in m.rows] == ["angry", "happy", "neutral", "sad"]  # EMOTIONS order; (none) is no class
    angry, happy, neutral, sad = (rows[k] for k in ("angry", "happy", "neutral", "sad"))
    assert (angry.precision, angry.recall, angry.f1, angry.count, angry.predicted) == (0.75, 0.75, 0.75, 4, 4)
    # Predicted once, never true: precision 0, no recall, F1 0.
    assert (happy.precision, happy.recall, happy.f1, happy.count, happy.predicted) == (0.0, None, 0.0, 0, 1)
    assert neutral.precision == pytest.approx(4 / 6) and neutral.recall == pytest.approx(4 / 7)
    assert neutral.f1 == pytest.approx(2 * (4 / 6) * (4 / 7) / (4 / 6 + 4 / 7)) == pytest.approx(8 / 13)
    assert (neutral.count, neutral.predicted) == (7, 6)
    assert (sad.precision, sad.recall, sad.f1, sad.count) == (1.0, 0.5, pytest.approx(2 / 3), 2)


def test_ua_wa_and_the_confusion_matrix():
    m = compute(PAIRS)
    assert (m.correct, m.total) == (8, 13)
    assert m.wa == pytest.approx(8 / 13)
    assert m.ua == pytest.approx((3 / 4 + 4 / 7 + 1 / 2) / 3) == pytest.approx(17 / 28)  # happy is not in the truth
    assert m.truths == ["angry", "neutral", "sad"]
    assert m.columns == ["angry", "happy", "neutral", "sad", NONE]
    assert [[m.cell(t, p) for p in m.columns] for t in m.truths] == [[3, 0, 1, 0, 0],
                                                                      [1, 1, 4, 0, 1],
                                                                      [0, 0, 1, 1, 0]]
    # WA is recall weighted by count: the (none) predictions count against it.
    assert sum(r.recall * r.count for r in m.rows if r.recall is not None) / m.total == pytest.approx(m.wa)


def test_a_class_never_predicted_and_nothing_at_all():
    m = compute([("sad", NONE), ("angry", "angry")])
    sad = next(r for r in m.rows if r.label == "sad")
    assert (sad.precision, sad.recall, sad.f1) == (None, 0.0, 0.0)
    assert (m.ua, m.wa) == (0.5, 0.5)
    empty = compute([])
    assert (empty.rows, empty.ua, empty.wa, empty.columns) == ([], None, None, [NONE])
