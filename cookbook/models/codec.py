"""A small speech codec of notebook 09: conv encoder, residual vector quantiser, conv decoder.

It codes Whisper's log-mel spectrogram (80 x 100 Hz), not the waveform: the encoder downsamples 4x
to 25 Hz tokens, ``n_q`` codebooks of ``codebook_size`` entries quantise each frame residually
(RVQ, Zeghidour et al. 2021, Algorithm 1), and the decoder upsamples back to 80 x 100 Hz. Audio is
made from the decoded mel by a fixed Griffin-Lim step (``cookbook.data.audio.mel_to_audio``).
The papers' codecs (SpeechTokenizer, DM-Codec: SEANet waveform encoder/decoder, 8 x 1024
codebooks at 50 Hz, adversarial losses) are far larger; notebook 09's deviation table says so.

:class:`ResidualVQ` is our own EMA residual quantiser (the EnCodec/SpeechTokenizer recipe: EMA
codebook updates with decay 0.99, codebooks initialised from the first batch, dead codes
replaced by batch vectors, straight-through gradients); it returns every layer's straight-through
output so a distillation loss can reach the first codebook. ``tests/test_codec.py`` checks its
lookup against ``vector_quantize_pytorch.ResidualVQ`` with the same codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookbook.checks import check_int, check_tensor


class ResidualVQ(nn.Module):
    """``n_q`` EMA vector quantisers applied to successive residuals.

    forward(z) with z (B, T, D) returns (quantized (B, T, D), codes (B, T, n_q) int64,
    per-layer straight-through outputs [n_q x (B, T, D)], commitment loss
    mean_k ||z_k - sg(q_k)||^2 where z_k is the k-th residual).
    """

    def __init__(self, dim: int, n_q: int = 4, codebook_size: int = 256, decay: float = 0.99,
                 eps: float = 1e-5, dead_threshold: float = 2.0):
        super().__init__()
        self.dim, self.n_q, self.codebook_size = check_int("dim", dim, 1), check_int("n_q", n_q, 1), check_int(
            "codebook_size", codebook_size, 2)
        self.decay, self.eps, self.dead_threshold = decay, eps, dead_threshold
        self.register_buffer("codebooks", torch.randn(n_q, codebook_size, dim))
        self.register_buffer("cluster_size", torch.ones(n_q, codebook_size))
        self.register_buffer("embed_sum", self.codebooks.clone())
        self.register_buffer("initialized", torch.tensor(False))

    @staticmethod
    def nearest(x: Tensor, codebook: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of x (N, D)."""
        dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None]
        return dist.argmin(dim=1)

    @torch.no_grad()
    def _init_from(self, k: int, x: Tensor, gen: torch.Generator | None = None) -> None:
        idx = torch.randint(0, x.shape[0], (self.codebook_size,), generator=gen, device=x.device)
        self.codebooks[k] = x[idx]
        self.embed_sum[k] = x[idx]
        self.cluster_size[k] = 1.0

    @torch.no_grad()
    def _ema_update(self, k: int, x: Tensor, codes: Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).type(x.dtype)  # (N, K)
        self.cluster_size[k].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum[k].mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        n = self.cluster_size[k].sum()
        size = (self.cluster_size[k] + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace smoothing
        self.codebooks[k] = self.embed_sum[k] / size[:, None]
        dead = self.cluster_size[k] < self.dead_threshold
        if dead.any():  # replace unused codes by random vectors of this batch
            pick = torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)
            self.codebooks[k][dead] = x[pick]
            self.embed_sum[k][dead] = x[pick]
            self.cluster_size[k][dead] = 1.0

    def forward(self, z: Tensor, n_q: int | None = None) -> tuple[Tensor, Tensor, list[Tensor], Tensor]:
        check_tensor("z", z, ndim=3)
        if z.shape[-1] != self.dim:
            raise ValueError(f"z must end in dim {self.dim}, got {tuple(z.shape)}")
        n_q = self.n_q if n_q is None else n_q
        residual, quantized = z, torch.zeros_like(z)
        codes, layers, commit = [], [], z.new_zeros(())
        if self.training and not bool(self.initialized):
            gen = torch.Generator(device=z.device).manual_seed(0)
            r = z.detach().reshape(-1, self.dim)
            for k in range(self.n_q):  # k-means-free init: each codebook from its own residuals
                self._init_from(k, r, gen)
                r = r - self.codebooks[k][self.nearest(r, self.codebooks[k])]
            self.initialized.fill_(True)
        for k in range(n_q):
            flat = residual.reshape(-1, self.dim)
            idx = self.nearest(flat.detach(), self.codebooks[k])
            q = self.codebooks[k][idx].view_as(residual)
            if self.training:
                self._ema_update(k, flat.detach(), idx)
            commit = commit + F.mse_loss(residual, q.detach())
            q_st = residual + (q - residual).detach()  # straight-through to the encoder
            layers.append(q_st)
            quantized = quantized + q_st
            residual = residual - q.detach()
            codes.append(idx.view(residual.shape[:-1]))
        return quantized, torch.stack(codes, -1), layers, commit / n_q

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Sum of the codebook vectors of ``codes`` (B, T, k) for the first k codebooks."""
        check_tensor("codes", codes, ndim=3)
        return sum(self.codebooks[k][codes[..., k]] for k in range(codes.shape[-1]))


class ResBlock(nn.Module):
    """Pre-activation residual block of two dilated 1-d convolutions (channels stay)."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


