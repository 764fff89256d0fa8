"""Exercise checks of notebook 00 (quickstart: Hinton KD)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def measured_gradient_exponent(T_low: float = 10.0, T_high: float = 20.0) -> float:
    """The k in |d KL(p_T(t) || p_T(s)) / d s| ~ T^k, measured between two large temperatures on fixed
    logits, for the soft term WITHOUT Hinton's T^2 factor (the reason the factor is there)."""
    norms = []
    for T in (T_low, T_high):
        s, t = (c.clone() for c in logit_cases(3)[0])
        s.requires_grad_(True)
        kl = (F.softmax(t / T, -1) * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean()
        (grad,) = torch.autograd.grad(kl, s)
        norms.append(grad.norm())
    return float(torch.log(norms[1] / norms[0]) / math.log(T_high / T_low))


def check_gradient_exponent(fn: Callable) -> bool | None:
    """Predict exercise: ``fn()`` returns the exponent k of |gradient of the soft term| ~ T^k at large T
    (no T^2 factor); the check measures it on fixed logits (tolerance 0.2)."""
    return check("gradient_exponent", fn, measured_gradient_exponent, [()], atol=0.2)
