"""The recipes that produced the committed teachers, and their registry entries (``SPECS``).

Each recipe takes a seed and returns (model, metrics). ``SPECS`` is read by
``cookbook.teachers.registry`` on the first lookup, so importing ``cookbook.teachers`` (or
``cookbook.teachers.llm``) does not import the Fashion-MNIST data, models and training loop.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from cookbook.data.augment import random_shift_flip
from cookbook.losses import masked_reconstruction_loss
from cookbook.metrics import accuracy, per_class_accuracy
from cookbook.models import (
    MLP,
    MaskedAutoencoder,
    PlainCNN,
    SmallCNN,
    TinyResNet,
    patchify,
    random_keep,
    tiny_vit,
)
from cookbook.models.convnet import ConvNet
from cookbook.models.diffusion import fmnist_unet
from cookbook.teachers.spec import TeacherSpec
from cookbook.train import evaluate, fit, predict


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


def fmnist_cnn_labelled(seed: int = 0, *, n_labelled: int, subset_seed: int, epochs: int) -> tuple[torch.nn.Module, dict]:
    """SmallCNN(width=32) trained on the ``n_labelled`` class-balanced training images
    ``balanced_subset(y_train, n_labelled, seed=subset_seed)`` only: the teacher of a label-scarce
    regime that has seen no label the student lacks (P24 DHO fits its teacher on the labelled shots,
    or uses a zero-shot CLIP teacher). Same augmentation, optimiser and schedule as ``fmnist_cnn``;
    the epoch with the best accuracy on the 5k validation split is kept (the students of notebooks
    00 and 01a early-stop on the same split)."""
    from cookbook.data import balanced_subset, load_fashion_mnist, normalize_images

    torch.manual_seed(seed)
    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    keep = balanced_subset(y, n_labelled, seed=subset_seed)
    X, Xv, Xt = (normalize_images(a) for a in (X[keep], Xv, Xt))
    y = y[keep]
    model = SmallCNN(width=32)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(random_shift_flip(xb, generator=gen)), yb)

    hist = fit(model, loss_fn, (X, y), epochs=epochs, lr=3e-3, weight_decay=5e-4, batch_size=128,
               seed=seed, eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc",
               progress=True, desc=f"fmnist-cnn-{n_labelled}")
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                   "labels_seen": n_labelled, "subset": f"balanced_subset(y_train, {n_labelled}, seed={subset_seed})",
                   "best_epoch": hist.best_epoch, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def _fit_fmnist(model: torch.nn.Module, seed: int, epochs: int, lr: float, desc: str,
                augment: bool = True, pool: bool = False) -> tuple[torch.nn.Module, dict]:
    """Train ``model`` on Fashion-MNIST train (55k; with ``pool`` only the 10k class-balanced pool of
    the dataset-distillation notebooks, ``load_fashion_mnist_pool``) (shift+flip if ``augment``),
    AdamW ``lr`` cosine, weight decay 5e-4, batch 256; keep the epoch with the best validation
    accuracy; return (model, metrics on the full 10k test set)."""
    from cookbook.data import load_fashion_mnist, normalize_images
    from cookbook.data.images import load_fashion_mnist_pool

    torch.manual_seed(seed)
    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    X, Xv, Xt = (normalize_images(a) for a in (X, Xv, Xt))
    if pool:
        data = load_fashion_mnist_pool(n=10_000)
        X, y = data["X"], data["y"]
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(random_shift_flip(xb, generator=gen) if augment else xb), yb)

    hist = fit(model, loss_fn, (X, y), epochs=epochs, lr=lr, weight_decay=5e-4, batch_size=256, seed=seed,
               eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc", progress=True, desc=desc)
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                   "best_epoch": hist.best_epoch, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def fmnist_resnet(seed: int = 0, epochs: int = 8) -> tuple[torch.nn.Module, dict]:
    """TinyResNet(width=16) on Fashion-MNIST: a second, residual teacher family (~7 min on 1 thread)."""
    torch.manual_seed(seed)
    return _fit_fmnist(TinyResNet(width=16), seed, epochs, lr=3e-3, desc="fmnist-resnet")


def fmnist_mlp(seed: int = 0, epochs: int = 15) -> tuple[torch.nn.Module, dict]:
    """MLP 784-256-256-10 on Fashion-MNIST: a third, convolution-free teacher family (~1 min on 1 thread).
    No augmentation: shifted images cost an MLP (no translation invariance) ~3 points here."""
    torch.manual_seed(seed)
    return _fit_fmnist(MLP(hidden=(256, 256)), seed, epochs, lr=1e-3, desc="fmnist-mlp", augment=False)


POOL_TEACHERS = {   # name -> architecture: the committee of notebook 03c (SRe2L, CV-DD, INFER), all BatchNorm
    "fmnist-pool-convbn": lambda: ConvNet(width=16, depth=3, norm="batch"),
    "fmnist-pool-convbn-d4": lambda: ConvNet(width=16, depth=4, norm="batch"),
    "fmnist-pool-resnet": lambda: TinyResNet(width=16),
    "fmnist-pool-plaincnn": lambda: PlainCNN(),
}


def fmnist_pool_teacher(name: str, seed: int = 0, epochs: int = 20) -> tuple[torch.nn.Module, dict]:
    """A BatchNorm teacher of ``POOL_TEACHERS`` trained on the 10k pool only (all its labels), shift+flip,
    AdamW 3e-3 cosine, 20 epochs, best validation epoch kept: the pool is all any method of 03a/03c
    distils from, so a teacher trained on it adds no data the other methods do not see."""
    torch.manual_seed(seed)
    return _fit_fmnist(POOL_TEACHERS[name](), seed, epochs, lr=3e-3, desc=name, pool=True)


LT_N_MAX, LT_IMBALANCE = 1000, 100     # the long-tailed Fashion-MNIST of notebook 01b (2,478 images)


def fmnist_long_tailed() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Long-tailed Fashion-MNIST: from the 55k train split, class c keeps 1000 * 100^(-c/9) images
    (1000, 599, 359, 215, 129, 77, 46, 27, 16, 10), drawn with seed 0. Returns (X uint8, y, counts)."""
    from cookbook.data import load_fashion_mnist, long_tailed_counts, long_tailed_indices

    X, y = load_fashion_mnist("train")
    counts = long_tailed_counts(LT_N_MAX, LT_IMBALANCE)
    idx = long_tailed_indices(y, counts, seed=0)
    return X[idx], y[idx], counts


