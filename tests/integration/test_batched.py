"""The batched forward gives FunASR's own scores, and the batcher shares batches across calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from plugin.config import ModelConfig
from plugin.core.data import EMOTIONS
from plugin.model.batched import BatchedEmotion2vec, auto_precision, choose_precision, cpu_features
from plugin.model.loading import EmotionModel, ModelUnavailable

# fp32 on CPU: the same arithmetic as FunASR's generate, grouped differently.
FP32_TOLERANCE = 1e-5


def _windows(seconds: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = [np.arange(int(s * 16000)) / 16000 for s in seconds]
    return [(0.3 * np.sin(2 * np.pi * (150 + 40 * i) * x) + 0.05 * rng.standard_normal(len(x))).astype(np.float32)
            for i, x in enumerate(t)]


def _matrix(scores: list[dict[str, float]]) -> np.ndarray:
    return np.array([[s[e] for e in EMOTIONS] for s in scores])


@pytest.fixture(scope="module")
def reference(model_dir):
    return EmotionModel(ModelConfig(path=str(model_dir), device="cpu", engine="funasr"))


def test_batched_scores_equal_funasr_generate(model_dir, reference):
    # Full windows, two tail lengths, in mixed order: bucketed by length, order kept.
    wins = _windows([3, 3, 1.5, 3, 1.0, 3, 1.5, 3, 3, 3])
    ours = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", batch_size=4, precision="fp32"))
    assert ours.batcher is not None and ours.precision == "fp32"
    got, want = _matrix(ours.classify(wins)), _matrix(reference.classify(wins))
    assert np.abs(got - want).max() < FP32_TOLERANCE
    assert (got.argmax(1) == want.argmax(1)).all()
    assert ours.batcher.largest_batch == 4  # 6 full windows in batches of 4 and 2
    assert np.allclose(got.sum(1), 1, atol=1e-5)


def test_int8_is_close_to_fp32(model_dir, reference):
    wins = _windows([3] * 6)
    int8 = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", precision="int8"))
    got, want = _matrix(int8.classify(wins)), _matrix(reference.classify(wins))
    assert int8.precision == "int8" and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - want).max() < 0.02


def test_cuda_configuration_runs_on_cpu(model_dir, reference):
    """What runs on a GPU (conv front end, bf16 autocast), checked here on the CPU."""
    wins = _windows([3, 3, 2])
    am = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", engine="funasr")).automodel
    fast = BatchedEmotion2vec(am.model, am.kwargs["tokenizer"].token_list, "cpu", "bf16", gemm_front_end=False)
    got = np.concatenate([fast(np.stack(wins[:2])), fast(wins[2][None])])
    want = _matrix(reference.classify(wins))
    assert got.shape == (3, len(EMOTIONS)) and np.allclose(got.sum(1), 1, atol=1e-4)
    assert np.abs(got - want).max() < 0.05  # bf16 carries ~3 significant digits


def test_precision_choices():
    assert choose_precision("auto", "cuda") == "bf16"
    # auto on a CPU, by its features: bf16 units first, then int8 (needs AVX2), else fp32.
    assert choose_precision("auto", "cpu", {"avx2", "fma"}) == "int8"
    assert choose_precision("auto", "cpu", {"avx2", "avx512f", "avx512_bf16"}) == "int8"  # measured faster
    assert choose_precision("auto", "cpu", {"avx2", "amx_bf16", "amx_tile"}) == "bf16"
    assert choose_precision("auto", "cpu", {"sse4_2"}) == "fp32"
    assert choose_precision("auto", "cpu", set()) == "fp32"
    with pytest.raises(ValueError, match="int8.*CPU only"):
        choose_precision("int8", "cuda")
    with pytest.raises(ValueError, match="fp16.*needs CUDA"):
        choose_precision("fp16", "cpu")


def test_auto_says_what_it_chose_and_why(model_dir):
    model = EmotionModel(ModelConfig(path=str(model_dir), device="cpu"))
    precision, reason = auto_precision("cpu")
    assert (model.precision, model.precision_reason) == (precision, reason)
    assert reason.startswith("auto: ") and precision in reason
    assert precision == ("bf16" if "amx_bf16" in cpu_features() else "int8" if "avx2" in cpu_features() else "fp32")
    pinned = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", precision="fp32"))
    assert (pinned.precision, pinned.precision_reason) == ("fp32", "model.precision")


def test_the_front_end_in_chunks_gives_the_scores_of_one_pass(model_dir, reference):
    # The GEMM front end runs a batch one window at a time (its activations are 20 MB a
    # window); a batch of 9 is nine passes, and must score as FunASR does one by one.
    wins = _windows([3] * 9, seed=3)
    ours = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", batch_size=9, precision="fp32"))
    got, want = _matrix(ours.classify(wins)), _matrix(reference.classify(wins))
    assert ours.batcher.largest_batch == 9
    assert np.abs(got - want).max() < FP32_TOLERANCE


def test_unusable_precision_is_a_clear_model_error(model_dir):
    with pytest.raises(ModelUnavailable, match="fp16.*needs CUDA"):
        EmotionModel(ModelConfig(path=str(model_dir), device="cpu", precision="fp16"))
    with pytest.raises(ModelUnavailable, match="int8.*needs model.engine 'batched'"):
        EmotionModel(ModelConfig(path=str(model_dir), device="cpu", engine="funasr", precision="int8"))


def test_concurrent_calls_share_batches(model_dir, reference):
    model = EmotionModel(ModelConfig(path=str(model_dir), device="cpu", batch_size=16, precision="fp32"))
    batcher = model.batcher
    calls = [_windows([3] * 5, seed=i) for i in range(4)]
    run = batcher._run
    first_running, submitted = threading.Event(), threading.Event()

    def held_run(batch):  # hold the first batch until the other three calls are waiting
        first_running.set()
        submitted.wait(timeout=30)
        return run(batch)
    batcher._run = held_run

    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, model.classify(calls[i])))
               for i in range(4)]
    threads[0].start()
    assert first_running.wait(timeout=30)
    for t in threads[1:]:
        t.start()
    while len(batcher._pending) < 15:
        threading.Event().wait(0.01)
    submitted.set()
    for t in threads:
        t.join(timeout=60)
    # The first call ran alone; the other three calls' windows went through as one batch.
    assert batcher.batches_run == 2 and batcher.largest_batch == 15
    for i in range(4):  # and every caller got its own windows' scores back, in order
        assert np.abs(_matrix(results[i]) - _matrix(reference.classify(calls[i]))).max() < FP32_TOLERANCE


def test_inference_error_reaches_the_caller_and_the_thread_lives_on(model_dir):
    model = EmotionModel(ModelConfig(path=str(model_dir), device="cpu"))
    with pytest.raises(RuntimeError):
        model.classify([np.zeros(10, dtype=np.float32)])  # far too short for the front end
    assert len(model.classify(_windows([3]))) == 1
