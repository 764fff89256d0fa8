"""Batched image augmentations on normalised tensors (B, 1, H, W), all driven by a torch Generator.

``random_shift_flip`` is the light default (the committed teachers' recipes use it); the others are
the heavy ones DeiT-LT (arXiv 2404.02900) uses to make out-of-distribution inputs for its teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.25, 1.0),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop a random square covering ``scale`` of the area and resize it back to (H, W)."""
    B = x.shape[0]
    area = torch.empty(B).uniform_(*scale, generator=generator)
    side = area.sqrt()                                                  # crop side / image side
    centre = (torch.rand(B, 2, generator=generator) * 2 - 1) * (1 - side[:, None])
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x - x.amin(), grid, align_corners=False, padding_mode="zeros") + x.amin()


def random_erasing(x: torch.Tensor, p: float = 0.5, max_frac: float = 0.4,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` per image, fill a random box (side up to ``max_frac`` of H, W) with noise."""
    B, _, H, W = x.shape
    h = (torch.rand(B, generator=generator) * max_frac * H).long() + 1
    w = (torch.rand(B, generator=generator) * max_frac * W).long() + 1
    top = (torch.rand(B, generator=generator) * (H - h + 1)).long()
    left = (torch.rand(B, generator=generator) * (W - w + 1)).long()
    rows, cols = torch.arange(H)[None, :], torch.arange(W)[None, :]
    box = (((rows >= top[:, None]) & (rows < (top + h)[:, None]))[:, :, None]
           & ((cols >= left[:, None]) & (cols < (left + w)[:, None]))[:, None, :])  # (B, H, W)
    box &= (torch.rand(B, generator=generator) < p)[:, None, None]
    noise = torch.randn(x.shape, generator=generator).to(x)
    return torch.where(box[:, None].to(x.device), noise, x)


def cutmix(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste one random box from a shuffled copy of the batch into every image (Yun et al., 2019).

    Returns (mixed images, the permutation, lam = fraction of each image that is still its own);
    the mixed label is lam * y + (1 - lam) * y[perm].
    """
    B, _, H, W = x.shape
    lam = float(torch.rand(1, generator=generator))
    h, w = int(H * (1 - lam) ** 0.5), int(W * (1 - lam) ** 0.5)
    top = int(torch.randint(0, H - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, W - w + 1, (1,), generator=generator))
    perm = torch.randperm(B, generator=generator)
    out = x.clone()
    out[:, :, top:top + h, left:left + w] = x[perm][:, :, top:top + h, left:left + w]
    return out, perm, 1 - h * w / (H * W)


def mixup(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix every image with a random partner of the batch: lam * x + (1 - lam) * x[perm] (Zhang et al., 2018).

    lam ~ Beta(alpha, alpha), one per batch (drawn by numpy from a seed the generator gives, so the
    draw is reproducible). Returns (mixed images, perm, lam); the mixed label is
    lam * y + (1 - lam) * y[perm]. SRe2L's CIFAR relabelling and INFER's evaluation use alpha 0.8.
    """
    import numpy as np

    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator)
    return lam * x + (1 - lam) * x[perm], perm, lam


def random_shift_flip(x: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random translation by up to ``max_shift`` pixels and horizontal flip.

    x: (B, 1, H, W) -> (B, 1, H, W). The standard light augmentation for Fashion-MNIST. The border
    is padded with the image minimum (the normalised black background), not 0: padding normalised
    images with 0 paints grey borders that test images never have.
    """
    out = random_shift(x, max_shift, generator)[:, 0]
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    out = torch.where(flip[:, None, None], out.flip(-1), out)
    return out[:, None]


def random_shift(x: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random translation by up to ``max_shift`` pixels, no flip (digits must not be mirrored).

    x: (B, 1, H, W) -> (B, 1, H, W); the border is padded with the image minimum, as in ``random_shift_flip``.
    """
    B, _, H, W = x.shape
    p = max_shift
    padded = F.pad(x[:, 0], (p, p, p, p), value=float(x.amin()))                  # (B, H+2p, W+2p)
    dy = torch.randint(0, 2 * p + 1, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * p + 1, (B,), generator=generator, device=x.device)
    rows = torch.arange(H, device=x.device)[None, :] + dy[:, None]                # (B, H)
    cols = torch.arange(W, device=x.device)[None, :] + dx[:, None]                # (B, W)
    return padded[torch.arange(B, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]


# ----------------------------------------------------------------------------- DSA (dataset distillation)

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"   # the official choice for Fashion-MNIST
_DSA_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


def dsa_augment(x: torch.Tensor, seed: int, strategy: str = DSA_STRATEGY, siamese: bool = True) -> torch.Tensor:
    """Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021, arXiv 2102.08259).

    x: (B, C, H, W) -> (B, C, H, W), differentiable with respect to x. The integer ``seed`` picks
    one operation of ``strategy`` (underscore-separated: color, crop, cutout, flip, scale, rotate)
    and its random parameters, as the official code's single-operation mode ("S") does. With
    ``siamese=True`` every image of the batch gets the *same* parameters, so a real batch and a
    synthetic batch augmented with the same seed are transformed alike: the point of DSA, whose
    matching losses compare the two. ``siamese=False`` draws per-image parameters (used to
    augment a batch while training an evaluation network). Constants are the official
    ``ParamDiffAug``: brightness 1.0, saturation 2.0, contrast 0.5, crop/pad 1/8 of the side,
    cutout half the side, flip p=0.5, scale 1.2, rotation 15 degrees (checked against
    ``VICO-UoE/DatasetCondensation@53f63a6:utils.py``).
    """
    ops = strategy.split("_")
    if not ops or any(o not in _DSA_OPS for o in ops):
        raise ValueError(f"strategy must be '_'-joined names from {_DSA_OPS}, got {strategy!r}")
    if x.dim() != 4:
        raise ValueError(f"dsa_augment expects (B, C, H, W), got shape {tuple(x.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    B, _, H, W = x.shape
    n = 1 if siamese else B

    def rand(*shape):                              # (n, ...) broadcast to the batch
        r = torch.rand(n, *shape, generator=g)
        return r.expand(B, *shape).to(x) if siamese else r.to(x)

    op = ops[int(torch.randint(len(ops), (1,), generator=g))]
    if op == "color":
        x = x + (rand(1, 1, 1) - 0.5) * 1.0                                   # brightness
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (rand(1, 1, 1) * 2.0) + m                               # saturation (a no-op on grey)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (rand(1, 1, 1) + 0.5) + m                            # contrast
    if op == "flip":
        return torch.where(rand(1, 1, 1) < 0.5, x.flip(3), x)
    if op == "crop":                                                          # translate, zero border
        sh, sw = int(H * 0.125 + 0.5), int(W * 0.125 + 0.5)
        ty = (rand()[:, None] * (2 * sh + 1)).long().clamp(max=2 * sh) - sh   # (B, 1)
        tx = (rand()[:, None] * (2 * sw + 1)).long().clamp(max=2 * sw) - sw
        pad = F.pad(x, (1, 1, 1, 1))
        rows = (torch.arange(H, device=x.device)[None] + ty + 1).clamp(0, H + 1)  # (B, H)
        cols = (torch.arange(W, device=x.device)[None] + tx + 1).clamp(0, W + 1)  # (B, W)
        b = torch.arange(B, device=x.device)[:, None, None]
        return pad.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if op == "cutout":                                                        # zero a half-side box
        ch, cw = int(H * 0.5 + 0.5), int(W * 0.5 + 0.5)
        cy = (rand() * (H + 1 - ch % 2)).long()
        cx = (rand() * (W + 1 - cw % 2)).long()
        rows, cols = torch.arange(H, device=x.device)[None], torch.arange(W, device=x.device)[None]
        top, left = (cy - ch // 2)[:, None], (cx - cw // 2)[:, None]
        box = (((rows >= top) & (rows < top + ch))[:, :, None] & ((cols >= left) & (cols < left + cw))[:, None, :])
        return x * (~box).to(x)[:, None]
    theta = torch.zeros(B, 2, 3, dtype=x.dtype, device=x.device)
    if op == "scale":
        theta[:, 0, 0] = rand() * (1.2 - 1 / 1.2) + 1 / 1.2
        theta[:, 1, 1] = rand() * (1.2 - 1 / 1.2) + 1 / 1.2
    else:                                                                     # rotate, +-15 degrees
        a = (rand() - 0.5) * 2 * 15.0 / 180 * torch.pi
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def mix_distribution(h: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KD3's MixDistribution on a feature map (B, C, H, W): give each instance a new, mixed distribution.

    Each instance's per-channel mean mu and std sigma (over H, W) are replaced by a mix with those of
    instance ``perm[i]``: (h - mu) / sigma * sigma_mix + mu_mix, with mu_mix = lam mu + (1 - lam) mu[perm]
    (likewise sigma); lam (B,) in [0, 1]. The content (normalised map) is kept, the "style" moves to a
    distribution between two instances' (the MixStyle operation, Zhou et al., ICLR 2021, which KD3 builds on).
    Statistics are detached, as in MixStyle. Paper: Tang et al., arXiv 2307.11469.
    """
    if h.dim() != 4:
        raise ValueError(f"h must be a feature map (B, C, H, W), got shape {tuple(h.shape)}")
    if perm.shape != (h.shape[0],) or lam.shape != (h.shape[0],):
        raise ValueError(f"perm and lam must have shape ({h.shape[0]},), got {tuple(perm.shape)} and {tuple(lam.shape)}")
    mu = h.mean((2, 3), keepdim=True).detach()
    sigma = (h.var((2, 3), keepdim=True) + eps).sqrt().detach()
    lam = lam.to(h)[:, None, None, None]
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sigma_mix = lam * sigma + (1 - lam) * sigma[perm]
    return (h - mu) / sigma * sigma_mix + mu_mix
