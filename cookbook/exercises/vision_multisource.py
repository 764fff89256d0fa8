"""Exercise checks of notebook 01d (several sources P29, label-assisted teachers P55, a shifted pool P64)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def check_ncc_loo_accuracy(fn: Callable) -> bool | None:
    """Exercise: ``fn(feats, labels)`` -> leave-one-out nearest-centroid accuracy (cosine), a float."""
    from cookbook.methods.vision import ncc_loo_accuracy

    g = torch.Generator().manual_seed(0)
    cases = []
    for n_cls, per, d, spread in ((3, 4, 8, 0.5), (5, 3, 16, 2.0), (2, 6, 4, 1.0)):
        centres = torch.randn(n_cls, d, generator=g)
        labels = torch.arange(n_cls).repeat_interleave(per)
        cases.append((centres[labels] + spread * torch.randn(len(labels), d, generator=g), labels))
    return check("ncc_loo_accuracy", lambda f, y: torch.as_tensor(float(fn(f, y))),
                 lambda f, y: torch.as_tensor(ncc_loo_accuracy(f, y)), cases)


def check_source_weights(fn: Callable) -> bool | None:
    """Exercise: ``fn(scores, tau)`` -> DistillWeighted's weights (S,): softmax(scores / tau), one-hot at tau = 0."""
    from cookbook.methods.vision import source_weights

    cases = [(torch.tensor([0.3, 0.9, 0.5, 0.4]), tau) for tau in (0.0, 0.05, 1.0)]
    return check("source_weights", fn, source_weights, cases)


def check_cwd_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, T)`` -> channel-wise distillation (B, C, H, W) -> scalar."""
    from cookbook.losses import cwd_loss

    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(*shape, generator=g) * s, torch.randn(*shape, generator=g) * s, T)
             for shape, s, T in (((2, 3, 4, 5), 1.0, 4.0), ((1, 21, 8, 14), 3.0, 1.0), ((3, 2, 2, 2), 0.5, 2.0))]
    return check("cwd_loss", fn, lambda s, t, T: cwd_loss(s, t, T=T), cases)


def check_kd3_weights(fn: Callable) -> bool | None:
    """Exercise: ``fn(teacher_logits, student_logits, progress, threshold)`` -> KD3's instance weights (B,)."""
    from cookbook.methods.vision import kd3_instance_weights

    g = torch.Generator().manual_seed(3)
    cases = [(torch.randn(6, 10, generator=g) * s, torch.randn(6, 10, generator=g) * s, p, th)
             for s, p, th in ((3.0, 0.0, 0.5), (3.0, 1.0, 0.5), (1.0, 0.5, 0.2))]
    return check("kd3_weights", fn, kd3_instance_weights, cases)


def check_mix_distribution(fn: Callable) -> bool | None:
    """Exercise: ``fn(h, perm, lam)`` -> MixDistribution: per-instance channel mean/std mixed with perm's."""
    from cookbook.data.augment import mix_distribution

    g = torch.Generator().manual_seed(4)
    cases = []
    for B, C, H in ((4, 3, 5), (2, 8, 7), (3, 1, 4)):
        cases.append((torch.randn(B, C, H, H, generator=g) * 2 + 1, torch.randperm(B, generator=g), torch.rand(B, generator=g)))
    return check("mix_distribution", fn, mix_distribution, cases, atol=1e-4)
