"""Build a SeACo-Paraformer (FunASR's ``paraformer-zh``) model directory with random weights.

The build and test machines reach no model hub, so tests and benchmarks make their own
directory, laid out like ModelScope's
``iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch``
(config.yaml, configuration.json, model.pt, tokens.json, seg_dict, am.mvn), with FunASR's
own ``SeacoParaformer`` class, and loaded through ``funasr.AutoModel`` as the real one is.

The vocabulary has the real one's size (8,404) and its special ids: <blank> 0 (the id
Paraformer drops as blank), <s> 1 and </s> 2 (sos/eos; <s> also closes every hotword
list), <unk> last (8403). Between them, Chinese characters and a few English BPE pieces
("@@" marks a piece that goes on), as the real one has them; which character has which id
is ours (the real order is not known here). ``seg_dict`` maps each character to itself
and each English word to its pieces: SeacoParaformer tokenizes hotwords through it, and
without it a Chinese hotword such as 投诉 becomes a single <unk>.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from plugin.model.sensevoice_dir import CORPUS, write_cmvn

VOCAB_SIZE = 8404
BLANK, SOS, EOS = "<blank>", "<s>", "</s>"
UNK = "<unk>"
# The id SeacoParaformer's hotword decoder uses for "no hotword here" (the real config's).
NO_BIAS = 8377

# English words the vocabulary spells in BPE pieces, as vocab8404 has some.
ENGLISH = {"hello": ["he@@", "llo"], "refund": ["re@@", "fund"], "ok": ["ok"], "vip": ["v@@", "ip"],
           "app": ["app"]}

# Sizes: encoder width (also the predictor's and the hotword encoder's), heads, feed-forward
# units and blocks of the encoder, the decoder and the hotword (seaco) decoder.
GEOMETRIES = {
    # ~2 M parameters, most of them the three 8,404-wide layers: fast enough for every test.
    "tiny": dict(size=64, heads=4, encoder_units=128, encoder_blocks=2, decoder_units=128, decoder_blocks=2,
                 seaco_units=64, seaco_blocks=1),
    # paraformer-zh as published (~220 M parameters): for benchmarks.
    "large": dict(size=512, heads=4, encoder_units=2048, encoder_blocks=50, decoder_units=2048, decoder_blocks=16,
                  seaco_units=1024, seaco_blocks=4),
}
GEOMETRIES["small"] = GEOMETRIES["large"]  # the name SenseVoice's builder uses for its real size

FRONTEND = dict(fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10, lfr_m=7, lfr_n=6,
                dither=0.0)  # no dither: the same audio gives the same words


def paraformer_config(geometry: str | dict = "tiny") -> dict:
    """config.yaml of a SeacoParaformer of ``geometry`` (a name in GEOMETRIES or such a
    dict), with the published model's keys (training-only sections left out)."""
    g = GEOMETRIES[geometry] if isinstance(geometry, str) else geometry
    dropouts = dict(dropout_rate=0.1, positional_dropout_rate=0.1)
    decoder_dropouts = dict(dropouts, self_attention_dropout_rate=0.1, src_attention_dropout_rate=0.1)
    return {
        "model": "SeacoParaformer",
        "model_conf": {
            "ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True, "predictor_weight": 1.0,
            "predictor_bias": 1, "sampling_ratio": 0.75,
            # the hotword encoder embeds with the decoder's embedding: as wide as the encoder
            "inner_dim": g["size"], "bias_encoder_type": "lstm", "bias_encoder_bid": False,
            "seaco_lsm_weight": 0.1, "seaco_length_normal": True, "train_decoder": False, "NO_BIAS": NO_BIAS,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": dict(output_size=g["size"], attention_heads=g["heads"], linear_units=g["encoder_units"],
                             num_blocks=g["encoder_blocks"], **dropouts, attention_dropout_rate=0.1,
                             input_layer="pe", pos_enc_class="SinusoidalPositionEncoder", normalize_before=True,
                             kernel_size=11, sanm_shfit=0, selfattention_layer_type="sanm"),
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": dict(attention_heads=g["heads"], linear_units=g["decoder_units"],
                             num_blocks=g["decoder_blocks"], **decoder_dropouts, att_layer_num=g["decoder_blocks"],
                             kernel_size=11, sanm_shfit=0),
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": dict(attention_heads=g["heads"], linear_units=g["seaco_units"],
                                   num_blocks=g["seaco_blocks"], **decoder_dropouts, kernel_size=21, sanm_shfit=0,
                                   use_output_layer=False, wo_input_layer=True),
        "predictor": "CifPredictorV3",
        "predictor_conf": dict(idim=g["size"], threshold=1.0, l_order=1, r_order=1, tail_threshold=0.45,
                               smooth_factor2=0.25, noise_threshold2=0.01, upsample_times=3, use_cif1_cnn=False,
                               upsample_type="cnn_blstm"),
        "frontend": "WavFrontend",
        "frontend_conf": dict(FRONTEND, cmvn_file=None),
        "specaug": "SpecAugLFR",  # training only; kept so the model's modules match the real one
        "specaug_conf": dict(apply_time_warp=False, time_warp_window=5, time_warp_mode="bicubic",
                             apply_freq_mask=True, freq_mask_width_range=[0, 30], lfr_rate=6, num_freq_mask=1,
                             apply_time_mask=True, time_mask_width_range=[0, 12], num_time_mask=1),
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": UNK, "split_with_space": True},
        "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True},
        "normalize": None,
    }


