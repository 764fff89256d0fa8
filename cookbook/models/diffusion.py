"""Few-step diffusion family (notebooks 07a/07b): the networks and the one noise parametrisation.

One convention everywhere, TrigFlow (Lu & Song 2024, arXiv 2410.11081; SANA-Sprint P35):

    x_t = cos(t) x_0 + sin(t) z,   z ~ N(0, I),   t in [0, pi/2],   sigma_d = 1
    F_theta(x_t, t) predicts v = cos(t) z - sin(t) x_0 = dx_t/dt,   x_0 = cos(t) x_t - sin(t) F

With alpha = cos t and sigma = sin t this is a variance-preserving DDPM with v-prediction
(Salimans & Ho 2022): diffusers' DDIM / DPM-Solver schedulers with ``prediction_type="v_prediction"``
sample it unchanged (``cookbook.methods.diffusion`` maps their integer timesteps to angles), and
the sCM tangent d/dt is one JVP through the network. Data are scaled to [-1, 1] (sigma_d = 1; the
sCM/SANA papers use 0.5 on their latents).

- ``fmnist_unet``: diffusers ``UNet2DModel`` (no attention, so forward-mode AD works on CPU), class-
  conditional, 16 x 16 grey images. No hand-written UNet.
- ``TrigFlowNet``: wraps any ``net(x, c_noise, labels)`` into F(x_t, t, y) and its x_0 / eps views.
- ``ToyDenoiser``: an MLP on 2-D points (the ring-of-Gaussians toy, where every method runs in seconds).
- ``FrameDenoiser``: a tiny transformer over a buffer of frames with one time per frame (StreamDiT's
  varying time embedding, P45).
- ``ARGridModel`` + ``fake_quantize``: a "language-style" generator over a grid of discrete tokens and
  symmetric per-channel weight fake quantisation with a straight-through gradient (P56, TopKLD).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HALF_PI = math.pi / 2
C_NOISE_SCALE = 1000.0 / HALF_PI   # the network sees c_noise = t * 1000 / (pi/2) in [0, 1000], DDPM's range


def fmnist_unet(size: int = 16, channels: tuple[int, ...] = (16, 32, 32), num_classes: int = 10):
    """diffusers ``UNet2DModel`` for (B, 1, size, size) images, class-conditional (``class_labels``),
    ResNet blocks only (no attention: ``torch.func.jvp`` has no CPU flash-attention rule)."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=channels, down_block_types=("DownBlock2D",) * len(channels),
                       up_block_types=("UpBlock2D",) * len(channels), num_class_embeds=num_classes,
                       norm_num_groups=8, add_attention=False)


def _expand(t: Tensor, like: Tensor) -> Tensor:
    """(B,) or scalar angle -> broadcastable to ``like`` (B, ...)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.dim() - 1)))


class TrigFlowNet(nn.Module):
    """F_theta(x_t, t, y): the v-prediction of ``net`` in TrigFlow time t (radians, (B,) or scalar).

    ``net(x, c_noise, labels)`` is called with c_noise = 1000 t / (pi/2). A diffusers UNet is
    wrapped with ``unet=True`` (its output is ``.sample`` and labels go to ``class_labels``).
    """

    def __init__(self, net: nn.Module, unet: bool = False):
        super().__init__()
        self.net, self.unet = net, unet

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        c = _expand(t, x_t).flatten() * C_NOISE_SCALE
        if self.unet:
            return self.net(x_t, c, class_labels=y).sample
        return self.net(x_t, c, y)

    def x0(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x_0 = cos(t) x_t - sin(t) F(x_t, t, y): the denoiser D(x_t, t)."""
        tt = _expand(t, x_t)
        return torch.cos(tt) * x_t - torch.sin(tt) * self(x_t, t, y)


