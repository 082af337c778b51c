"""Build a SenseVoiceSmall model directory with random weights.

The build and test machines reach no model hub, so tests and benchmarks make their own
SenseVoice directory, laid out like ModelScope's ``iic/SenseVoiceSmall`` (config.yaml,
configuration.json, model.pt, the SentencePiece model, am.mvn), with FunASR's own
``SenseVoiceSmall`` class, and load it through ``funasr.AutoModel`` exactly as production
loads the real one.

The tokenizer is a SentencePiece model trained here, on a few sentences, then laid out
with the vocabulary size of the real one (25,055) and its special tokens at the ids
SenseVoice's code uses: the language tags (<|zh|> 24884 ...), the emotion tags
(<|HAPPY|> 25001 ... <|EMO_UNKNOWN|> 25009, which ``ban_emo_unk`` bans by id) and the
text-normalisation tags (<|withitn|> 25016, <|woitn|> 25017). The event tags' ids are not
used by any code and are placed in the free ids between (the real ones may differ).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

VOCAB_SIZE = 25055
BPE_FILE = "chn_jpn_yue_eng_ko_spectok.bpe.model"

LANGUAGE_TAGS = {"<|zh|>": 24884, "<|en|>": 24885, "<|yue|>": 24888, "<|ja|>": 24892, "<|ko|>": 24896,
                 "<|nospeech|>": 24992}
EVENT_TAGS = {"<|Speech|>": 24993, "<|BGM|>": 24994, "<|Applause|>": 24995, "<|Laughter|>": 24996,
              "<|Cry|>": 24997, "<|Sneeze|>": 24998, "<|Breath|>": 24999, "<|Cough|>": 25000,
              "<|Event_UNK|>": 25010}
EMOTION_TAGS = {"<|HAPPY|>": 25001, "<|SAD|>": 25002, "<|ANGRY|>": 25003, "<|NEUTRAL|>": 25004,
                "<|FEARFUL|>": 25005, "<|DISGUSTED|>": 25006, "<|SURPRISED|>": 25007, "<|EMO_UNKNOWN|>": 25009}
ITN_TAGS = {"<|withitn|>": 25016, "<|woitn|>": 25017}
SPECIAL_TAGS = {**LANGUAGE_TAGS, **EVENT_TAGS, **EMOTION_TAGS, **ITN_TAGS}

# Text the tokenizer is trained on, besides what a caller adds: words a call center hears.
CORPUS = [
    "您好，请问有什么可以帮您？", "我要投诉，你们的服务太差了。", "我要退款，不然我打12315。",
    "我已经找了律师，我要曝光给媒体。", "我会向消协和监管部门反映。", "好的，我帮您查一下。",
    "请您稍等，我马上为您处理。", "谢谢您的耐心，祝您生活愉快。", "这个问题已经三天了还没有解决。",
    "hello, how can I help you today?", "I want a refund, or I will call my lawyer.",
    "thank you for calling, have a nice day.", "0123456789",
]

# encoder geometry: output size, heads, feed-forward units, blocks, tp blocks
GEOMETRIES = {
    # ~2 M parameters, most of them the 25,055-way output layer: fast enough for every test.
    "tiny": dict(output_size=64, attention_heads=4, linear_units=128, num_blocks=2, tp_blocks=1),
    # SenseVoiceSmall: ~234 M parameters.
    "small": dict(output_size=512, attention_heads=4, linear_units=2048, num_blocks=50, tp_blocks=20),
}

FRONTEND = dict(fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10, lfr_m=7, lfr_n=6,
                # No dither: the same audio gives the same words (the real config leaves FunASR's
                # default, 1.0; plugin/model/asr.py sets it to 0 on whatever it loads).
                dither=0.0)


def sensevoice_config(geometry: str | dict = "tiny") -> dict:
    """config.yaml of a SenseVoiceSmall model of ``geometry`` (a name in GEOMETRIES, or its
    encoder sizes as a dict), with the real one's keys."""
    sizes = GEOMETRIES[geometry] if isinstance(geometry, str) else geometry
    encoder = dict(sizes, dropout_rate=0.1, positional_dropout_rate=0.1,
                   attention_dropout_rate=0.1, input_layer="pe", pos_enc_class="SinusoidalPositionEncoder",
                   normalize_before=True, kernel_size=11, sanm_shfit=0, selfattention_layer_type="sanm")
    return {
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": encoder,
        "input_size": 560,
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": dict(FRONTEND, cmvn_file=None),
    }


