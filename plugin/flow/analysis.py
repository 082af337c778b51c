"""Decoded audio -> SegmentResults -> CallAnalysis.

Shared by the worker, the demo /predict endpoint and `callmood analyze`, so all
three cut, skip and summarize the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from plugin.audio import segment as seg
from plugin.audio import vad
from plugin.audio.decode import DecodedAudio
from plugin.config import AsrConfig, AudioConfig
from plugin.core.data import CallAnalysis, SegmentResult, summarize
from plugin.core.transcript import NEIGHBOUR_GAP_S, mask_across, mask_numbers, normalize
from plugin.model.loading import EmotionModel

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the speech model imports FunASR: only where one loads
    from plugin.model.asr import SpeechModel

# Windows a call hands to the model at a time: bounds memory on long calls (the model
# batches them, together with other calls' windows, by its own batch size).
WINDOWS_PER_REQUEST = 128


@dataclass(frozen=True)
class Listening:
    """What to do about the words: the speech model, which windows it hears (None: all;
    else those whose emotion2vec label is one of these, asr.windows "emotion"), and which
    numbers are masked before anything is kept (asr.mask_numbers)."""

    model: SpeechModel
    labels: frozenset[str] | None = None
    mask: tuple[str, ...] = ()


def listening(speech: SpeechModel | None, cfg: AsrConfig, rules=None) -> Listening | None:
    """How a call is listened to under ``cfg`` (asr:), or None without a speech model.
    asr.windows "emotion": only windows whose label an emotion clause of ``rules`` (a
    RuleSet) names; with no such clause, every window."""
    if speech is None:
        return None
    labels = None
    if cfg.windows == "emotion" and rules is not None:
        named = {e for sc in rules.scenarios for rule in sc.rules for c in rule.when.clauses()
                 for e in c.emotions or ()}
        labels = frozenset(named) or None
    return Listening(speech, labels, tuple(cfg.mask_numbers))


def analyze_audio(audio: DecodedAudio, model: EmotionModel, cfg: AudioConfig,
                  channel_roles: dict[int, str] | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  listening: Listening | None = None) -> tuple[CallAnalysis, dict]:
    """Classify the speech (or every audible window) of every track, and with ``listening``
    transcribe the same windows; returns the analysis and notes."""
    tracks, note = seg.tracks_for(audio, channel_roles)
    wins: list[seg.Window] = []
    speech_frames = 0
    probs = [None] * len(tracks)
    if cfg.vad == "silero":  # every track at once: their pieces share the VAD's batches
        probs = vad.speech_probs(
            [lambda a, b, t=track: seg.read(audio, t, a, b) for track in tracks], audio.frames)
    for track, track_probs in zip(tracks, probs):
        regions = None
        if track_probs is not None:
            regions = vad.regions_from_probs(track_probs, audio.frames, cfg.vad_threshold, cfg.min_speech_s,
                                             cfg.min_silence_s, cfg.speech_pad_s)
            speech_frames += sum(b - a for a, b in regions)
        wins += seg.windows(audio, track, cfg.window_s, cfg.min_segment_s, regions)
    if on_progress:
        on_progress(0, len(wins))

    results: list[SegmentResult] = []
    quiet_frames = 0
    failed: list[str] = []  # why the speech model failed, if it did
    # Samples are read from the memory-mapped decode a chunk at a time, so a long call
    # is never held in memory whole.
    for i in range(0, len(wins), WINDOWS_PER_REQUEST):
        batch = []
        for w in wins[i:i + WINDOWS_PER_REQUEST]:
            x = seg.samples(audio, w)
            if cfg.vad == "energy" and seg.dbfs(x) < cfg.silence_dbfs:
                quiet_frames += w.end - w.start
                continue
            batch.append((w, x))
        scored = model.classify([x for _, x in batch])
        labels = [max(scores, key=scores.get) for scores in scored]
        words = _transcribe(listening, [x for _, x in batch], labels, failed) if listening else [None] * len(batch)
        for (w, _), scores, label, heard in zip(batch, scored, labels, words):
            results.append(SegmentResult(
                start=round(w.start / audio.sample_rate, 3), end=round(w.end / audio.sample_rate, 3),
                channel=w.channel, role=w.role, label=label, confidence=round(scores[label], 6),
                scores={k: round(v, 6) for k, v in scores.items()}, **(heard or {})))
        if on_progress:
            on_progress(min(i + WINDOWS_PER_REQUEST, len(wins)), len(wins))

    rate = audio.sample_rate
    track_s = audio.duration * len(tracks)
    classified_s = sum(r.end - r.start for r in results)
    notes = {"tracks": [{"channel": t.channel, "role": t.role} for t in tracks],
             "channels_in_file": audio.channels, "vad": cfg.vad,
             # Seconds over all analysed tracks (a stereo call has two tracks).
             "audio_s": round(track_s, 3),
             "classified_s": round(classified_s, 3),
             "skipped_s": round(max(track_s - classified_s, 0.0), 3),
             "skipped_share": round(1 - classified_s / track_s, 4) if track_s else 0.0}
    if cfg.vad == "silero":
        notes["speech_s"] = round(speech_frames / rate, 3)
    if cfg.vad == "energy":
        notes["skipped_silence_s"] = round(quiet_frames / rate, 3)
    if note:
        notes["layout_note"] = note
    if listening:
        # Words are masked once every window is heard: a number read out across two windows
        # is masked in both, and the matching form is made from the masked words.
        results = _masked(results, listening.mask)
        notes["transcribed"] = sum(r.text is not None for r in results)
        if failed:
            notes["transcript"] = f"failed: {failed[0]}"
    # How the audio came and was decoded (source rate, codec, resampler, narrowband, partial):
    # the call's summary and /predict say it, so a score is never read without it.
    notes.update(audio.describe())
    return summarize(results, audio.duration), notes



def _transcribe(listening: Listening, xs: list, labels: list[str], failed: list[str]) -> list[dict | None]:
    """The transcript fields of each window (None for a window not heard), the words as the
    model gave them: _masked masks them before anything keeps them. A speech model that
    fails costs these windows their words, never the call its emotions."""
    wanted = [i for i, label in enumerate(labels) if listening.labels is None or label in listening.labels]
    out: list[dict | None] = [None] * len(xs)
    try:
        heard = listening.model.transcribe([xs[i] for i in wanted])
    except Exception as exc:
        reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if not failed:
            log.warning("speech model failed; windows analysed without words: %s", reason)
        failed.append(reason)
        return out
    for i, parsed in zip(wanted, heard):
        out[i] = {"text": parsed.text, "language": parsed.language, "tag_emotion": parsed.tag_emotion,
                  "events": parsed.events}
    return out


def _masked(results: list[SegmentResult], mask: tuple[str, ...]) -> list[SegmentResult]:
    """Each window's words with numbers masked, also across neighbouring windows of a
    channel, and their matching form (masked again once joined up: normalize drops the
    separators a number may have hidden behind)."""
    texts = {id(r): r.text for r in results if r.text is not None}
    if mask:
        by_channel: dict[int, list[SegmentResult]] = {}
        for r in results:
            if r.text is not None:
                by_channel.setdefault(r.channel, []).append(r)
        for segs in by_channel.values():
            segs.sort(key=lambda r: r.start)
            for a, b in zip(segs, segs[1:]):
                if b.start - a.end <= NEIGHBOUR_GAP_S:
                    texts[id(a)], texts[id(b)] = mask_across(mask_numbers(texts[id(a)], mask),
                                                              mask_numbers(texts[id(b)], mask), mask)
            for r in segs:
                texts[id(r)] = mask_numbers(texts[id(r)], mask)
    out = []
    for r in results:
        if r.text is None:
            out.append(r)
            continue
        text = texts[id(r)]
        matching = normalize(text)
        out.append(replace(r, text=text, normalized=mask_numbers(matching, mask) if mask else matching))
    return out