def noise(x0: Tensor, t: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(x_t, z) with x_t = cos(t) x0 + sin(t) z (fresh z unless given)."""
    z = torch.randn_like(x0) if z is None else z
    tt = _expand(t, x0)
    return torch.cos(tt) * x0 + torch.sin(tt) * z, z


def v_target(x0: Tensor, z: Tensor, t: Tensor) -> Tensor:
    """v = cos(t) z - sin(t) x0 = dx_t/dt: the TrigFlow / v-prediction regression target."""
    tt = _expand(t, x0)
    return torch.cos(tt) * z - torch.sin(tt) * x0


class _TimeEmbed(nn.Module):
    """Sinusoidal features of c_noise -> MLP (the DDPM/Transformer time embedding)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c: Tensor) -> Tensor:            # (...,) -> (..., dim)
        half = self.dim // 2
        c = c if c.is_floating_point() else c.float()
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c.device, dtype=c.dtype) / half)
        args = c[..., None] * freqs
        return self.mlp(torch.cat([args.sin(), args.cos()], -1))


class ToyDenoiser(nn.Module):
    """MLP network for 2-D points: [x, time embedding, class embedding] -> 3 x (Linear, SiLU) -> 2.

    ``num_classes=0``: unconditional (labels ignored). Called as ``net(x, c_noise, labels)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, num_classes: int = 0, depth: int = 3):
        super().__init__()
        self.temb = _TimeEmbed(hidden)
        self.cemb = nn.Embedding(num_classes, hidden) if num_classes else None
        layers: list[nn.Module] = [nn.Linear(dim + hidden, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        self.body = nn.Sequential(*layers, nn.Linear(hidden, dim))

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:  # (B, 2)
        h = self.temb(c_noise.expand(x.shape[0]) if c_noise.dim() == 0 else c_noise)
        if self.cemb is not None and labels is not None:
            h = h + self.cemb(labels)
        return self.body(torch.cat([x, h], -1))


class FrameDenoiser(nn.Module):
    """StreamDiT-style buffer model (P45): frames (B, L, d) with one time per frame (B, L).

    Each frame is a token; its input embedding adds its own time embedding (StreamDiT's "varying
    time embedding"), and attention is full over the buffer (the buffer is small here; StreamDiT
    uses window attention over a long one). Returns the per-frame velocity (B, L, d).
    """

    def __init__(self, dim: int = 2, width: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.temb = _TimeEmbed(width)
        self.pos = nn.Parameter(torch.randn(max_len, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.body = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(width, dim)

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        B, L, _ = x.shape
        c = c_noise.reshape(B, L) if c_noise.numel() == B * L else c_noise.reshape(B, 1).expand(B, L)
        h = self.inp(x) + self.temb(c) + self.pos[:L]
        return self.out(self.body(h))


# ----------------------------------------------------------------------------- P56: language-style + quantisation

class ARGridModel(nn.Module):
    """A two-token autoregressive model of 2-D points on a G x G grid: p(i) p(j | i).

    Token 1 (the x bin) has logits from a learned start embedding, token 2 (the y bin) from the
    embedding of token 1; both pass the same MLP to G logits. The "language-style" generator of
    the P56 comparison: a discrete output space, trained with cross-entropy.
    """

    def __init__(self, grid: int = 32, hidden: int = 128):
        super().__init__()
        self.grid = grid
        self.embed = nn.Embedding(grid + 1, hidden)       # index `grid` = start token
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, grid))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, 2) int64 -> logits (B, 2, G): position k predicts token k from token k-1."""
        prev = torch.stack([torch.full_like(tokens[:, 0], self.grid), tokens[:, 0]], 1)
        return self.mlp(self.embed(prev))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """(n, 2) grid tokens drawn ancestrally."""
        start = torch.full((n,), self.grid, dtype=torch.long)
        i = torch.multinomial(F.softmax(self.mlp(self.embed(start)) / temperature, -1), 1, generator=generator)[:, 0]
        j = torch.multinomial(F.softmax(self.mlp(self.embed(i)) / temperature, -1), 1, generator=generator)[:, 0]
        return torch.stack([i, j], 1)

    @torch.no_grad()
    def log_probs(self) -> Tensor:
        """The full joint log p(i, j) as a (G, G) table (exact, the space is small)."""
        G = self.grid
        lp_i = F.log_softmax(self.mlp(self.embed(torch.tensor([G]))), -1)[0]           # (G,)
        lp_j = F.log_softmax(self.mlp(self.embed(torch.arange(G))), -1)                 # (G, G)
        return lp_i[:, None] + lp_j


