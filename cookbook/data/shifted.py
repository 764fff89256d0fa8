"""A SHIFTED substitute pool standing in for "webly collected" images (KD3, notebook 01d).

KD3 (arXiv 2307.11469) distils when the teacher's training data is gone and the student must learn
from images collected on the web, whose distribution differs from the original one. We have no web
crawl offline, so we build a stand-in from real images and say so plainly:

- **shifted garments**: Fashion-MNIST training images (the teacher's domain, never shown clean)
  passed through a random "web style" shift: rotation (+-15 deg), scale (0.85-1.1), translation
  (+-2 px), blur on half, dimmer ink on a grey veil, sensor noise, and for a tenth inverted polarity
  (dark garment on a light background);
- **off-task images**: real handwritten digits (MNIST 10k and scikit-learn's 8 x 8 digits
  upsampled), which a web query for "shirt" or "sneaker" would also return and which belong to no
  class of the teacher.

Each image's kind and original label are returned for analysis only (how many selected images are
off-task, the teacher's accuracy per kind); no method may train on them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cookbook.checks import check_finite_param, check_int
from cookbook.data.images import load_fashion_mnist, load_mnist10k, load_sklearn_digits

POOL_KINDS = ("shifted garment", "digit (off-task)")


def web_style_shift(X: torch.Tensor, seed: int = 0, invert_share: float = 0.1) -> torch.Tensor:
    """Apply the random "web style" shift to uint8 images (N, 28, 28); returns uint8 (N, 28, 28).

    Per image: affine warp (rotation U(-15, 15) deg, scale U(0.85, 1.1), shift U(-2, 2) px),
    Gaussian blur (sigma 0.8) on half of them, ink contrast x U(0.5, 1) plus a grey veil U(0, 0.08),
    noise N(0, 0.04), and with probability ``invert_share`` photo-negative polarity. Deterministic
    given ``seed``.
    """
    if X.dtype != torch.uint8 or X.dim() != 3:
        raise ValueError(f"X must be uint8 (N, H, W), got {X.dtype} {tuple(X.shape)}")
    check_finite_param("invert_share", invert_share, 0.0, 1.0)
    g = torch.Generator().manual_seed(seed)
    n = len(X)
    x = X[:, None].float() / 255.0
    angle = (torch.rand(n, generator=g) * 30 - 15) * math.pi / 180
    scale = torch.rand(n, generator=g) * 0.25 + 0.85
    shift = (torch.rand(n, 2, generator=g) * 4 - 2) / 14                    # pixels -> [-1, 1] units
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale, -angle.sin() / scale
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale, angle.cos() / scale
    theta[:, :, 2] = shift
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    k = torch.exp(-torch.arange(-2, 3).float() ** 2 / (2 * 0.8 ** 2))
    k = k / k.sum()
    blurred = F.conv2d(F.conv2d(x, k.view(1, 1, 1, 5), padding=(0, 2)), k.view(1, 1, 5, 1), padding=(2, 0))
    x = torch.where(torch.rand(n, 1, 1, 1, generator=g) < 0.5, blurred, x)
    contrast = torch.rand(n, 1, 1, 1, generator=g) * 0.5 + 0.5
    x = x * contrast + torch.rand(n, 1, 1, 1, generator=g) * 0.08          # dimmer ink, a grey veil
    x = x + torch.randn(x.shape, generator=g) * 0.04
    invert = torch.rand(n, 1, 1, 1, generator=g) < invert_share
    x = torch.where(invert, 1 - x, x)
    return x[:, 0].clamp(0, 1).mul(255).round().to(torch.uint8)


def web_pool(n_garments: int = 12_000, n_digits: int = 6_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shifted substitute pool: (X uint8 (N, 28, 28), kind (N,), original label (N,)), shuffled.

    ``n_garments`` shifted Fashion-MNIST training images (drawn without replacement from 0..54999)
    and ``n_digits`` off-task digits (MNIST 10k "train" and all 1,797 sklearn digits, drawn without
    replacement from their union). kind: 0 = shifted garment, 1 = off-task digit (``POOL_KINDS``).
    The original label (garment class or digit) is for analysis only.
    """
    check_int("n_garments", n_garments, 0)
    check_int("n_digits", n_digits, 0)
    g = torch.Generator().manual_seed(seed)
    Xf, yf = load_fashion_mnist("train")
    if n_garments > len(Xf):
        raise ValueError(f"n_garments={n_garments} but Fashion-MNIST train has {len(Xf)} images")
    pick = torch.randperm(len(Xf), generator=g)[:n_garments]
    garments = web_style_shift(Xf[pick], seed=seed)
    Xm, ym = load_mnist10k("train")
    Xd, yd = load_sklearn_digits("all")
    Xo, yo = torch.cat([Xm, Xd]), torch.cat([ym, yd])
    if n_digits > len(Xo):
        raise ValueError(f"n_digits={n_digits} but only {len(Xo)} digits are available")
    pick_o = torch.randperm(len(Xo), generator=g)[:n_digits]
    X = torch.cat([garments, Xo[pick_o]])
    kind = torch.cat([torch.zeros(n_garments, dtype=torch.int64), torch.ones(n_digits, dtype=torch.int64)])
    label = torch.cat([yf[pick], yo[pick_o]])
    order = torch.randperm(len(X), generator=g)
    return X[order], kind[order], label[order]
