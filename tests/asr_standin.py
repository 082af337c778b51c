"""A SenseVoiceSmall that hears chosen sentences in chosen audio: weights set by hand.

Random weights transcribe gibberish, so keyword rules could never be driven end to end by
them. This stand-in is FunASR's own ``SenseVoiceSmall`` (config.yaml, model.pt, a
SentencePiece tokenizer, loaded by ``funasr.AutoModel`` and run by its ``generate``), with
weights chosen so that each token of the chosen sentences is a two-tone chord:

- every attention and feed-forward output is zero, so each encoder layer passes its input
  through (the first one keeps its value projection, which copies the centre frame's 80
  mel bins of the 7 frames FunASR stacks, and the first 16 input dimensions, where the
  language, emotion, event and text-normalisation queries put their embeddings);
- the CTC output layer scores each token by how much the frame looks like that token's
  chord (the cosine with the mean encoder output of the chord, measured here by running
  the model on it), each query position by its own embedding, and the blank by a
  threshold: what looks like nothing well enough is a blank;

so greedy CTC decoding (FunASR's) gives back the chord sequence's tokens, and the query
positions give the stand-in's language, emotion and event tags. Chords stay under 3.4 kHz,
so they survive 8 kHz telephone audio. ``StandIn.audio`` makes the audio for a sentence.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plugin.model.sensevoice_dir import (
    EMOTION_TAGS, EVENT_TAGS, ITN_TAGS, LANGUAGE_TAGS, build_sensevoice_dir, sensevoice_config, train_tokenizer)

RATE = 16000
TONE_S, GAP_S = 0.12, 0.06  # a token's chord, the silence after it: 16 tokens fill a 3 s window
LOW = (300, 420, 560, 720, 880, 1050)  # Hz: one tone of each chord from here...
HIGH = (1250, 1450, 1680, 1920, 2180, 2450, 2750, 3050, 3350)  # ...and one from here
GEOMETRY = dict(output_size=128, attention_heads=4, linear_units=16, num_blocks=1, tp_blocks=0)
SHARPNESS, BLANK_BELOW = 20.0, 0.7
QUERY_DIMS = 16  # input dims (frame 0's lowest mel bins) the queries' embeddings use


@dataclass
class StandIn:
    path: Path
    chords: dict[int, tuple[int, int]]  # token id -> its chord (Hz)
    tokens: dict[str, list[int]]  # sentence -> its token ids

    def audio(self, sentence: str, seconds: float | None = None, amplitude: float = 0.3) -> np.ndarray:
        """16 kHz float32 audio the stand-in transcribes as ``sentence`` (padded with
        silence to ``seconds``, e.g. one analysis window)."""
        return speak([self.chords[t] for t in self.tokens[sentence]], seconds, amplitude)


def chord(freqs: tuple[int, int], seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) * (amplitude / len(freqs))
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks, no splatter
    return (x * ramp).astype(np.float32)


def speak(chords: list[tuple[int, int]], seconds: float | None = None, amplitude: float = 0.3) -> np.ndarray:
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    parts = [gap]
    for c in chords:
        parts += [chord(c, TONE_S, amplitude), gap]
    x = np.concatenate(parts)
    if seconds is not None:
        if len(x) > int(seconds * RATE):
            raise ValueError(f"{len(chords)} tokens take {len(x) / RATE:.2f}s, more than {seconds}s")
        x = np.concatenate([x, np.zeros(int(seconds * RATE) - len(x), np.float32)])
    return x


def build_standin(path: str | Path, sentences: list[str], language: str = "zh", emotion: str = "NEUTRAL",
                  event: str = "Speech", use_itn: bool = True) -> StandIn:
    """A SenseVoiceSmall directory at ``path`` that transcribes ``StandIn.audio(s)`` as ``s``
    for each of ``sentences``, tagged ``<|language|><|EMOTION|><|event|>``; checked here
    through ``funasr.AutoModel.generate`` before it is returned."""
    import sentencepiece as spm
    import torch
    from funasr.models.sense_voice.model import SenseVoiceSmall

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        bpe = train_tokenizer(Path(tmp) / "sp.model", sentences)
        sp = spm.SentencePieceProcessor(model_file=str(bpe))
        space = sp.piece_to_id("▁")
        tokens = {s: [t for t in sp.encode(s) if t != space] for s in sentences}
        used = sorted({t for ids in tokens.values() for t in ids})
        pairs = list(itertools.product(LOW, HIGH))
        if len(used) > len(pairs):
            raise ValueError(f"{len(used)} distinct tokens; the stand-in has chords for {len(pairs)}")
        chords = dict(zip(used, pairs))

        cfg = sensevoice_config(GEOMETRY)
        torch.manual_seed(0)
        model = SenseVoiceSmall(encoder=cfg["encoder"], encoder_conf=cfg["encoder_conf"], input_size=560,
                                vocab_size=sp.get_piece_size(), **cfg["model_conf"]).eval()  # no dropout
        _pass_through(model)
        _embed_queries(model)

        from funasr.frontends.wav_frontend import WavFrontend
        frontend = WavFrontend(**dict(cfg["frontend_conf"], cmvn_file=None))
        rows: dict[int, torch.Tensor] = {}
        for t, c in chords.items():
            rows[t] = _centroid(model, frontend, chord(c, 0.6))
        lang_row = _query_row(model, [model.lid_dict[language], model.lid_dict["auto"]])
        rows[LANGUAGE_TAGS[f"<|{language}|>"]] = lang_row
        rows[EMOTION_TAGS[f"<|{emotion}|>"]] = _query_row(model, [1])
        rows[EVENT_TAGS[f"<|{event}|>"]] = _query_row(model, [2])
        rows[ITN_TAGS["<|withitn|>"]] = _query_row(model, [model.textnorm_dict["withitn"]])
        rows[ITN_TAGS["<|woitn|>"]] = _query_row(model, [model.textnorm_dict["woitn"]])
        with torch.no_grad():
            lo = model.ctc.ctc_lo
            lo.weight.zero_()
            lo.bias.fill_(-1e4)  # tokens no chord stands for never win
            norm = GEOMETRY["output_size"] ** 0.5  # a layer norm's output has that length
            for t, row in rows.items():
                lo.weight[t] = SHARPNESS * row / norm
                lo.bias[t] = 0.0
            # The blank wins wherever nothing looks like a chord or a query well enough: a
            # chord's frames have a cosine of 0.85-0.96 with their own centroid, silence and
            # the edges of chords at most 0.35 with any; at 0.6 a chord's edge smeared by
            # MP3 at 64 kb/s came through as a token.
            lo.bias[0] = SHARPNESS * BLANK_BELOW
        build_sensevoice_dir(path, geometry=GEOMETRY, model=model, tokenizer=bpe)
    standin = StandIn(path, chords, tokens)
    _check(standin, sentences, language, emotion, event, use_itn)
    return standin


def _pass_through(model) -> None:
    """Every layer hands its input on; the first one copies the centre frame's mel bins."""
    import torch

    enc = model.encoder
    d = GEOMETRY["output_size"]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]:
            norm.weight.fill_(1.0)
        first = enc.encoders0[0].self_attn
        v = first.linear_q_k_v.weight[2 * d:]  # (d, 560): the value projection
        for j in range(80):
            v[j, 3 * 80 + j] = 1.0  # the centre (4th) of the 7 stacked frames
        for q in range(QUERY_DIMS):
            v[80 + q, q] = 1.0


