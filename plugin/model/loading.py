"""emotion2vec through FunASR: loading the model and classifying windows."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from plugin.config import AsrConfig, ModelConfig
from plugin.core import trial
from plugin.core.data import EMOTIONS, normalize_label
from plugin.model.asr import SpeechService
from plugin.model.batcher import Batcher
from plugin.model.common import ModelUnavailable, _first_line, check_model_dir, hub_source, load_funasr  # noqa: F401,E501 (re-exported)
from plugin.model.modeldir import MARKER, is_trial_model_dir

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("model.device is 'cuda' but torch sees no CUDA device")
    return device


def default_batch_size(device: str) -> int:
    """model.batch_size 0: 16 on the CPU; on CUDA 256 where the card has 32 GiB or more, else 64.

    On an H200 (docs/benchmarks.md, 2026-11-26) batch 256 ran the large model 12% faster than
    64, at 18.6 GB of GPU memory against 5.7 GB: more than a 16 GB card has to spare.
    """
    if device != "cuda":
        return 16
    import torch

    return 256 if torch.cuda.get_device_properties(0).total_memory >= 32 * 2**30 else 64


class EmotionModel:
    """A loaded emotion2vec model. Thread-safe: calls are serialized."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        if cfg.path:
            check_model_dir(cfg.path)  # before importing torch and FunASR: a missing directory is said at once
        # Random weights from `callmood make-random-model`: everything it makes says so.
        self.trial = bool(cfg.path) and is_trial_model_dir(cfg.path)
        self.device = resolve_device(cfg.device)
        self.threads = cfg.threads or len(os.sched_getaffinity(0))
        self._lock = threading.Lock()
        self.automodel = self._load()
        self.source = cfg.path or (f"{cfg.name}@{cfg.revision}" if cfg.revision else cfg.name)
        self.precision = "fp32"
        self.precision_reason = "FunASR's own generate" if cfg.engine != "batched" else ""
        self.batch_size = cfg.batch_size or default_batch_size(self.device)
        self.batcher: Batcher | None = None
        if cfg.engine == "batched":
            from plugin.model.batched import BatchedEmotion2vec  # imports torch: only where a model loads

            try:
                fast = BatchedEmotion2vec(self.automodel.model, self.automodel.kwargs["tokenizer"].token_list,
                                          self.device, cfg.precision)
            except (ValueError, TypeError) as exc:
                raise ModelUnavailable(f"cannot prepare the batched model: {exc}") from exc
            self.precision, self.precision_reason = fast.precision, fast.precision_reason
            self.batcher = Batcher(fast, self.batch_size)
        elif cfg.precision not in ("auto", "fp32"):
            raise ModelUnavailable(f"model.precision {cfg.precision!r} needs model.engine 'batched'")

    def describe(self) -> str:
        return (f"{'' if not self.trial else f'[{trial.TEXT}] '}{self.source} on {self.device} "
                f"({self.cfg.engine}, {self.precision}, "
                f"batch {self.batch_size if self.batcher else 1}, {self.threads} threads)")

    def provenance(self) -> dict:
        """What is stored with a call's results about the model that analysed it
        (``calls.summary["model"]``): messages planned from them say "trial" by it; the
        precision tells scores of int8 (auto on most CPUs) from fp32's."""
        return {"trial": self.trial, "precision": self.precision}

    def _load(self):
        model = load_funasr(self.cfg, self.device, self.threads, "emotion2vec model", "model")
        target = self.cfg.path or self.cfg.name
        if getattr(model.model, "proj", None) is None:
            raise ModelUnavailable(f"model {target!r} has no classification head (not an emotion2vec+ model?)")
        tokens = getattr(model.kwargs.get("tokenizer"), "token_list", None) or []
        missing = [e for e in EMOTIONS if e not in {normalize_label(t) for t in tokens}]
        if missing:  # early emotion2vec+ uploads named 5 labels for the head's 9 outputs
            raise ModelUnavailable(f"model {target!r} labels its outputs {list(tokens)}, without {missing}; "
                                   "use a revision with the nine emotion2vec+ labels (model.revision)")
        return model

    def classify(self, waveforms: list[np.ndarray]) -> list[dict[str, float]]:
        """Scores over the 9 emotions for each 16 kHz mono float32 waveform.

        Safe to call from many threads at once: with the batched engine their windows
        share batches on the one inference thread.
        """
        if not waveforms:
            return []
        if self.batcher is not None:
            rows = self.batcher.classify([np.asarray(w, dtype=np.float32) for w in waveforms])
            return [{e: float(v) for e, v in zip(EMOTIONS, row)} for row in rows]
        with self._lock:
            results = self.automodel.generate(input=list(waveforms), granularity="utterance",
                                              extract_embedding=False, disable_pbar=True)
        out = []
        for r in results:
            scores = {e: 0.0 for e in EMOTIONS}
            for token, score in zip(r["labels"], r["scores"]):
                scores[normalize_label(token)] = float(score)
            out.append(scores)
        return out