def sam_step(model: torch.nn.Module, loss_fn, batch: tuple, opt: torch.optim.Optimizer, rho: float = 0.05) -> float:
    """One Sharpness-Aware Minimization step (Foret et al., ICLR 2021, arXiv 2010.01412).

    Ascend to w + rho * g / ||g|| (the worst nearby weights), take the gradient there, step from w.
    Two forward/backward passes per step; ``loss_fn(model, *batch)`` is the loss, as in ``fit``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model, *batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in params]
    norm = torch.norm(torch.stack([g.norm() for g in grads if g is not None])) + 1e-12
    eps = [None if g is None else g * (rho / norm) for g in grads]
    with torch.no_grad():
        for p, e in zip(params, eps):
            if e is not None:
                p.add_(e)
    opt.zero_grad(set_to_none=True)
    loss_fn(model, *batch).backward()
    with torch.no_grad():
        for p, e in zip(params, eps):
            if e is not None:
                p.sub_(e)
    opt.step()
    return loss.item()


def fmnist_lt_cnn(seed: int = 0, epochs: int = 30) -> tuple[torch.nn.Module, dict]:
    """SmallCNN(width=16) on long-tailed Fashion-MNIST (``fmnist_long_tailed``): shift+flip, SAM
    (rho 0.05), cross-entropy re-weighted with class-balanced weights (beta 0.999) from 2/3 of the
    epochs on (DRW); AdamW 3e-3 cosine, weight decay 5e-4, batch 128. DeiT-LT's "flat" CNN teacher."""
    import math

    from cookbook.data import class_balanced_weights, load_fashion_mnist, normalize_images
    from cookbook.train import batches

    torch.manual_seed(seed)
    X, y, counts = fmnist_long_tailed()
    Xt, yt = load_fashion_mnist("test")
    X, Xt = normalize_images(X), normalize_images(Xt)
    model = SmallCNN(width=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    total = epochs * math.ceil(len(X) / 128)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(seed + 1)
    drw = class_balanced_weights(counts, beta=0.999)
    for epoch in range(epochs):
        model.train()
        weight = drw if epoch >= 2 * epochs // 3 else None
        for xb, yb in batches(X, y, batch_size=128, shuffle=True, generator=gen):
            xb = random_shift_flip(xb, generator=gen)
            sam_step(model, lambda m, xb_, yb_, w=weight: F.cross_entropy(m(xb_), yb_, weight=w), (xb, yb), opt)
            sched.step()
    model.eval()
    pred = predict(model, Xt).argmax(-1)
    per_class = [round(v, 4) for v in per_class_accuracy(pred, yt, 10).tolist()]
    return model, {"test_acc": round(accuracy(pred, yt), 4), "per_class_test_acc": per_class,
                   "train_counts": counts, "epochs": epochs}


MAE_VIT = {"embed_dim": 128, "depth": 4, "num_heads": 4}   # the DMAE teacher: ~4x the student's parameters


def mae_vit() -> torch.nn.Module:
    """The ViT of the DMAE teachers (notebook 01b): 7 x 7 patches, width 128, 4 blocks, ~0.54M params."""
    return tiny_vit(**MAE_VIT)


def _knn_accuracy(model: torch.nn.Module, bank: tuple, queries: tuple, k: int = 20) -> float:
    """k-NN (cosine, majority of k) accuracy of mean-pooled patch features: how much class structure
    a label-free encoder holds. The bank's labels are read only here, never in training."""
    from cookbook.train import batches

    @torch.no_grad()
    def feats(X):
        out = [model.forward_features(xb)[:, model.num_prefix_tokens:].mean(1) for (xb,) in batches(X, batch_size=1024)]
        return F.normalize(torch.cat(out), dim=-1)

    fb, fq = feats(bank[0]), feats(queries[0])
    nearest = (fq @ fb.T).topk(k, dim=-1).indices                             # (Q, k)
    votes = F.one_hot(bank[1][nearest], 10).sum(1)                            # (Q, 10)
    return accuracy(votes.argmax(-1), queries[1])


def fmnist_mae_vit(seed: int = 0, epochs: int = 16) -> tuple[torch.nn.Module, dict]:
    """MAE pre-training of ``mae_vit()`` on the 55k Fashion-MNIST training IMAGES, no labels: 75% of the
    16 patches hidden, pixels of the hidden patches reconstructed (per-patch normalised, MAE's
    default) by a one-block decoder of width 64; shift+flip, AdamW 1.5e-3 cosine, weight decay 0.05,
    batch 256. DMAE's "pre-trained" teacher. Metric: k-NN accuracy of its features on the 5k
    validation images (bank: 5k training images), a label-free probe of what it learned."""
    from cookbook.data import load_fashion_mnist, normalize_images

    torch.manual_seed(seed)
    (X, y), (Xv, yv) = (load_fashion_mnist(s) for s in ("train", "val"))
    X, Xv = normalize_images(X), normalize_images(Xv)
    mae = MaskedAutoencoder(mae_vit(), decoder_dim=64)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb):
        xb = random_shift_flip(xb, generator=gen)
        keep = random_keep(len(xb), 16, 0.75, generator=gen)                  # (B, 4) visible patches
        return masked_reconstruction_loss(m(xb, keep)[0], patchify(xb, 7), keep)

    hist = fit(mae, loss_fn, (X,), epochs=epochs, lr=1.5e-3, weight_decay=0.05, batch_size=256, seed=seed,
               progress=True, desc="fmnist-mae-vit")
    vit = mae.vit.eval()
    return vit, {"val_knn_acc": round(_knn_accuracy(vit, (X[:5000], y[:5000]), (Xv, yv)), 4),
                 "final_rec_loss": round(hist.train_loss[-1], 4), "labels_seen": 0, "epochs": epochs,
                 "train_seconds": round(hist.seconds, 1)}