def fake_quantize(w: Tensor, bits: int) -> Tensor:
    """Symmetric per-output-channel uniform quantisation of a weight (O, ...) to ``bits`` bits,
    with a straight-through gradient (round in the forward pass, identity in the backward)."""
    if bits < 2:
        raise ValueError(f"bits must be >= 2 (symmetric signed grid), got {bits}")
    levels = 2 ** (bits - 1) - 1
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / levels
    scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
    q = torch.clamp(torch.round(w / scale), -levels, levels) * scale
    return w + (q - w).detach()


class QuantLinear(nn.Linear):
    """``nn.Linear`` whose weight is fake-quantised to ``bits`` in every forward (QAT); bias kept in fp32."""

    bits: int = 32

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight if self.bits >= 32 else fake_quantize(self.weight, self.bits)
        return F.linear(x, w, self.bias)


def quantize_linears(model: nn.Module, bits: int) -> nn.Module:
    """Turn every ``nn.Linear`` of ``model`` into a ``QuantLinear`` with ``bits`` (in place; weights kept)."""
    for module in model.modules():
        if type(module) is nn.Linear or isinstance(module, QuantLinear):
            module.__class__ = QuantLinear
            module.bits = bits
    return model


def model_bits(model: nn.Module) -> int:
    """Total weight bits: QuantLinear weights at their bits, every other parameter at 32."""
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            total += p.numel() * (module.bits if isinstance(module, QuantLinear) and name == "weight" else 32)
    return total


# ----------------------------------------------------------------------------- data scaling and the diffusers samplers

def to_diffusion_images(X: Tensor, size: int = 16) -> Tensor:
    """uint8 (N, 28, 28) Fashion-MNIST -> float (N, 1, size, size) in [-1, 1] (antialiased resize)."""
    x = torch.as_tensor(X)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    x = x.float().div(255.0).unsqueeze(1) if x.dim() == 3 else x.float().div(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                        prediction_type="v_prediction", clip_sample=False)


def make_scheduler(kind: str = "ddim"):
    """A diffusers scheduler for TrigFlow v-prediction nets: "ddim" (DDIM, eta 0, trailing spacing
    so 1 step starts from pure noise), "dpm" (DPM-Solver++ 2M, the teacher's full sampler), "ddpm"."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if kind == "ddim":
        return DDIMScheduler(**SCHEDULER_CONFIG, timestep_spacing="trailing", set_alpha_to_one=True)
    if kind == "dpm":
        return DPMSolverMultistepScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "clip_sample"},
                                           algorithm_type="dpmsolver++", solver_order=2,
                                           timestep_spacing="trailing", final_sigmas_type="zero")
    if kind == "ddpm":
        return DDPMScheduler(**SCHEDULER_CONFIG)
    raise ValueError(f"scheduler kind must be 'ddim', 'dpm' or 'ddpm', got {kind!r}")


def timestep_angle(scheduler, timestep) -> Tensor:
    """TrigFlow angle t = atan2(sqrt(1 - abar), sqrt(abar)) of a scheduler's integer timestep(s)."""
    abar = scheduler.alphas_cumprod[torch.as_tensor(timestep).long().cpu()].float()
    return torch.atan2((1 - abar).sqrt(), abar.sqrt())


@torch.no_grad()
def scheduler_sample(model: TrigFlowNet, shape: tuple[int, ...], steps: int, y: Tensor | None = None,
                     kind: str = "ddim", generator: torch.Generator | None = None,
                     batch_size: int = 500) -> Tensor:
    """Sample with a diffusers scheduler ("ddim" / "dpm") in ``steps`` network calls (NFE = steps).

    The scheduler passes integer DDPM timesteps; each is mapped to its TrigFlow angle and ``model``
    returns v, which is exactly diffusers' v_prediction model output (alpha = cos t, sigma = sin t).
    """
    outs = []
    for start in range(0, shape[0], batch_size):
        n = min(batch_size, shape[0] - start)
        sched = make_scheduler(kind)
        sched.set_timesteps(steps)
        x = torch.randn((n, *shape[1:]), generator=generator)
        yb = None if y is None else y[start:start + n]
        for ts in sched.timesteps:
            v = model(x, timestep_angle(sched, ts).expand(n), yb)
            x = sched.step(v, ts, x).prev_sample
        outs.append(x)
    return torch.cat(outs)
