"""Each model's batches are counted under its own label of the batch-size histogram: the
speech model's (plugin/model/asr.py) do not blur the emotion model's."""

from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY

from plugin.model.batcher import Batcher

METRIC = "callmood_inference_batch_windows"


def batches(model: str) -> float:
    return REGISTRY.get_sample_value(f"{METRIC}_count", {"model": model}) or 0.0


def windows(model: str) -> float:
    return REGISTRY.get_sample_value(f"{METRIC}_sum", {"model": model}) or 0.0


def test_a_batchers_forwards_are_counted_under_its_model():
    before = {m: (batches(m), windows(m)) for m in ("emotion", "speech")}
    speech = Batcher(lambda x: x.sum(axis=1), batch_size=4, name="test-asr", model="speech")
    try:
        assert len(speech.classify([np.ones(16, dtype=np.float32)] * 3)) == 3
    finally:
        speech.close()
    assert (batches("speech"), windows("speech")) == (before["speech"][0] + 1, before["speech"][1] + 3)
    assert (batches("emotion"), windows("emotion")) == before["emotion"]

    emotion = Batcher(lambda x: x.sum(axis=1), batch_size=4)  # as plugin/model/loading.py makes it
    try:
        emotion.classify([np.ones(16, dtype=np.float32)] * 2)
    finally:
        emotion.close()
    assert (batches("emotion"), windows("emotion")) == (before["emotion"][0] + 1, before["emotion"][1] + 2)
