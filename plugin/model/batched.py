"""emotion2vec's forward pass for many windows at once.

FunASR's `AutoModel.generate` runs emotion2vec one waveform at a time: batch 1, fp32,
a Python loop around every window. Here a batch of equal-length windows goes through
the same FunASR module in one call, so the scores are FunASR's own (the test in
tests/test_batched.py holds them to it), just computed together:

- windows of one length batch without padding, so no padding mask is needed and
  nothing at the edges changes (the caller buckets windows by length);
- on CUDA, bf16 (or fp16) autocast; the model's own fp32 layer norms stay fp32;
- on CPU, the convolutional front end (half the CPU time at batch 1) runs as GEMMs
  over time-major frames instead of Conv1d + transposes: same arithmetic, fewer copies;
  one window at a time (``GemmFrontEnd.CHUNK``), which kept its activations in cache;
- `auto` picks by device and CPU features (``auto_precision``): bf16 on CUDA; on a CPU,
  bf16 with AMX, int8 with AVX2, fp32 otherwise;
- `int8` (CPU only): dynamic int8 quantization with per-channel weight scales of every
  Linear but the first front-end layer (it sees the raw waveform). Faster, and slightly different scores: the label
  agreement with fp32 is measured by bench/inference.py and stated in docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from plugin.core.data import EMOTIONS, normalize_label

PRECISIONS = ("fp32", "int8", "bf16", "fp16")


def choose_precision(precision: str, device: str, cpu_flags: set[str] | None = None) -> str:
    """'auto' as ``auto_precision`` says; refuses combinations that cannot run."""
    if precision == "auto":
        return auto_precision(device, cpu_flags)[0]
    if precision == "int8" and device != "cpu":
        raise ValueError("model.precision 'int8' runs on the CPU only; use bf16 or fp16 on CUDA")
    if precision == "fp16" and device != "cuda":
        raise ValueError("model.precision 'fp16' needs CUDA; use fp32 or int8 on the CPU")
    return precision


def auto_precision(device: str, cpu_flags: set[str] | None = None) -> tuple[str, str]:
    """What ``model.precision: auto`` runs on ``device``, and why, in words for the log and /health.

    Measured (docs/benchmarks.md, 2-core AMD EPYC with AVX2, AVX512-BF16 and AVX512-VNNI,
    base geometry, medians of 5 interleaved rounds): int8 about 3x stock FunASR, bf16 2.3x,
    fp32 1.3x, every label the same as fp32's. So int8 wherever its kernels run (AVX2), bf16
    too included. The exception is a CPU with AMX, whose tiles multiply bf16 matrices many
    times faster than AVX-512 does: bf16 there, by the issue's rule (its scores also stay
    closer to fp32's); not measured here, no such CPU was at hand.
    """
    if device == "cuda":
        return "bf16", "auto: bf16 autocast on CUDA"
    flags = cpu_features() if cpu_flags is None else cpu_flags
    if "amx_bf16" in flags:
        return "bf16", "auto: bf16 on a CPU with AMX (amx_bf16)"
    if "avx2" in flags and {"x86", "fbgemm"} & set(torch.backends.quantized.supported_engines):
        return "int8", "auto: int8 on a CPU with AVX2 and no AMX (the fastest measured, same labels as fp32)"
    return "fp32", "auto: fp32 (no AVX2, or a torch without x86 int8 kernels)"


def cpu_features() -> set[str]:
    """The CPU's flags as Linux reports them (/proc/cpuinfo); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