class ModelService:
    """Loads the model in the background and says why it is not ready until it is.

    The service accepts webhooks while the model is missing; workers wait for it.
    """

    def __init__(self, cfg: ModelConfig, asr: AsrConfig | None = None):
        self.cfg = cfg
        self.model: EmotionModel | None = None
        # SenseVoice, loaded on the emotion model's device once that one is loaded (plugin/model/asr.py).
        self.speech = SpeechService(asr or AsrConfig(enabled=False))
        self.state = "not loaded"
        self.reason = "model loading has not started"
        self.last_attempt: float | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.model is not None

    def try_load(self) -> bool:
        """One loading attempt; returns True when the model is ready."""
        if self.model is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False  # another thread is loading
        try:
            self.state, self.reason = "loading", f"loading {self.cfg.path or self.cfg.name}"
            self.last_attempt = time.time()
            t0 = time.perf_counter()
            try:
                self.model = EmotionModel(self.cfg)
            except ModelUnavailable as exc:
                self.state, self.reason = "unavailable", str(exc)
                log.warning("model not loaded: %s (next try in %.0fs)", exc, self.cfg.retry_interval_s)
                return False
            except Exception as exc:  # keep the service up whatever the loader throws
                self.state, self.reason = "unavailable", f"model loading failed: {_first_line(exc)}"
                log.exception("model loading failed")
                return False
            self.state, self.reason = "ready", "Model is ready for inference"
            log.info("model %s loaded in %.1fs; precision %s (%s)", self.model.describe(),
                     time.perf_counter() - t0, self.model.precision, self.model.precision_reason)
            if self.model.trial:
                log.warning("model.path %s holds RANDOM weights (%s): %s; every emotion is meaningless",
                            self.cfg.path, MARKER, trial.TEXT)
            return True
        finally:
            self._lock.release()

    def get(self) -> EmotionModel:
        if self.model is None:
            raise ModelUnavailable(self.reason)
        return self.model

    def try_load_speech(self) -> bool:
        """One attempt at the speech model (after the emotion model); True when there is
        nothing more to load (loaded, or asr off)."""
        model = self.model
        if model is None:
            return False
        return self.speech.try_load(model.device, model.threads)

    @property
    def settled(self) -> bool:
        """Workers may take calls: the emotion model is loaded and the speech model is
        loaded, off, or (asr.enabled auto) was tried once."""
        return self.ready and self.speech.settled

    @property
    def trial(self) -> bool:
        """A trial model (random weights) is loaded: /health and every page say so."""
        model = self.model
        return model is not None and getattr(model, "trial", False)

    def honest(self, answer: dict) -> dict:
        """A /health answer that says "trial model, random weights" while one is loaded."""
        if not self.trial:
            return answer
        return {**answer, "message": f"{answer.get('message', '')} ({trial.TEXT})".lstrip(), "trial": True}
