"""What both models' loaders share: the error that says why a model is not loaded, and
FunASR's chatter kept off our stdout while one loads."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from pathlib import Path


class ModelUnavailable(Exception):
    """The model is not loaded (yet); the message says why."""


class _ThreadStdout:
    """sys.stdout while a model loads: the loading thread's writes go to ``sink``, every
    other thread's where they went before. (contextlib.redirect_stdout swaps the process's
    stdout: a model loading in the background would swallow, or on leaving put back over,
    what another thread meanwhile pointed stdout at, as click's test runner does.)"""

    def __init__(self, real, sink: io.StringIO):
        self.real, self.sink, self.thread = real, sink, threading.get_ident()

    def write(self, text: str) -> int:
        return (self.sink if threading.get_ident() == self.thread else self.real).write(text)

    def flush(self) -> None:
        self.real.flush()

    def __getattr__(self, name: str):
        return getattr(self.real, name)


@contextlib.contextmanager
def _quiet_stdout(sink: io.StringIO):
    quiet = _ThreadStdout(sys.stdout, sink)
    sys.stdout = quiet
    try:
        yield
    finally:
        quiet.thread = None  # from now on it only forwards (thread ids are reused)
        if sys.stdout is quiet:  # else someone pointed it elsewhere meanwhile: theirs stays
            sys.stdout = quiet.real


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__


def hub_source(cfg) -> tuple[str, dict[str, str]]:
    """What to hand FunASR's AutoModel for ``cfg`` (model: or asr:, both have name, path,
    hub and revision): the model (a directory or a hub name) and the keyword that pins its
    revision.

    ModelScope: the name, with ``model_revision`` (FunASR passes it to the download).
    Hugging Face: FunASR downloads the newest whatever it is told, so the pinned commit is
    downloaded here and its directory handed over. A local ``model.path``: as it is."""
    if cfg.path:
        return str(Path(cfg.path).resolve()), {}
    if not cfg.revision:
        return cfg.name, {}
    if cfg.hub == "ms":
        return cfg.name, {"model_revision": cfg.revision}
    from funasr.download.name_maps_from_hub import name_maps_hf
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=name_maps_hf.get(cfg.name, cfg.name), revision=cfg.revision), {}


def check_model_dir(path: str, key: str = "model.path") -> None:
    """A model directory as FunASR needs it, or ModelUnavailable naming ``key`` in one line."""
    p = Path(path)
    if not p.is_dir():
        raise ModelUnavailable(f"{key} {path!r} is not a directory")
    missing = [f for f in ("config.yaml", "model.pt") if not (p / f).is_file()]
    if missing:
        raise ModelUnavailable(f"{key} {path!r} lacks {', '.join(missing)}")


def load_funasr(cfg, device: str, threads: int, what: str, section: str, **extra):
    """``funasr.AutoModel`` for ``cfg`` (the model: or asr: section: name, path, hub,
    revision), or ModelUnavailable saying why in one line. FunASR's notices (and hub
    download failures) printed to stdout at import and load time are kept off our stdout
    (``callmood analyze --csv`` writes there) and logged at debug. ``what`` names the model
    in messages ("emotion2vec model"), ``section`` the config section they point to."""
    import logging
    import warnings

    log = logging.getLogger(__name__)
    hint = f" (offline? set {section}.path to a downloaded model directory)"
    chatter = io.StringIO()
    with warnings.catch_warnings(), _quiet_stdout(chatter):
        warnings.simplefilter("ignore")  # pydub/funasr import-time noise about ffmpeg
        try:
            from funasr import AutoModel

            target = str(Path(cfg.path).resolve()) if cfg.path else cfg.name
            try:
                target, pinned = hub_source(cfg)
                # ncpu: FunASR would set torch to 4 threads whatever the machine has.
                return AutoModel(model=target, hub=cfg.hub, device=device, ncpu=threads, disable_update=True,
                                 disable_pbar=True, log_level="ERROR", **extra, **pinned)
            except Exception as exc:  # FunASR raises plain RuntimeError/AssertionError/KeyError
                where = "local directory" if cfg.path else f"hub {cfg.hub!r}"
                raise ModelUnavailable(f"cannot load {what} {target!r} from {where}: {_first_line(exc)}"
                                       f"{'' if cfg.path else hint}") from exc
        except ModelUnavailable as exc:
            failed = [ln for ln in chatter.getvalue().splitlines() if "failed!:" in ln]
            if failed and not cfg.path:
                # FunASR goes on after a failed download and then reports the model as "not
                # registered"; the download error is the useful reason.
                why = failed[-1].split("failed!:", 1)[1].strip()[:200]
                at = f" at revision {cfg.revision!r} ({section}.revision)" if cfg.revision else ""
                raise ModelUnavailable(f"cannot download {what} {cfg.name!r} from hub {cfg.hub!r}{at}: "
                                       f"{why}{hint}") from exc
            raise
        finally:
            if chatter.getvalue().strip():
                log.debug("funasr: %s", chatter.getvalue().strip())
