"""Build an emotion2vec model directory with random weights.

The build and test machines reach no model hub, so tests and benchmarks make
their own model directory with FunASR's own ``Emotion2vec`` class and load it
through ``funasr.AutoModel`` exactly as production loads
``iic/emotion2vec_plus_large``. Random weights give meaningless labels but the
same code path, tensor shapes and compute.

``callmood make-random-model`` (``make_trial_model_dir``) also writes MARKER into the
directory, so whoever loads it is told it is a trial model (plugin/core/trial.py). The
marker is a plain file, not a dot file, an extended attribute or a name, so ``cp -r``,
``cp dir/*``, rsync, zip, scp and ``docker COPY`` all keep it; its name is one no hub puts in
a model directory (ModelScope's and Hugging Face's emotion2vec+ directories hold config.yaml,
model.pt, tokens.txt, configuration.json, README.md, example/ and dot files), and it
records the hash of the model.pt it was written with, so real weights copied over the
random ones later are not called a trial. Tests and benchmarks build unmarked directories
(``build_random_model_dir``) as stand-ins for a downloaded model.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

MARKER = "CALLMOOD_RANDOM_WEIGHTS.txt"
_HASH_LINE = "model.pt sha256: "

# FunASR's label tokens for the emotion2vec+ models, in model output order.
LABEL_TOKENS = [
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
]

_CONV_FRONT_END = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"

# embed_dim, depth, heads, prenet depth, conv front end
GEOMETRIES = {
    # A few hundred thousand parameters: fast enough for every test.
    "tiny": dict(embed_dim=64, depth=2, num_heads=4, prenet_depth=1,
                 feature_encoder_spec="[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64,2,2)] + [(64,2,2)]",
                 conv_pos_depth=2, conv_pos_width=31, conv_pos_groups=4),
    # emotion2vec_plus_base: ~90 M parameters.
    "base": dict(embed_dim=768, depth=8, num_heads=12, prenet_depth=4,
                 feature_encoder_spec=_CONV_FRONT_END,
                 conv_pos_depth=5, conv_pos_width=95, conv_pos_groups=16),
    # emotion2vec_plus_large: ~300 M parameters.
    "large": dict(embed_dim=1024, depth=24, num_heads=16, prenet_depth=4,
                  feature_encoder_spec=_CONV_FRONT_END,
                  conv_pos_depth=5, conv_pos_width=95, conv_pos_groups=16),
}


def model_config(geometry: str = "tiny") -> dict:
    """The config.yaml contents FunASR reads for an emotion2vec+ model."""
    g = copy.deepcopy(GEOMETRIES[geometry])
    audio = {
        "type": "AUDIO",
        "prenet_depth": g["prenet_depth"],
        "prenet_layerdrop": 0.0,
        "prenet_dropout": 0.0,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_extra_tokens": 10,
        "init_extra_token_zero": True,
        "mask_noise_std": 0.01,
        "mask_prob_min": None,
        "inverse_mask": False,
        "mask_prob": 0.5,
        "mask_prob_adjust": 0.05,
        "keep_masked_pct": 0.0,
        "mask_length": 5,
        "add_masks": False,
        "remove_masks": False,
        "mask_dropout": 0.0,
        "encoder_zero_mask": True,
        "mask_channel_prob": 0.0,
        "mask_channel_length": 64,
        "ema_local_encoder": False,
        "local_grad_mult": 1.0,
        "use_alibi_encoder": True,
        "alibi_scale": 1.0,
        "learned_alibi": False,
        "alibi_max_pos": None,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "learned_alibi_scale_per_layer": False,
        "num_alibi_heads": g["num_heads"],
        "model_depth": g["depth"],
        "decoder": None,
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": g["feature_encoder_spec"],
        "conv_pos_width": g["conv_pos_width"],
        "conv_pos_groups": g["conv_pos_groups"],
        "conv_pos_depth": g["conv_pos_depth"],
        "conv_pos_pre_ln": False,
    }
    return {
        "model": "Emotion2vec",
        "model_conf": {
            "loss_beta": 0.0,
            "loss_scale": None,
            "depth": g["depth"],
            "start_drop_path_rate": 0.0,
            "end_drop_path_rate": 0.0,
            "num_heads": g["num_heads"],
            "norm_eps": 1e-05,
            "norm_affine": True,
            "encoder_dropout": 0.0,
            "post_mlp_drop": 0.0,
            "attention_dropout": 0.0,
            "activation_dropout": 0.0,
            "dropout_input": 0.0,
            "layerdrop": 0.0,
            "embed_dim": g["embed_dim"],
            "mlp_ratio": 4.0,
            "layer_norm_first": False,
            "average_top_k_layers": g["depth"],
            "end_of_block_targets": False,
            "clone_batch": 1,
            "normalize": True,
            "modalities": {"audio": audio},
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }


def build_random_model_dir(dest: str | Path, geometry: str = "tiny", seed: int = 0) -> Path:
    """Write config.yaml, tokens.txt and model.pt (random weights) into ``dest``."""
    import torch
    from funasr.models.emotion2vec.model import Emotion2vec

    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; choose one of {sorted(GEOMETRIES)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config = model_config(geometry)
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(LABEL_TOKENS))
    torch.save(model.state_dict(), dest / "model.pt")
    (dest / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (dest / "tokens.txt").write_text("\n".join(LABEL_TOKENS) + "\n", encoding="utf-8")
    return dest


def make_trial_model_dir(dest: str | Path, geometry: str = "tiny", seed: int = 0) -> Path:
    """``build_random_model_dir`` marked as a trial model: what `callmood make-random-model` writes."""
    dest = build_random_model_dir(dest, geometry, seed)
    (dest / MARKER).write_text(
        "This emotion2vec directory was written by `callmood make-random-model`: its weights\n"
        "are RANDOM and every emotion it gives is meaningless. While it is loaded CallMood says\n"
        '"trial model, random weights" in /health, on every page, in `callmood analyze` and in\n'
        "every CRM and WeCom message. Remove this file only together with model.pt.\n\n"
        f"{_HASH_LINE}{_sha256(dest / 'model.pt')}\ngeometry: {geometry}\nseed: {seed}\n",
        encoding="utf-8")
    return dest


def is_trial_model_dir(path: str | Path) -> bool:
    """Whether ``path`` holds the random weights `callmood make-random-model` wrote there."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return False
    try:
        text = marker.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:  # unreadable: it is there, so it says what it says
        log.warning("%s: cannot read (%s); taking it as a trial model", marker, exc.strerror)
        return True
    wrote = next((ln[len(_HASH_LINE):].strip() for ln in text.splitlines() if ln.startswith(_HASH_LINE)), "")
    try:
        now = _sha256(Path(path) / "model.pt")
    except OSError:
        return True  # the loader says what is wrong with model.pt
    if wrote and wrote != now:
        log.warning("%s names another model.pt (sha256 %s, now %s): other weights were copied over "
                    "the random ones; not a trial model. Remove the marker.", marker, wrote[:12], now[:12])
        return False
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