def train_tokenizer(path: Path, sentences: list[str] | tuple[str, ...] = ()) -> Path:
    """A SentencePiece model at ``path``: one piece per character of the corpus and of
    ``sentences``, the special tags at SenseVoice's ids, VOCAB_SIZE pieces in all."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    text = list(CORPUS) + list(sentences)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(text) + "\n", encoding="utf-8")
        chars = {c for line in text for c in line if not c.isspace()}
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "sp"), model_type="char",
            vocab_size=len(chars) + 4 + len(SPECIAL_TAGS), character_coverage=1.0,
            user_defined_symbols=list(SPECIAL_TAGS), unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            normalization_rule_name="identity",  # keep "，" full-width, as SenseVoice writes it
            minloglevel=2)
        proto = pb.ModelProto()
        proto.ParseFromString((Path(tmp) / "sp.model").read_bytes())
    control = list(proto.pieces[:3])  # <unk>, <s>, </s>: ids 0 (CTC's blank), 1, 2 as SenseVoice has them
    special = {p.piece: p for p in proto.pieces if p.piece in SPECIAL_TAGS}
    normal = [p for p in proto.pieces[3:] if p.piece not in SPECIAL_TAGS]
    slots: list = [None] * VOCAB_SIZE
    slots[:3] = control
    for i, piece in enumerate(normal, start=3):
        slots[i] = piece
    for name, i in SPECIAL_TAGS.items():
        slots[i] = special[name]
    del proto.pieces[:]
    for i, piece in enumerate(slots):
        if piece is None:  # an id no text encodes to, so the vocabulary has the real size
            piece = pb.ModelProto.SentencePiece(piece=f"<unused{i}>", score=0.0,
                                                type=pb.ModelProto.SentencePiece.UNUSED)
        proto.pieces.append(piece)
    path.write_bytes(proto.SerializeToString())
    return path


def write_cmvn(path: Path, shift: float = 0.0, scale: float = 1.0, dim: int = 560) -> Path:
    """am.mvn in the Kaldi nnet text form FunASR reads (<AddShift>, then <Rescale>)."""
    shifts = " ".join([f"{shift:g}"] * dim)
    scales = " ".join([f"{scale:g}"] * dim)
    path.write_text(f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {shifts} ]\n"
                    f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {scales} ]\n</Nnet>\n")
    return path


def build_sensevoice_dir(path: str | Path, geometry: str | dict = "tiny", seed: int = 0,
                         sentences: list[str] | tuple[str, ...] = (), model=None,
                         tokenizer: Path | None = None) -> Path:
    """Write a SenseVoiceSmall directory at ``path`` (random weights of ``geometry``, or the
    weights of ``model``, a built ``SenseVoiceSmall`` of that geometry, with ``tokenizer``,
    a SentencePiece model train_tokenizer made); returns the path."""
    import torch
    from funasr.models.sense_voice.model import SenseVoiceSmall

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = sensevoice_config(geometry)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    (path / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml",
                            "tokenizer_conf": {"bpemodel": BPE_FILE}, "frontend_conf": {"cmvn_file": "am.mvn"}},
    }, indent=2))
    if tokenizer is not None:
        (path / BPE_FILE).write_bytes(Path(tokenizer).read_bytes())
    else:
        train_tokenizer(path / BPE_FILE, sentences)
    write_cmvn(path / "am.mvn")
    if model is None:
        torch.manual_seed(seed)
        model = SenseVoiceSmall(encoder=cfg["encoder"], encoder_conf=cfg["encoder_conf"],
                                input_size=cfg["input_size"], vocab_size=VOCAB_SIZE, **cfg["model_conf"])
    torch.save({"state_dict": model.state_dict()}, path / "model.pt")
    return path
