"""Exercise checks of notebook 01b (vision KD into transformers: DeiT, OFA, DeiT-LT, DMAE)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check, logit_cases


def check_two_heads(fn: Callable) -> bool | None:
    """Exercise: ``fn(model, x)`` -> (CLS logits, DIST logits) of a timm DeiT model."""
    from cookbook.models import cls_dist_logits, tiny_vit

    torch.manual_seed(0)
    model = tiny_vit(distilled=True).eval()
    x = torch.randn(3, 1, 28, 28)
    return check("two_heads", lambda m, xb: torch.stack(fn(m, xb)),
                 lambda m, xb: torch.stack(cls_dist_logits(m, xb)), [(model, x)])


def check_ofa_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, gamma)`` -> OFA loss (T = 1, batch mean)."""
    from cookbook.losses import ofa_loss

    g = torch.Generator().manual_seed(1)
    cases = [(s, t, torch.randint(0, s.shape[1], (s.shape[0],), generator=g), gamma)
             for (s, t), gamma in zip(logit_cases(), (1.0, 1.5, 3.0))]
    return check("ofa_loss", fn, lambda s, t, y, gamma: ofa_loss(s, t, y, gamma=gamma), cases)


def check_lt_weights(fn: Callable) -> bool | None:
    """Exercise: ``fn(n_max, imbalance, beta)`` -> (counts, class-balanced weights with mean 1)."""
    from cookbook.data import class_balanced_weights, long_tailed_counts

    def reference(n_max, imbalance, beta):
        counts = long_tailed_counts(n_max, imbalance)
        return counts, class_balanced_weights(counts, beta)

    def flat(f):
        return lambda *a: torch.cat([torch.as_tensor(a_, dtype=torch.float32) for a_ in f(*a)])
    return check("lt_weights", flat(fn), flat(reference), [(1000, 100, 0.999), (500, 10, 0.99), (5000, 50, 0.9999)])


def check_visible_feature_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_feats, teacher_tokens, keep)`` -> DMAE's visible-patch L1 loss."""
    from cookbook.losses import visible_feature_loss
    from cookbook.models import random_keep

    g = torch.Generator().manual_seed(2)
    cases = []
    for b, n, d, ratio in ((4, 16, 8, 0.75), (2, 49, 5, 0.9), (3, 16, 64, 0.95)):
        keep = random_keep(b, n, ratio, generator=g)
        cases.append((torch.randn(b, keep.shape[1], d, generator=g), torch.randn(b, n, d, generator=g) * 3, keep))
    return check("visible_feature_loss", fn, visible_feature_loss, cases)