def vocabulary(sentences: list[str] | tuple[str, ...] = ()) -> list[str]:
    """VOCAB_SIZE tokens: the special ones at Paraformer's ids, the characters of CORPUS and
    of ``sentences`` first, the English pieces, then CJK characters in code-point order."""
    tokens = [BLANK, SOS, EOS]
    seen = set(tokens) | {UNK}

    def add(token: str) -> None:
        if token not in seen and len(tokens) < VOCAB_SIZE - 1:
            seen.add(token)
            tokens.append(token)

    for line in list(CORPUS) + list(sentences):
        for ch in line:
            if "\u4e00" <= ch <= "\u9fff" or ch.isdigit():  # what Paraformer writes: no punctuation
                add(ch)
    for pieces in ENGLISH.values():
        for piece in pieces:
            add(piece)
    code = 0x4E00
    while len(tokens) < VOCAB_SIZE - 1:
        add(chr(code))
        code += 1
    return tokens + [UNK]


def write_seg_dict(path: Path, tokens: list[str]) -> Path:
    """seg_dict as the real one is: a word, then its tokens; <unk> first, each character
    alone, each English word in its pieces."""
    lines = [f"{UNK}\t{UNK}"]
    lines += [f"{t}\t{t}" for t in tokens if t not in (BLANK, SOS, EOS, UNK) and (not t.isascii() or t.isdigit())]
    lines += [f"{word}\t{' '.join(pieces)}" for word, pieces in ENGLISH.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_paraformer_dir(path: str | Path, geometry: str | dict = "tiny", seed: int = 0,
                         sentences: list[str] | tuple[str, ...] = ()) -> Path:
    """Write a SeacoParaformer directory at ``path`` (random weights of ``geometry``; the
    characters of ``sentences`` get the first ids after the specials); returns the path."""
    import torch
    from funasr.models.seaco_paraformer.model import SeacoParaformer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = paraformer_config(geometry)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (path / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
                            "frontend_conf": {"cmvn_file": "am.mvn"}},
    }, indent=2))
    tokens = vocabulary(sentences)
    (path / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    write_seg_dict(path / "seg_dict", tokens)
    write_cmvn(path / "am.mvn")  # SeacoParaformer finds seg_dict beside am.mvn: both must be here
    torch.manual_seed(seed)
    model_conf = {k: v for k, v in cfg.items() if k not in ("model", "model_conf", "frontend", "frontend_conf",
                                                            "tokenizer", "tokenizer_conf")}
    model = SeacoParaformer(**model_conf, **cfg["model_conf"], input_size=FRONTEND["n_mels"] * FRONTEND["lfr_m"],
                            vocab_size=VOCAB_SIZE)
    torch.save(model.state_dict(), path / "model.pt")  # the published model.pt is a bare state dict
    return path
