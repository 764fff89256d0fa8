"""Exercise checks of notebook 00 (quickstart: Hinton KD)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check, logit_cases


def check_soft_targets(fn: Callable) -> bool | None:
    """Exercise: ``fn(logits, T)`` -> temperature softmax (B, C)."""
    from cookbook.losses import soft_targets
    cases = [(s, T) for (s, _), T in zip(logit_cases(), (1.0, 4.0, 0.5))]
    return check("soft_targets", fn, soft_targets, cases)


def check_kd_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, T)`` -> T^2-scaled batch-mean KL (scalar)."""
    from cookbook.losses import kd_loss
    cases = [(s, t, T) for (s, t), T in zip(logit_cases(1), (1.0, 4.0, 2.0))]
    return check("kd_loss", fn, lambda s, t, T: kd_loss(s, t, T=T), cases)


def check_semi_supervised_kd(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, T, alpha)`` where labels == -100 marks
    unlabelled images: alpha * KD on every image + (1 - alpha) * CE averaged over labelled ones."""
    from cookbook.losses import kd_loss
    g = torch.Generator().manual_seed(2)
    cases = []
    for (s, t), alpha in zip(logit_cases(2), (0.5, 0.9, 0.1)):
        labels = torch.randint(0, s.shape[1], (s.shape[0],), generator=g)
        labels[torch.rand(s.shape[0], generator=g) < 0.5] = -100
        cases.append((s, t, labels, 2.0, alpha))
    return check("semi_supervised_kd", fn,
                 lambda s, t, y, T, a: kd_loss(s, t, T=T, labels=y, alpha=a), cases)