@dataclass
class CodecOutput:
    """What one forward pass gives: the decoded mel, codes, per-codebook outputs, losses' inputs."""

    mel_hat: Tensor  # (B, 80, T)
    codes: Tensor  # (B, T/stride, n_q)
    layers: list[Tensor]  # n_q x (B, T/stride, D), straight-through
    latent: Tensor  # (B, T/stride, D), encoder output before quantisation
    commit: Tensor  # scalar


class MelCodec(nn.Module):
    """Log-mel codec: (B, 80, T) -> ``n_q`` tokens per frame at 100/``stride`` Hz -> (B, 80, T).

    T must be a multiple of ``stride``. ``decode(q)`` maps any sum of codebook outputs (e.g. the
    first codebook alone) back to a mel spectrogram, which LM-SPT uses to resynthesise speech
    from the semantic tokens only.
    """

    def __init__(self, n_mels: int = 80, channels: int = 128, dim: int = 64, stride: int = 4,
                 n_q: int = 4, codebook_size: int = 256):
        super().__init__()
        self.stride, self.n_mels = check_int("stride", stride, 1), n_mels
        self.encoder = nn.Sequential(
            nn.Conv1d(n_mels, channels, 5, padding=2), ResBlock(channels, 1), ResBlock(channels, 3),
            nn.Conv1d(channels, channels, 2 * stride, stride=stride, padding=stride // 2),
            ResBlock(channels, 1), ResBlock(channels, 3), nn.GELU(), nn.Conv1d(channels, dim, 1))
        self.rvq = ResidualVQ(dim, n_q, codebook_size)
        self.decoder = nn.Sequential(
            nn.Conv1d(dim, channels, 3, padding=1), ResBlock(channels, 1), ResBlock(channels, 3),
            nn.ConvTranspose1d(channels, channels, 2 * stride, stride=stride, padding=stride // 2),
            ResBlock(channels, 1), ResBlock(channels, 3), nn.GELU(), nn.Conv1d(channels, n_mels, 5, padding=2))

    @property
    def frame_rate(self) -> float:
        return 100.0 / self.stride

    def bitrate(self) -> float:
        """Bits per second of the token stream: frame rate x n_q x log2(codebook size)."""
        return self.frame_rate * self.rvq.n_q * torch.log2(torch.tensor(float(self.rvq.codebook_size))).item()

    def encode(self, mel: Tensor) -> Tensor:
        """Encoder output (B, T/stride, D) before quantisation."""
        check_tensor("mel", mel, ndim=3)
        if mel.shape[1] != self.n_mels or mel.shape[-1] % self.stride:
            raise ValueError(f"mel must be (B, {self.n_mels}, T) with T a multiple of {self.stride}, got {tuple(mel.shape)}")
        return self.encoder(mel).transpose(1, 2)

    def decode(self, q: Tensor) -> Tensor:
        """Mel (B, 80, T) from quantised frames q (B, T/stride, D)."""
        return self.decoder(q.transpose(1, 2))

    def forward(self, mel: Tensor, n_q: int | None = None) -> CodecOutput:
        z = self.encode(mel)
        q, codes, layers, commit = self.rvq(z, n_q)
        return CodecOutput(self.decode(q), codes, layers, z, commit)
