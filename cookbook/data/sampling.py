"""Class-aware subsets: balanced labelled subsets, long-tailed subsets (the CIFAR-LT recipe), and
class-balanced weights.

The exponential profile of Cui et al. (CVPR 2019) and Cao et al. (LDAM-DRW, NeurIPS 2019): class c
keeps n_c = floor(n_max * rho^(-c / (C - 1))) images, so the head class has n_max and the tail class
n_max / rho, rho being the imbalance ratio. DeiT-LT (arXiv 2404.02900) trains on such sets.
"""

from __future__ import annotations

import torch


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """Indices of ``n`` examples, ``n // C`` of every class, drawn once with a fixed seed.

    The labelled subset of a label-scarce regime ("1k labels": 100 per class). Indices are grouped
    by class (class 0 first), in random order within a class.
    """
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    per_class = n // num_classes
    if per_class < 1:
        raise ValueError(f"n={n} is fewer than one example for each of the {num_classes} classes")
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(num_classes):
        pool = (labels == c).nonzero()[:, 0]
        if len(pool) < per_class:
            raise ValueError(f"class {c} has {len(pool)} examples, {per_class} requested")
        keep.append(pool[torch.randperm(len(pool), generator=g)[:per_class]])
    return torch.cat(keep)


def long_tailed_counts(n_max: int, imbalance: float, num_classes: int = 10) -> list[int]:
    """Per-class counts n_c = floor(n_max * imbalance^(-c / (C - 1))), c = 0..C-1 (head first)."""
    if n_max < 1 or imbalance < 1 or num_classes < 2:
        raise ValueError(f"need n_max >= 1, imbalance >= 1 and num_classes >= 2, "
                         f"got {n_max}, {imbalance}, {num_classes}")
    return [max(1, int(n_max * imbalance ** (-c / (num_classes - 1)))) for c in range(num_classes)]


def long_tailed_indices(y: torch.Tensor, counts: list[int], seed: int = 0) -> torch.Tensor:
    """Indices into ``y`` keeping ``counts[c]`` random images of class c (sorted, deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c, n in enumerate(counts):
        pool = (y == c).nonzero().flatten()
        if len(pool) < n:
            raise ValueError(f"class {c} has {len(pool)} images, {n} requested")
        keep.append(pool[torch.randperm(len(pool), generator=gen)[:n]])
    return torch.cat(keep).sort().values


def class_balanced_weights(counts: list[int] | torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced loss weights w_c = (1 - beta) / (1 - beta^{n_c}), rescaled to mean 1.

    The "effective number of samples" weights of Cui et al. (CVPR 2019, arXiv 1901.05555); DRW
    (deferred re-weighting, Cao et al., arXiv 1906.07413) switches them on late in training.
    beta -> 1 gives inverse-frequency weights; beta = 0 gives uniform weights.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    n = torch.as_tensor(counts, dtype=torch.float64)
    if (n <= 0).any():
        raise ValueError("every class needs a positive count")
    w = (1 - beta) / (1 - beta ** n)
    return (w / w.mean()).float()