def fmnist_mae_vit_ft(seed: int = 0, epochs: int = 3) -> tuple[torch.nn.Module, dict]:
    """``fmnist-mae-vit`` fine-tuned on all 55,000 Fashion-MNIST training labels: cross-entropy, shift+flip,
    AdamW 1e-3 cosine, weight decay 0.05, batch 256; the epoch with the best accuracy on the 5k
    validation split is kept. DMAE's "fine-tuned" teacher: same weights before fine-tuning."""
    from safetensors.torch import load_file

    from cookbook import assets
    from cookbook.data import load_fashion_mnist, normalize_images

    torch.manual_seed(seed)
    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    X, Xv, Xt = (normalize_images(a) for a in (X, Xv, Xt))
    vit = mae_vit()
    vit.load_state_dict(load_file(str(assets.asset("teachers/fmnist-mae-vit.safetensors"))))
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(random_shift_flip(xb, generator=gen)), yb)

    hist = fit(vit, loss_fn, (X, y), epochs=epochs, lr=1e-3, weight_decay=0.05, batch_size=256, seed=seed,
               eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc", progress=True,
               desc="fmnist-mae-vit-ft")
    return vit, {"test_acc": round(evaluate(vit, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                 "labels_seen": len(y), "best_epoch": hist.best_epoch, "epochs": epochs,
                 "train_seconds": round(hist.seconds, 1)}


# ----------------------------------------------------------------------------- notebook 01c / 01d teachers


def fmnist_vit(seed: int = 0, epochs: int = 15) -> tuple[torch.nn.Module, dict]:
    """``small_vit()`` (d 64, 4 blocks, 4 heads, MLP 64 -> 256 -> 64, 0.2M params) on Fashion-MNIST train
    (55k), shift+flip, AdamW 1e-3 cosine, weight decay 0.05, batch 128; best validation epoch kept.
    The dense ViT that ACM converts (01c) and Hybrid Distill's supervised teacher."""
    from cookbook.models.vision import small_vit

    torch.manual_seed(seed)
    model = small_vit()
    return _fit_fmnist_vit(model, seed, epochs)


def _fit_fmnist_vit(model: torch.nn.Module, seed: int, epochs: int) -> tuple[torch.nn.Module, dict]:
    from cookbook.data import load_fashion_mnist, normalize_images

    (X, y), (Xv, yv), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "val", "test"))
    X, Xv, Xt = (normalize_images(a) for a in (X, Xv, Xt))
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, yb):
        return F.cross_entropy(m(random_shift_flip(xb, generator=gen)), yb)

    hist = fit(model, loss_fn, (X, y), epochs=epochs, lr=1e-3, weight_decay=0.05, batch_size=128, seed=seed,
               eval_fn=lambda m: {"val_acc": evaluate(m, Xv, yv)}, keep_best="val_acc", progress=True, desc="fmnist-vit")
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "val_acc": round(hist.final("val_acc"), 4),
                   "best_epoch": hist.best_epoch, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def fmnist_mim_vit(seed: int = 0, epochs: int = 30, mask_ratio: float = 0.75) -> tuple[torch.nn.Module, dict]:
    """MAE pre-training (He et al., 2022) of ``small_vit()`` on the 55k Fashion-MNIST training IMAGES, no
    labels: 75% of the 16 patches masked, normalised-pixel loss on the masked ones, a 1-block decoder
    (d 32), AdamW 1.5e-3 cosine, weight decay 0.05, batch 256, shift+flip. The encoder is kept. Its card
    reports a linear probe (logistic regression on the mean patch token, 5k train / test images) only
    to show the features are not random; the probe's labels never reach the weights."""
    from sklearn.linear_model import LogisticRegression

    from cookbook.data import load_fashion_mnist, normalize_images
    from cookbook.losses.features import masked_reconstruction_loss
    from cookbook.models.vision import (
        MaskedAutoencoder,
        patchify,
        random_keep,
        small_vit,
        vit_forward_tokens,
    )

    torch.manual_seed(seed)
    (X, y), (Xt, yt) = (load_fashion_mnist(s) for s in ("train", "test"))
    X, Xt = normalize_images(X), normalize_images(Xt)
    mae = MaskedAutoencoder(small_vit(), decoder_dim=32)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb):
        xb = random_shift_flip(xb, generator=gen)
        keep = random_keep(len(xb), 16, mask_ratio, generator=gen)
        pred, _ = m(xb, keep)
        return masked_reconstruction_loss(pred, patchify(xb, 7), keep)

    hist = fit(mae, loss_fn, (X,), epochs=epochs, lr=1.5e-3, weight_decay=0.05, batch_size=256, seed=seed,
               progress=True, desc="fmnist-mim-vit")
    vit = mae.vit.eval()

    def feats(images):
        with torch.no_grad():
            return torch.cat([vit_forward_tokens(vit, xb)[0][:, 1:].mean(1) for xb in images.split(1024)]).numpy()

    probe = LogisticRegression(max_iter=2000).fit(feats(X[:5000]), y[:5000].numpy())
    probe_acc = float((probe.predict(feats(Xt)) == yt.numpy()).mean())
    return vit, {"linear_probe_acc": round(probe_acc, 4), "final_loss": round(hist.train_loss[-1], 4),
                 "epochs": epochs, "mask_ratio": mask_ratio, "train_seconds": round(hist.seconds, 1)}


