"""SeACo-Paraformer (paraformer-zh) through FunASR on random weights: the directory
plugin/model/paraformer_dir.py builds loads as the published one does, takes hotwords,
and gives each window the same words in any batch, on every run."""

from __future__ import annotations

import re

import numpy as np
import pytest

from plugin.model.paraformer_dir import (BLANK, EOS, GEOMETRIES, NO_BIAS, SOS, UNK, VOCAB_SIZE,
                                         build_paraformer_dir, paraformer_config)

RATE = 16000
HOTWORDS = "投诉 退款"


def load(path):
    from funasr import AutoModel

    return AutoModel(model=str(path), device="cpu", disable_update=True, disable_pbar=True, log_level="ERROR",
                     check_latest=False)


@pytest.fixture(scope="module")
def paraformer_dir(tmp_path_factory):
    return build_paraformer_dir(tmp_path_factory.mktemp("paraformer-tiny"), "tiny")


@pytest.fixture(scope="module")
def paraformer(paraformer_dir):
    return load(paraformer_dir)


def windows() -> list[np.ndarray]:
    """3 s windows: noise at three levels, a tone, a tone in noise."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    noise = [rng.standard_normal(3 * RATE) * level for level in (0.01, 0.1, 0.5)]
    return [w.astype(np.float32) for w in (*noise, tone, tone + noise[1])]


def texts(model, batch, **kwargs) -> list[str]:
    results = model.generate(input=list(batch), batch_size=len(batch), disable_pbar=True, **kwargs)
    assert len(results) == len(batch)
    assert all(isinstance(r["text"], str) for r in results)
    return [r["text"] for r in results]


def test_the_random_dir_loads_as_seaco_paraformer_with_vocab8404s_special_ids(paraformer):
    model, tokenizer = paraformer.model, paraformer.kwargs["tokenizer"]
    assert type(model).__name__ == "SeacoParaformer"
    assert not model.training
    assert paraformer.kwargs["frontend"].dither == 0.0
    assert (paraformer.kwargs["frontend"].lfr_m, paraformer.kwargs["frontend"].lfr_n) == (7, 6)
    assert len(tokenizer.token_list) == VOCAB_SIZE == model.vocab_size
    assert tokenizer.token_list[:3] == [BLANK, SOS, EOS] and tokenizer.token_list[-1] == UNK
    assert (model.blank_id, model.sos, model.eos, model.NO_BIAS) == (0, 1, 2, NO_BIAS)
    assert tokenizer.seg_dict is not None  # found through configuration.json's file_path_metas


def test_hotwords_are_split_into_characters_through_seg_dict(paraformer):
    paraformer.generate(input=windows()[:1], batch_size=1, hotword=HOTWORDS, disable_pbar=True)
    ids = paraformer.kwargs["tokenizer"].tokens2ids
    # one id list per word, then <s> alone; without seg_dict each word would be a single <unk>
    assert paraformer.model.hotword_list == [ids(list("投诉")), ids(list("退款")), [1]]


@pytest.mark.parametrize("hotword", [None, "", HOTWORDS], ids=["none", "empty", "hotwords"])
def test_each_window_gets_the_same_text_alone_in_a_batch_and_on_every_run(paraformer, hotword):
    kwargs = {} if hotword is None else {"hotword": hotword}
    batch = windows()
    together = texts(paraformer, batch, **kwargs)
    assert texts(paraformer, batch, **kwargs) == together  # no dither, eval mode: deterministic
    assert [texts(paraformer, [w], **kwargs)[0] for w in batch] == together  # equal lengths: no padding


def test_the_text_is_single_characters_of_the_vocabulary_joined_by_spaces(paraformer):
    vocab = set(paraformer.kwargs["tokenizer"].token_list) - {BLANK, SOS, EOS, UNK}
    results = paraformer.generate(input=windows(), batch_size=5, hotword=HOTWORDS, disable_pbar=True)
    for r in results:
        chars = r["text"].split(" ") if r["text"] else []
        assert all(len(c) == 1 and c in vocab for c in chars if not c.isascii())  # English pieces join to words
        assert len(r["timestamp"]) == len(chars)  # [start_ms, end_ms] per character


def test_a_batch_where_the_predictor_finds_no_token_gives_no_results_at_all(paraformer_dir):
    """FunASR returns [] for such a batch, not one empty text per window: callers must not
    zip results with windows blindly (what silence gives the published model)."""
    import torch

    silent = load(paraformer_dir)
    with torch.no_grad():
        silent.model.predictor.cif_output.bias.fill_(-50.0)  # every frame's CIF weight ~0
    for kwargs in ({}, {"hotword": HOTWORDS}):
        assert silent.generate(input=windows()[:3], batch_size=3, disable_pbar=True, **kwargs) == []


def test_the_large_geometry_is_paraformer_zhs():
    cfg = paraformer_config("large")
    assert (cfg["encoder_conf"]["output_size"], cfg["encoder_conf"]["num_blocks"]) == (512, 50)
    assert (cfg["decoder_conf"]["num_blocks"], cfg["decoder_conf"]["att_layer_num"]) == (16, 16)
    assert cfg["seaco_decoder_conf"]["num_blocks"] == 4 and cfg["model_conf"]["inner_dim"] == 512
    assert GEOMETRIES["small"] == GEOMETRIES["large"]


# ---- through CallMood's SpeechModel (asr.name: paraformer-zh; asr.hotwords)

def test_speech_model_runs_paraformer_with_its_hotwords_and_tells_it_apart(paraformer_dir):
    from plugin.config import AsrConfig
    from plugin.model.asr import SpeechModel

    model = SpeechModel(AsrConfig(path=str(paraformer_dir), hotwords=["投诉", "退款", "12315"]), "cpu")
    assert (model.kind, model.precision) == ("SeacoParaformer", "fp32")  # auto: fp32 for Paraformer
    assert "SeacoParaformer, fp32, 3 hotwords" in model.describe()
    batch = windows()
    heard = model.transcribe(batch)
    assert len(heard) == len(batch)
    for h in heard:
        assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", h.text)  # "我要", not "我 要"
        assert h.tag_emotion is None and h.events == () and h.language in ("zh", None)
    assert model.transcribe(batch) == heard
    assert [model.transcribe([w])[0] for w in batch] == heard


def test_a_batch_with_no_words_at_all_gives_empty_words_for_each_window(paraformer_dir, monkeypatch):
    from plugin.config import AsrConfig
    from plugin.model.asr import SpeechModel

    model = SpeechModel(AsrConfig(path=str(paraformer_dir)), "cpu")
    monkeypatch.setattr(model.automodel, "generate", lambda **kw: [])  # what FunASR answers then
    assert [h.text for h in model.transcribe(windows()[:3])] == ["", "", ""]


def test_hotwords_that_funasr_would_read_as_a_url_or_a_file_are_refused():
    from pydantic import ValidationError

    from plugin.config import AsrConfig

    for bad in (["http://evil.example/words"], ["words.txt"], ["两个 词"], [""], ["x" * 33], ["w"] * 50):
        with pytest.raises(ValidationError):
            AsrConfig(hotwords=bad)
    assert AsrConfig(hotwords=["投诉", "12315"]).hotwords == ["投诉", "12315"]