class GemmFrontEnd(nn.Module):
    """FunASR's ConvFeatureExtractionModel (extractor_mode 'layer_norm'), time-major.

    Each Conv1d(k, stride s) is a Linear over k consecutive frames: on a (B, T, C)
    tensor those frames are one strided view, so a conv is one GEMM and the layer
    norm needs no transposes. Returns (B, C, T) like the module it replaces.
    """

    def __init__(self, conv_fe: nn.Module):
        super().__init__()
        self.specs: list[tuple[int, int, int]] = []
        linears, norms = [], []
        for block in conv_fe.conv_layers:
            conv, norm = block[0], block[2][1]
            if not isinstance(conv, nn.Conv1d) or conv.bias is not None or not hasattr(norm, "normalized_shape"):
                raise TypeError("unexpected emotion2vec front end (extractor_mode must be 'layer_norm')")
            c_out, c_in, k = conv.weight.shape
            lin = nn.Linear(k * c_in, c_out, bias=False)
            # Conv weight (out, in, k) -> Linear weight over frames laid out as (k, in).
            lin.weight = nn.Parameter(conv.weight.detach().permute(0, 2, 1).reshape(c_out, k * c_in).clone(),
                                      requires_grad=False)
            self.specs.append((k, conv.stride[0], c_in))
            linears.append(lin)
            norms.append(norm)
        self.linears = nn.ModuleList(linears)
        self.norms = nn.ModuleList(norms)

    # Windows per pass: the first layer's output is 512 values per 5 samples, 20 MB for one
    # 3 s window in fp32 (and a few such tensors are alive at once), so a batch of 16 in one
    # pass held more memory than the whole stock model step, and ran slower, out of cache.
    # One window at a time (still GEMMs of thousands of rows) was the fastest of 1, 2, 4, 8
    # and 16 at base geometry on a 2-core EPYC: int8 3.8 s for 32 windows against 4.8 s at 4
    # and 4.9 s at 16 (fp32 10.8 s against 11.6 s and 11.5 s), medians of 4 rounds.
    CHUNK = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.CHUNK:
            return torch.cat([self._forward(part) for part in x.split(self.CHUNK)], dim=0)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)  # (B, L, 1)
        for (k, stride, c), lin, norm in zip(self.specs, self.linears, self.norms):
            x = x.contiguous()
            b, t, _ = x.shape
            frames = x.as_strided((b, (t - k) // stride + 1, k * c), (t * c, stride * c, 1))
            x = lin(frames)
            x = F.layer_norm(x.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps).type_as(x)
            x = F.gelu(x)
        return x.transpose(1, 2)


class BatchedEmotion2vec:
    """Scores for a (B, L) batch of equal-length 16 kHz windows, in EMOTIONS order.

    Prepares FunASR's loaded model in place (front end, quantization), so build it
    once per loaded model and keep it.
    """

    def __init__(self, model: nn.Module, labels: list[str], device: str, precision: str = "auto",
                 gemm_front_end: bool | None = None):
        self.device = device
        if precision == "auto":
            self.precision, self.precision_reason = auto_precision(device)
        else:
            self.precision, self.precision_reason = choose_precision(precision, device), "model.precision"
        model.eval()
        encoder = model.modality_encoders["AUDIO"]
        # cuDNN's convolutions are fast already; the GEMM front end pays off on the CPU.
        if gemm_front_end is None:
            gemm_front_end = device == "cpu"
        if gemm_front_end and not isinstance(encoder.local_encoder, GemmFrontEnd):
            encoder.local_encoder = GemmFrontEnd(encoder.local_encoder)
        if self.precision == "int8":
            # The first front-end layer sees the raw waveform: int8 with one scale per
            # batch loses quiet speech under loud peaks (scores off by ~0.1 on speech).
            # It is a tiny GEMM (K=10), so it stays fp32.
            first = encoder.local_encoder.linears[0] if isinstance(encoder.local_encoder, GemmFrontEnd) else None
            with warnings.catch_warnings():  # torch 2.13 flags its quantized tensors as deprecated
                warnings.simplefilter("ignore", UserWarning)
                torch.ao.quantization.quantize_dynamic(
                    model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, inplace=True)
            if first is not None:
                encoder.local_encoder.linears[0] = first
        self.model = model
        self.normalize = bool(model.cfg.get("normalize", False))
        # FunASR drops the "unuse" tokens; softmax over the rest equals its -inf masking.
        keep = [i for i, token in enumerate(labels) if not token.startswith("unuse")]
        self.keep = torch.tensor(keep, device=device)
        order = {normalize_label(labels[i]): j for j, i in enumerate(keep)}
        missing = [e for e in EMOTIONS if e not in order]
        if missing:
            raise ValueError(f"model labels lack {missing}: not an emotion2vec+ model?")
        self.order = np.array([order[e] for e in EMOTIONS])

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        if self.normalize:  # FunASR: layer_norm over each whole waveform
            x = F.layer_norm(x, x.shape[-1:])
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast(device_type=self.device, dtype=dtype):
                logits = self._logits(x)
        else:
            logits = self._logits(x)
        probs = torch.softmax(logits.float().index_select(1, self.keep), dim=-1)
        return probs.cpu().numpy()[:, self.order]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.extract_features(x, padding_mask=None)["x"]
        return self.model.proj(feats.mean(dim=1))
