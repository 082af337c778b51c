"""Loading emotion2vec through funasr.AutoModel, as production does, and the model service."""

import numpy as np
import pytest

from plugin.config import ModelConfig
from plugin.core.data import EMOTIONS
from plugin.model.loading import EmotionModel, ModelService, ModelUnavailable


def test_classify_gives_nine_scores(model_dir):
    model = EmotionModel(ModelConfig(path=str(model_dir)))
    assert model.device == "cpu"
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (48000, 48000, 20000)]
    out = model.classify(waves)
    assert len(out) == 3
    for scores in out:
        assert list(scores) == list(EMOTIONS)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert model.classify([]) == []


@pytest.mark.parametrize("setup,match", [
    (lambda d: None, "is not a directory"),
    (lambda d: d.mkdir(), "lacks config.yaml, model.pt"),
    (lambda d: (d.mkdir(), (d / "config.yaml").write_text("model: Emotion2vec\n"),
                (d / "model.pt").write_bytes(b"not a checkpoint")), "cannot load emotion2vec model"),
])
def test_unusable_model_directories_are_explained(tmp_path, setup, match):
    d = tmp_path / "model"
    setup(d)
    with pytest.raises(ModelUnavailable, match=match) as err:
        EmotionModel(ModelConfig(path=str(d)))
    assert "\n" not in str(err.value)


def test_cuda_requested_without_cuda(model_dir):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelUnavailable, match="no CUDA device"):
        EmotionModel(ModelConfig(path=str(model_dir), device="cuda"))


def test_service_says_why_until_the_model_appears(tmp_path, model_dir):
    import shutil

    target = tmp_path / "later"
    service = ModelService(ModelConfig(path=str(target)))
    assert not service.ready and "not started" in service.reason
    assert service.try_load() is False
    assert service.state == "unavailable" and "is not a directory" in service.reason
    with pytest.raises(ModelUnavailable, match="is not a directory"):
        service.get()
    shutil.copytree(model_dir, target)
    assert service.try_load() is True and service.ready
    assert service.reason == "Model is ready for inference" and service.get() is service.model