def _embed_queries(model) -> None:
    """The query embeddings: one input dimension each, loud enough that the position
    encoding added to them does not matter. The language queries share one dimension
    per language; "auto" is the stand-in's language."""
    import torch

    with torch.no_grad():
        emb = model.embed.weight
        emb.zero_()
        dims = {"event": 1, "emotion": 2, "withitn": 14, "woitn": 15}
        for name, dim in dims.items():
            idx = {"event": 1, "emotion": 2}.get(name, model.textnorm_dict.get(name))
            emb[idx, dim] = 50.0
        for lang, idx in model.lid_dict.items():
            emb[idx, 3 + list(model.lid_dict).index(lang)] = 50.0


def _encode(model, feats):
    import torch

    with torch.no_grad():
        out, _ = model.encoder(feats, torch.tensor([feats.shape[1]]))
    return out[0]


def _centroid(model, frontend, audio: np.ndarray):
    import torch

    feats, _ = frontend(torch.from_numpy(audio)[None], torch.tensor([len(audio)]))
    y = _encode(model, feats)
    y = y[2:-2] if len(y) > 6 else y  # the frames in the middle: not the fades
    c = y.mean(0)
    return c / c.norm()


def _query_row(model, ids: list[int]):
    import torch

    y = _encode(model, model.embed(torch.tensor([ids])))
    c = y.mean(0)
    return c / c.norm()


def _check(standin: StandIn, sentences: list[str], language: str, emotion: str, event: str, use_itn: bool) -> None:
    from funasr import AutoModel

    model = AutoModel(model=str(standin.path), device="cpu", disable_update=True, disable_pbar=True,
                      log_level="ERROR")
    model.kwargs["frontend"].dither = 0.0
    got = model.generate(input=[standin.audio(s) for s in sentences], batch_size=len(sentences),
                         language="auto", use_itn=use_itn)
    itn = "<|withitn|>" if use_itn else "<|woitn|>"
    for s, r in zip(sentences, got):
        want = f"<|{language}|><|{emotion}|><|{event}|>{itn}{s.replace(' ', '')}"
        if r["text"].replace(" ", "") != want:
            raise AssertionError(f"stand-in heard {r['text']!r} for {s!r} (wanted {want!r})")


def write_call(path: str | Path, standin: StandIn, channels: list[list[str | None]], window_s: float = 3.0,
               codec: list[str] | None = None) -> Path:
    """A recording whose channel c says ``channels[c][i]`` in its i-th ``window_s`` window
    (None: silence there). ``codec``: ffmpeg output options to re-encode it as call centers
    record (e.g. ["-ar", "8000", "-c:a", "pcm_mulaw"]); the file keeps ``path``'s suffix."""
    import subprocess
    import wave

    from imageio_ffmpeg import get_ffmpeg_exe

    n = max(len(c) for c in channels)
    tracks = []
    for lines in channels:
        parts = [standin.audio(s, window_s) if s else np.zeros(int(window_s * RATE), np.float32) for s in lines]
        parts += [np.zeros(int(window_s * RATE), np.float32)] * (n - len(lines))
        tracks.append(np.concatenate(parts))
    pcm = (np.stack(tracks, axis=1) * 32767).astype("<i2")
    path = Path(path)
    raw = path.with_name(path.stem + ".pcm16.wav") if codec else path
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    if codec:
        subprocess.run([get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(raw), *codec, str(path)],
                       check=True)
        raw.unlink()
    return path
