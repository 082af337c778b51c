"""SenseVoiceSmall (or Paraformer-zh) through FunASR: what was said in each window
emotion2vec scores.

Loaded like emotion2vec (a hub name at asr.revision, or a local directory, through
``funasr.AutoModel``), and never anything else: no VAD, punctuation or speaker model is
named, so FunASR fetches none; its update check is off, and ``trust_remote_code`` is never
passed (SenseVoiceSmall is FunASR's own class). A hub name is looked up at the hub at each
load, as emotion2vec's is: pin ``asr.revision`` (or use ``asr.path``) to load the same
weights every time.
Deterministic: the front end's dither, 1.0 in the published config, is set to 0, and int8
quantizes one window's activations at a time (``_one_window_at_a_time``).

Windows of equal length are batched together, across calls, on an inference thread of
its own (plugin/model/batcher.py), as emotion2vec's are: no padding, so a window's words
do not depend on which other windows shared its batch.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

import numpy as np

from plugin.config import AsrConfig
from plugin.core.transcript import Parsed, parse_paraformer, parse_sensevoice
from plugin.model.batcher import Batcher
from plugin.model.common import ModelUnavailable, _first_line, check_model_dir, load_funasr

log = logging.getLogger(__name__)

# SenseVoiceSmall: five languages, its emotion tag and audio events. Paraformer-zh (FunASR's
# SeacoParaformer; Paraformer without hotwords): Mandarin only, words biased by asr.hotwords.
SENSEVOICE = ("SenseVoiceSmall",)
PARAFORMER = ("SeacoParaformer", "Paraformer")
MODEL_CLASSES = SENSEVOICE + PARAFORMER


def default_batch_size(device: str) -> int:
    """asr.batch_size 0: 16 windows per forward on the CPU, 64 on CUDA."""
    return 64 if device == "cuda" else 16


class SpeechModel:
    """A loaded SenseVoiceSmall (or Paraformer-zh). Thread-safe: windows from many threads
    share batches."""

    def __init__(self, cfg: AsrConfig, device: str, threads: int = 0):
        self.cfg = cfg
        if cfg.path:
            check_model_dir(cfg.path, "asr.path")  # before importing FunASR: said at once
        self.device = device
        self.threads = threads or len(os.sched_getaffinity(0))
        self.source = cfg.path or (f"{cfg.name}@{cfg.revision}" if cfg.revision else cfg.name)
        self.automodel = self._load()
        self.precision, self.precision_reason = self._quantize()
        self.batch_size = cfg.batch_size or default_batch_size(device)
        self.batcher = Batcher(self._run, self.batch_size, name="callmood-asr", model="speech")

    def describe(self) -> str:
        how = (f"language {self.cfg.language}, itn {'on' if self.cfg.use_itn else 'off'}" if self.kind in SENSEVOICE
               else f"{len(self.cfg.hotwords)} hotwords")
        return f"{self.source} on {self.device} ({self.kind}, {self.precision}, {how}, batch {self.batch_size})"

    def _quantize(self) -> tuple[str, str]:
        """int8 (dynamic, per-channel weight scales) for every Linear layer, where asked or
        where ``auto`` picks it as it does for emotion2vec (a CPU with AVX2). SenseVoice's
        input is fbank features, not the raw waveform, so no layer is kept in fp32."""
        from plugin.model.batched import auto_precision

        want = self.cfg.precision
        if want == "auto" and self.kind in PARAFORMER:
            # Its decoder pads each window's tokens to the batch's longest, and padded rows
            # would move a window's int8 scales: its words would depend on its batch mates.
            return "fp32", "auto: fp32 for Paraformer (int8 would make a window's words depend on its batch)"
        if want == "auto":
            picked, why = auto_precision(self.device)
            if picked != "int8":  # bf16 on CUDA or AMX is emotion2vec's measured choice, not SenseVoice's
                return "fp32", "auto: fp32 (int8 only on a CPU with AVX2)"
            want, reason = "int8", why
        else:
            reason = "asr.precision"
        if want == "int8":
            if self.device != "cpu":
                raise ModelUnavailable("asr.precision 'int8' runs on the CPU only")
            import torch

            model = self.automodel.model
            with warnings.catch_warnings():  # torch 2.13 flags its quantized tensors as deprecated
                warnings.simplefilter("ignore", UserWarning)
                torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, inplace=True)
            _one_window_at_a_time(model)
        return want, reason

    def _load(self):
        # check_latest off: a local directory is taken as it is, not compared with the hub's.
        model = load_funasr(self.cfg, self.device, self.threads, "speech model", "asr", check_latest=False)
        target = self.cfg.path or self.cfg.name
        kind = type(model.model).__name__
        if kind not in MODEL_CLASSES:
            raise ModelUnavailable(f"asr model {target!r} is a {kind}, not SenseVoiceSmall or Paraformer-zh")
        self.kind = kind
        frontend = model.kwargs.get("frontend")
        if frontend is not None and hasattr(frontend, "dither"):
            frontend.dither = 0.0  # the same audio, the same words
        return model

    def transcribe(self, waveforms: list[np.ndarray]) -> list[Parsed]:
        """What was said in each 16 kHz mono float32 window; blocks until all are done."""
        if not waveforms:
            return []
        return self.batcher.classify([np.asarray(w, dtype=np.float32) for w in waveforms])

    def _run(self, batch: np.ndarray) -> list[Parsed]:
        try:
            texts = self._generate(list(batch))
        except IndexError:
            # FunASR 1.4 raises IndexError computing some token timestamps (an open upstream
            # bug, seen on English text): one window at a time, so one window loses its words
            # and not the whole batch.
            texts = []
            for window in batch:
                try:
                    texts += self._generate([window])
                except IndexError:
                    log.warning("speech model failed on a window (FunASR IndexError); it is kept without words")
                    texts.append("")
        parse = parse_sensevoice if self.kind in SENSEVOICE else parse_paraformer
        return [parse(t) for t in texts]

    def _generate(self, windows: list[np.ndarray]) -> list[str]:
        if self.kind in SENSEVOICE:
            options = {"language": self.cfg.language, "use_itn": self.cfg.use_itn}
        else:  # None, not "": an empty hotword list would still run the hotword decoder
            options = {"hotword": " ".join(self.cfg.hotwords) or None}
        results = self.automodel.generate(input=windows, batch_size=len(windows), disable_pbar=True, **options)
        if not results:  # Paraformer answers [] when no window of the batch has a word
            return [""] * len(windows)
        if len(results) != len(windows):
            raise RuntimeError(f"speech model gave {len(results)} results for {len(windows)} windows")
        return [r.get("text", "") for r in results]


def _one_window_at_a_time(model) -> None:
    """Wrap each int8 Linear so that it quantizes one window's activations at a time.

    Dynamic int8 picks the activations' scale over the whole input tensor: over a batch,
    one loud window would change a quiet one's words, and the words would depend on which
    windows shared the batch. Per window, they do not (tests/integration/test_asr.py); the
    GEMMs stay large (a window's frames times the layer's width)."""
    import torch.nn as nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class PerWindow(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.dim() < 3 or x.shape[0] == 1:
                return self.inner(x)
            import torch

            return torch.cat([self.inner(part) for part in x.split(1)], dim=0)

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DynamicLinear):
                setattr(parent, name, PerWindow(child))


class SpeechService:
    """Loads the speech model in the background, like ModelService does emotion2vec.

    ``settled`` tells workers whether to go on: the model is loaded, or it is off, or
    (``enabled: auto``) a first attempt failed, after which calls are analysed without
    words while loading is tried again every ``retry_interval_s``."""

    def __init__(self, cfg: AsrConfig):
        self.cfg = cfg
        self.model: SpeechModel | None = None
        self.state = "off" if not cfg.wanted else "not loaded"
        self.reason = "asr.enabled is false" if not cfg.wanted else "speech model loading has not started"
        self.attempts = 0
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def settled(self) -> bool:
        if not self.cfg.wanted or self.model is not None:
            return True
        return self.cfg.enabled == "auto" and self.attempts > 0

    def try_load(self, device: str, threads: int = 0, announce: bool = True) -> bool:
        """One attempt; ``announce``: log a failure (the service; `callmood analyze` says
        it its own way)."""
        if not self.cfg.wanted or self.model is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self.state, self.reason = "loading", f"loading {self.cfg.path or self.cfg.name}"
            try:
                self.model = SpeechModel(self.cfg, device, threads)
            except ModelUnavailable as exc:
                self.state, self.reason = "unavailable", str(exc)
                if announce:
                    meanwhile = ("workers wait for it (asr.enabled: true)" if self.cfg.enabled is True
                                 else "calls are analysed without words")
                    log.warning("speech model not loaded: %s (%s; next try in %.0fs)", exc, meanwhile,
                                self.cfg.retry_interval_s)
                return False
            except Exception as exc:
                self.state, self.reason = "unavailable", f"speech model loading failed: {_first_line(exc)}"
                log.exception("speech model loading failed")
                return False
            finally:
                self.attempts += 1
            self.state, self.reason = "ready", "Speech model is ready"
            log.info("speech model %s loaded", self.model.describe())
            return True
        finally:
            self._lock.release()

    def get(self) -> SpeechModel | None:
        """The model, None where calls go without words; raises while ``enabled: true``
        waits for it."""
        if self.model is None and self.cfg.enabled is True:
            raise ModelUnavailable(f"speech model not ready: {self.reason}")
        return self.model