NONTOPS = [1, 5, 7, 8, 9]   # the garment source's classes; notebook 01d's target is the other five (the tops)


def _source_data(task: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(train images, labels, test images, labels, classes) of one P29 source task (uint8 images)."""
    from cookbook.data import load_fashion_mnist, load_mnist10k, load_sklearn_digits

    if task == "fmnist-nontops":          # trouser, sandal, sneaker, bag, ankle boot -> 0..4
        (X, y), (Xt, yt) = load_fashion_mnist("train"), load_fashion_mnist("test")
        classes = torch.tensor(NONTOPS)
        keep, keep_t = torch.isin(y, classes), torch.isin(yt, classes)
        return (X[keep], torch.searchsorted(classes, y[keep]), Xt[keep_t], torch.searchsorted(classes, yt[keep_t]), 5)
    if task in ("mnist10k", "mnist-parity"):
        (X, y), (Xt, yt) = load_mnist10k("train"), load_mnist10k("test")
        return (X, y, Xt, yt, 10) if task == "mnist10k" else (X, y % 2, Xt, yt % 2, 2)
    if task == "sklearn-digits":
        (X, y), (Xt, yt) = load_sklearn_digits("train"), load_sklearn_digits("test")
        return X, y, Xt, yt, 10
    raise ValueError(f"unknown source task {task!r}")


def p29_source(seed: int = 0, *, task: str, epochs: int) -> tuple[torch.nn.Module, dict]:
    """SmallCNN(width=16) trained on one P29 source task (``_source_data``), random shifts (no flips:
    digits must not be mirrored), AdamW 3e-3 cosine, weight decay 5e-4, batch 128, last epoch kept.
    A source model of notebook 01d: its pooled stage-3 features (64-d) are what the target distils."""
    from cookbook.data import normalize_images
    from cookbook.data.augment import random_shift

    torch.manual_seed(seed)
    X, y, Xt, yt, classes = _source_data(task)
    stats = "fashion-mnist" if task.startswith("fmnist") else "mnist10k"
    X, Xt = normalize_images(X, stats), normalize_images(Xt, stats)
    model = SmallCNN(width=16, num_classes=classes)
    gen = torch.Generator().manual_seed(seed + 1)
    hist = fit(model, lambda m, xb, yb: F.cross_entropy(m(random_shift(xb, generator=gen)), yb), (X, y),
               epochs=epochs, lr=3e-3, weight_decay=5e-4, batch_size=128, seed=seed, progress=True, desc=f"source {task}")
    return model, {"test_acc": round(evaluate(model, Xt, yt), 4), "train_images": len(X), "classes": classes,
                   "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


SCENE_TRAIN = 6000      # composed scenes the segmentation teachers train on (cookbook.data.scenes)


def scenes_unet(seed: int = 0, *, label_assist: bool, epochs: int = 8) -> tuple[torch.nn.Module, dict]:
    """TinyUNet(width=16) on 6,000 composed scenes (``load_scenes("train")``), AdamW 3e-3 cosine,
    weight decay 1e-4, batch 64, last epoch kept.

    ``label_assist=False``: the plain teacher (image in, cross-entropy). ``label_assist=True``: LAD's
    teacher (arXiv 2407.13254): a second input channel carries the mask with every class replaced by
    a random N(0, 1) code per image plus N(0, 0.03) noise, times 100 (official values); two such
    encodings per batch, ``dual_path_loss`` (CE on both + 5 x symmetric CWD at T = 4). Its card
    reports test mIoU with the label channel (fixed codes, noise 0.02: the distillation setting) and
    with a zero channel (the teacher without its label)."""
    from cookbook.data.scenes import load_scenes, normalize_scenes
    from cookbook.losses.segmentation import dual_path_loss
    from cookbook.metrics import mean_iou
    from cookbook.models.segmentation import TinyUNet, label_assist_channel

    torch.manual_seed(seed)
    (X, M), (Xt, Mt) = load_scenes("train", SCENE_TRAIN), load_scenes("test")
    X, Xt = normalize_scenes(X), normalize_scenes(Xt)
    model = TinyUNet(width=16, in_channels=2 if label_assist else 1)
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m, xb, mb):
        if not label_assist:
            return F.cross_entropy(m(xb), mb)
        za = m(torch.cat([xb, label_assist_channel(mb, generator=gen)], 1))
        zb = m(torch.cat([xb, label_assist_channel(mb, generator=gen)], 1))
        return dual_path_loss(za, zb, mb)

    hist = fit(model, loss_fn, (X, M), epochs=epochs, lr=3e-3, weight_decay=1e-4, batch_size=64, seed=seed,
               progress=True, desc="scenes-unet" + ("-lad" if label_assist else ""))

    def miou(codes):
        inputs = Xt if codes is None else torch.cat([Xt, label_assist_channel(Mt, codes=codes, noise=0.02, generator=gen)], 1)
        return round(mean_iou(predict(model, inputs, batch_size=256).argmax(1), Mt, 21), 4)

    metrics = {"test_miou": miou("fixed") if label_assist else miou(None)}
    if label_assist:
        metrics["test_miou_zero_label"] = miou("zero")
    return model, {**metrics, "train_scenes": SCENE_TRAIN, "epochs": epochs, "train_seconds": round(hist.seconds, 1)}


def _small_vit() -> torch.nn.Module:
    from cookbook.models.vision import small_vit

    return small_vit()


def _tiny_unet(in_channels: int) -> torch.nn.Module:
    from cookbook.models.segmentation import TinyUNet

    return TinyUNet(width=16, in_channels=in_channels)


def _load_committed(name: str) -> torch.nn.Module:
    """A committed teacher of ``SPECS``, sha256-checked and frozen (what ``registry.load`` does; the
    registry imports this module, so a recipe that needs another teacher reads it here)."""
    from safetensors.torch import load_file

    from cookbook import assets

    spec = SPECS[name]
    model = spec.architecture()
    model.load_state_dict(load_file(str(assets.asset(spec.asset))))
    return model.eval().requires_grad_(False)


DIFFUSION_SIZE, DIFFUSION_CHANNELS = 16, (16, 32, 32)   # the 07b teacher: 16 x 16 Fashion-MNIST


def fmnist_diffusion(seed: int = 0, steps: int = 3500, batch_size: int = 128, lr: float = 2e-3,
                     ema: float = 0.999, eval_samples: int = 1000) -> tuple[torch.nn.Module, dict]:
    """Class-conditional diffusion teacher of notebook 07b: diffusers ``UNet2DModel`` (16-32-32
    channels, no attention, 0.26M params) on Fashion-MNIST train (55k, all labels) resized to
    16 x 16 in [-1, 1]. DDPM cosine schedule (diffusers ``DDPMScheduler``, squaredcos_cap_v2),
    v-prediction (= TrigFlow F, ``cookbook.models.diffusion``), uniform timesteps, AdamW ``lr`` with
    100 warm-up steps and cosine decay, ``steps`` x ``batch_size``; the EMA (``ema``) weights are kept.
    Card metrics: Frechet distance on ``fmnist-cnn`` features and that classifier's accuracy on
    ``eval_samples`` class-balanced samples (DPM-Solver++, 20 steps) against as many test images."""
    import copy

    from cookbook.data import load_fashion_mnist
    from cookbook.metrics import ClassifierFeatures, frechet_distance
    from cookbook.models.diffusion import (
        TrigFlowNet,
        make_scheduler,
        scheduler_sample,
        timestep_angle,
        to_diffusion_images,
    )
    from cookbook.train import Stepper

    torch.manual_seed(seed)
    X, y = load_fashion_mnist("train")
    X = to_diffusion_images(X, DIFFUSION_SIZE)
    net = TrigFlowNet(fmnist_unet(DIFFUSION_SIZE, DIFFUSION_CHANNELS), unet=True)
    ema_net = copy.deepcopy(net).requires_grad_(False)
    sched = make_scheduler("ddpm")
    stepper = Stepper(net.parameters(), total=steps, lr=lr, weight_decay=0.0, warmup=100, progress=True,
                      desc="fmnist-diffusion")
    gen = torch.Generator().manual_seed(seed + 1)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, len(X), (batch_size,), generator=gen)
        x0, yb = X[idx], y[idx]
        z = torch.randn(x0.shape, generator=gen)
        ts = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), generator=gen)
        x_t = sched.add_noise(x0, z, ts)
        loss = F.mse_loss(net(x_t, timestep_angle(sched, ts), yb), sched.get_velocity(x0, z, ts))
        losses.append(stepper.step(loss, f"step {step}"))
        with torch.no_grad():
            for pe, p in zip(ema_net.parameters(), net.parameters()):
                pe.lerp_(p, 1 - ema)
    stepper.close()
    ema_net.eval()
    Xt, yt = load_fashion_mnist("test")
    real = to_diffusion_images(Xt[:eval_samples], DIFFUSION_SIZE)
    labels = torch.arange(eval_samples) % 10
    fake = scheduler_sample(ema_net, (eval_samples, 1, DIFFUSION_SIZE, DIFFUSION_SIZE), 20, y=labels, kind="dpm",
                            generator=torch.Generator().manual_seed(seed + 2))
    feats = ClassifierFeatures(_load_committed("fmnist-cnn"))
    return ema_net.net, {
        "fd_fmnist_cnn": round(frechet_distance(real, fake, feats), 3),
        "sample_class_acc": round(accuracy(feats.logits(fake), labels), 4),
        "real_test_class_acc_16px": round(accuracy(feats.logits(real), yt[:eval_samples]), 4),
        "eval": f"{eval_samples} samples (DPM-Solver++ 20 steps, classes balanced) vs {eval_samples} test images; "
                "Frechet distance on fmnist-cnn pooled features (not Inception FID)",
        "train_loss_last100": round(sum(losses[-100:]) / 100, 4), "steps": steps, "batch_size": batch_size,
        "data": "Fashion-MNIST train 55k, all labels, 16x16",
    }


# name -> spec of every committed teacher (weights and card in assets/teachers/)
SPECS: dict[str, TeacherSpec] = {spec.name: spec for spec in (
    TeacherSpec(
        name="fmnist-cnn",
        architecture=lambda: SmallCNN(width=32),
        recipe=fmnist_cnn,
        metric="test_acc",
        description="SmallCNN(width=32), 0.19M params, Fashion-MNIST 55k train (all 55,000 labels), shift+flip, 12 epochs AdamW",
        labels="all 55,000 Fashion-MNIST training labels",
    ),
    TeacherSpec(
        name="fmnist-cnn-1k",
        architecture=lambda: SmallCNN(width=32),
        recipe=functools.partial(fmnist_cnn_labelled, n_labelled=1000, subset_seed=0, epochs=100),
        metric="test_acc",
        description="SmallCNN(width=32), 0.19M params, trained on the 1,000 labelled Fashion-MNIST images of "
                    "notebook 00's label-scarce regimes only (balanced_subset seed 0), shift+flip, 100 epochs AdamW",
        labels="only the 1,000 of balanced_subset(y_train, 1000, seed=0)",
    ),
    TeacherSpec(
        name="fmnist-cnn-550",
        architecture=lambda: SmallCNN(width=32),
        recipe=functools.partial(fmnist_cnn_labelled, n_labelled=550, subset_seed=1, epochs=150),
        metric="test_acc",
        description="SmallCNN(width=32), 0.19M params, trained on the 550 labelled Fashion-MNIST images of "
                    "notebook 01a's DHO 1% regime only (balanced_subset seed 1), shift+flip, 150 epochs AdamW",
        labels="only the 550 of balanced_subset(y_train, 550, seed=1)",
    ),
    TeacherSpec(
        name="fmnist-cnn-5500",
        architecture=lambda: SmallCNN(width=32),
        recipe=functools.partial(fmnist_cnn_labelled, n_labelled=5500, subset_seed=1, epochs=30),
        metric="test_acc",
        description="SmallCNN(width=32), 0.19M params, trained on the 5,500 labelled Fashion-MNIST images of "
                    "notebook 01a's DHO 10% regime only (balanced_subset seed 1), shift+flip, 30 epochs AdamW",
        labels="only the 5,500 of balanced_subset(y_train, 5500, seed=1)",
    ),
    TeacherSpec(
        name="fmnist-resnet",
        architecture=lambda: TinyResNet(width=16),
        recipe=fmnist_resnet,
        metric="test_acc",
        description="TinyResNet(width=16), residual blocks + global average pool, Fashion-MNIST 55k, shift+flip, 8 epochs AdamW",
        labels="all 55,000 Fashion-MNIST training labels",
    ),
    TeacherSpec(
        name="fmnist-mlp",
        architecture=lambda: MLP(hidden=(256, 256)),
        recipe=fmnist_mlp,
        metric="test_acc",
        description="MLP 784-256-256-10, Fashion-MNIST 55k, no augmentation, 15 epochs AdamW",
        labels="all 55,000 Fashion-MNIST training labels",
    ),
    TeacherSpec(
        name="fmnist-lt-cnn",
        architecture=lambda: SmallCNN(width=16),
        recipe=fmnist_lt_cnn,
        metric="test_acc",
        description="SmallCNN(width=16), 64k params, long-tailed Fashion-MNIST (2,478 images, imbalance 100), "
                    "SAM + DRW, 30 epochs AdamW; DeiT-LT's flat CNN teacher (notebook 01b)",
        labels="the 2,478 labels of the long-tailed Fashion-MNIST training set (notebook 01b)",
    ),
    TeacherSpec(
        name="fmnist-mae-vit",
        architecture=mae_vit,
        recipe=fmnist_mae_vit,
        metric="val_knn_acc",
        description="ViT (7x7 patches, width 128, 4 blocks, 0.54M params), MAE pre-training on the 55k "
                    "Fashion-MNIST training images, NO labels (75% masking, 16 epochs); DMAE's pre-trained "
                    "teacher (notebook 01b)",
        labels="no labels (self-supervised MAE on the 55,000 training images; labels read only by the card's k-NN check)",
    ),
    TeacherSpec(
        name="fmnist-mae-vit-ft",
        architecture=mae_vit,
        recipe=fmnist_mae_vit_ft,
        metric="test_acc",
        description="fmnist-mae-vit fine-tuned on all 55,000 Fashion-MNIST training labels (3 epochs AdamW); "
                    "DMAE's fine-tuned teacher (notebook 01b)",
        labels="all 55,000 Fashion-MNIST training labels (fine-tuning; the pre-training saw none)",
    ),
    TeacherSpec(
        name="fmnist-vit",
        architecture=lambda: _small_vit(),
        recipe=fmnist_vit,
        metric="test_acc",
        description="small_vit() (d 64, 4 blocks, MLP 256), 0.2M params, Fashion-MNIST 55k, shift+flip, 15 epochs AdamW; "
                    "the dense ViT of ACM and Hybrid Distill's supervised teacher (notebook 01c)",
        labels="all 55,000 Fashion-MNIST training labels",
    ),
    TeacherSpec(
        name="fmnist-mim-vit",
        architecture=lambda: _small_vit(),
        recipe=fmnist_mim_vit,
        metric="linear_probe_acc",
        description="small_vit() encoder pre-trained as a masked autoencoder (75% masking, 30 epochs) on the 55k "
                    "Fashion-MNIST training images; Hybrid Distill's MIM teacher (notebook 01c)",
        labels="no labels (self-supervised MAE on the 55,000 training images; 5,000 labels fit only the card's linear probe)",
    ),
    TeacherSpec(
        name="src-fmnist-nontops",
        architecture=lambda: SmallCNN(width=16, num_classes=5),
        recipe=functools.partial(p29_source, task="fmnist-nontops", epochs=4),
        metric="test_acc",
        description="SmallCNN(width=16) on Fashion-MNIST classes 1, 5, 7, 8, 9 only (trouser, sandal, sneaker, bag, "
                    "ankle boot); a P29 source model (notebook 01d)",
        labels="the Fashion-MNIST training labels of classes 1, 5, 7, 8, 9; none of the tops (0, 2, 3, 4, 6)",
    ),
    TeacherSpec(
        name="src-mnist10k",
        architecture=lambda: SmallCNN(width=16, num_classes=10),
        recipe=functools.partial(p29_source, task="mnist10k", epochs=6),
        metric="test_acc",
        description="SmallCNN(width=16) on the MNIST 10k 'train' digits; a P29 source model (notebook 01d)",
        labels="the 7,996 MNIST 10k 'train' digit labels; no Fashion-MNIST label",
    ),
    TeacherSpec(
        name="src-sklearn-digits",
        architecture=lambda: SmallCNN(width=16, num_classes=10),
        recipe=functools.partial(p29_source, task="sklearn-digits", epochs=20),
        metric="test_acc",
        description="SmallCNN(width=16) on scikit-learn's 8 x 8 digits upsampled to 28 x 28; a P29 source model (notebook 01d)",
        labels="the 1,433 scikit-learn digits 'train' labels; no Fashion-MNIST label",
    ),
    TeacherSpec(
        name="src-mnist-parity",
        architecture=lambda: SmallCNN(width=16, num_classes=2),
        recipe=functools.partial(p29_source, task="mnist-parity", epochs=4),
        metric="test_acc",
        description="SmallCNN(width=16) on MNIST 10k 'train', even vs odd digit; a P29 source model (notebook 01d)",
        labels="the parity (even / odd) of the 7,996 MNIST 10k 'train' digits; no Fashion-MNIST label",
    ),
    TeacherSpec(
        name="scenes-unet",
        architecture=lambda: _tiny_unet(1),
        recipe=functools.partial(scenes_unet, label_assist=False),
        metric="test_miou",
        description="TinyUNet(width=16), 0.12M params, on 6,000 composed garment + digit scenes, 8 epochs; "
                    "LAD's baseline teacher without the label input (notebook 01d)",
        labels="the per-pixel masks of the 6,000 composed training scenes (built from Fashion-MNIST train and MNIST 10k train labels)",
    ),
    TeacherSpec(
        name="scenes-unet-lad",
        architecture=lambda: _tiny_unet(2),
        recipe=functools.partial(scenes_unet, label_assist=True),
        metric="test_miou",
        description="TinyUNet(width=16) with a second input channel for the noisy encoded mask, dual-path consistency "
                    "training (LAD, arXiv 2407.13254) on the same 6,000 scenes, 8 epochs (notebook 01d)",
        labels="the per-pixel masks of the 6,000 composed training scenes, also as an input channel (noised, class codes "
               "randomised per image)",
    ),
    TeacherSpec(
        name="fmnist-diffusion",
        architecture=lambda: fmnist_unet(DIFFUSION_SIZE, DIFFUSION_CHANNELS),
        recipe=fmnist_diffusion,
        metric="fd_fmnist_cnn",
        description="diffusers UNet2DModel (16-32-32, no attention, 0.26M params), class-conditional, "
                    "Fashion-MNIST 55k at 16x16, cosine schedule, v-prediction (TrigFlow), 3500 x 128 steps, EMA",
        labels="all 55,000 Fashion-MNIST training labels (as class conditions)",
    ),
)} | {name: TeacherSpec(
    name=name,
    architecture=arch,
    recipe=lambda seed, name=name: fmnist_pool_teacher(name, seed),
    metric="test_acc",
    description=f"{desc}, BatchNorm, trained on the 10k class-balanced Fashion-MNIST "
                "pool of notebooks 03a/03c only (all 10k labels), shift+flip, 20 epochs AdamW; a committee member of 03c",
    labels="the 10,000 labels of the class-balanced Fashion-MNIST pool of notebooks 03a/03c",
) for (name, arch), desc in zip(POOL_TEACHERS.items(), ("ConvNet-3 width 16", "ConvNet-4 width 16",
                                                          "TinyResNet width 16", "PlainCNN 8-16-32"))}
