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


def random_shift_flip(x: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random translation by up to ``max_shift`` pixels and horizontal flip.

    x: (B, 1, H, W) -> (B, 1, H, W). The standard light augmentation for Fashion-MNIST. The border
    is padded with the image minimum (the normalised black background), not 0: padding normalised
    images with 0 paints grey borders that test images never have.
    """
    B, _, H, W = x.shape
    p = max_shift
    padded = F.pad(x[:, 0], (p, p, p, p), value=float(x.amin()))                  # (B, H+2p, W+2p)
    dy = torch.randint(0, 2 * p + 1, (B,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * p + 1, (B,), generator=generator, device=x.device)
    rows = torch.arange(H, device=x.device)[None, :] + dy[:, None]                # (B, H)
    cols = torch.arange(W, device=x.device)[None, :] + dx[:, None]                # (B, W)
    out = padded[torch.arange(B, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = torch.rand(B, generator=generator, device=x.device) < 0.5
    out = torch.where(flip[:, None, None], out.flip(-1), out)
    return out[:, None]
