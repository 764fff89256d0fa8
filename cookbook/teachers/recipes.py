"""The recipes that produced the committed teachers. Each takes a seed, returns (model, metrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.models import SmallCNN
from cookbook.train import evaluate, fit


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


def fmnist_cnn(seed: int = 0, epochs: int = 12) -> tuple[torch.nn.Module, dict]:
    """SmallCNN(width=32) on Fashion-MNIST train (55k), shift+flip augmentation, AdamW 3e-3 cosine,
    weight decay 5e-4, batch 128; the epoch with the best validation accuracy (5k held out) is kept."""
    from cookbook.data import load_fashion_mnist, normalize_images

    torch.manual_seed(seed)
    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    X, Xv, Xt = (normalize_images(a) for a in (X, Xv, Xt))
    model = SmallCNN(width=32).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        xb = random_shift_flip(xb, generator=gen).contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(m(xb), yb)

    hist = fit(model, loss_fn, (X, y), epochs=epochs, lr=3e-3, weight_decay=5e-4, batch_size=128,
               seed=seed, eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc",
               progress=True, desc="fmnist-cnn")
    model = model.to(memory_format=torch.contiguous_format)
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                   "best_epoch": hist.best_epoch, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def _fit_fmnist(model: torch.nn.Module, seed: int, epochs: int, lr: float, desc: str,
                augment: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train ``model`` on Fashion-MNIST train (55k) (shift+flip if ``augment``), AdamW ``lr`` cosine, weight
    decay 5e-4, batch 256; keep the epoch with the best validation accuracy; return (model, metrics)."""
    from cookbook.data import load_fashion_mnist, normalize_images

    torch.manual_seed(seed)
    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    X, Xv, Xt = (normalize_images(a) for a in (X, Xv, Xt))
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(random_shift_flip(xb, generator=gen) if augment else xb), yb)

    hist = fit(model, loss_fn, (X, y), epochs=epochs, lr=lr, weight_decay=5e-4, batch_size=256, seed=seed,
               eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc", progress=True, desc=desc)
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                   "best_epoch": hist.best_epoch, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def fmnist_resnet(seed: int = 0, epochs: int = 8) -> tuple[torch.nn.Module, dict]:
    """TinyResNet(width=16) on Fashion-MNIST: a second, residual teacher family (~7 min on 1 thread)."""
    from cookbook.models import TinyResNet

    torch.manual_seed(seed)
    return _fit_fmnist(TinyResNet(width=16), seed, epochs, lr=3e-3, desc="fmnist-resnet")


def fmnist_mlp(seed: int = 0, epochs: int = 15) -> tuple[torch.nn.Module, dict]:
    """MLP 784-256-256-10 on Fashion-MNIST: a third, convolution-free teacher family (~1 min on 1 thread).
    No augmentation: shifted images cost an MLP (no translation invariance) ~3 points here."""
    from cookbook.models import MLP

    torch.manual_seed(seed)
    return _fit_fmnist(MLP(hidden=(256, 256)), seed, epochs, lr=1e-3, desc="fmnist-mlp", augment=False)
