"""Exercise checks of notebook 01a (vision KD with logits: PLD, DKD, DHO, DisWOT)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check, labelled_logit_cases, logit_cases


def check_pld_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels)`` -> PLD's batch-mean list-wise loss."""
    from cookbook.losses import pld_loss
    return check("pld_loss", fn, lambda s, t, y: pld_loss(s, t, y), labelled_logit_cases(), atol=1e-4)


def check_tckd_nckd(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, T)`` -> (TCKD, NCKD) batch means, no T^2."""
    from cookbook.losses import dkd_loss

    def reference(s, t, y, T):
        return torch.stack([dkd_loss(s, t, y, alpha=1.0, beta=0.0, T=T) / T**2,
                            dkd_loss(s, t, y, alpha=0.0, beta=1.0, T=T) / T**2])
    def as_pair(*args):
        out = fn(*args)
        return None if out is None else torch.stack([torch.as_tensor(v) for v in out])

    cases = [(s, t, y, T) for (s, t, y), T in zip(labelled_logit_cases(6), (1.0, 4.0, 2.0))]
    return check("tckd_nckd", as_pair, reference, cases)


def check_dual_head_probs(fn: Callable) -> bool | None:
    """Exercise: ``fn(ce_logits, kd_logits, alpha, beta)`` -> (1-alpha) softmax(ce) + alpha softmax(kd / beta)."""
    from cookbook.losses import dual_head_probs
    cases = [(s, t, a, b) for (s, t), a, b in zip(logit_cases(7), (0.0, 0.35, 1.0), (1.0, 2.0, 0.5))]
    return check("dual_head_probs", fn, lambda s, t, a, b: dual_head_probs(s, t, alpha=a, beta=b), cases)


def check_relation_gram(fn: Callable) -> bool | None:
    """Exercise: ``fn(feats)`` -> DisWOT's (B, B) sample-relation matrix (normalised rows, Frobenius-normalised)."""
    from cookbook.methods.vision import relation_gram
    g = torch.Generator().manual_seed(8)
    cases = [(torch.randn(*shape, generator=g),) for shape in ((4, 8, 7, 7), (9, 16), (2, 3, 5, 5))]
    return check("relation_gram", fn, relation_gram, cases)


def check_nckd_weight(fn: Callable) -> bool | None:
    """Exercise: ``fn(teacher_logits, labels, T)`` -> (B,) the weight 1 - p^t_y(T) that plain KD puts
    on its non-target term (DKD's decomposition: KD = TCKD + (1 - p^t_y) NCKD)."""
    import torch.nn.functional as F

    def reference(t, y, T):
        return 1 - F.softmax(t / T, -1).gather(1, y[:, None])[:, 0]

    cases = [(t, y, T) for (_, t, y), T in zip(labelled_logit_cases(8), (1.0, 4.0, 0.5))]
    return check("nckd_weight", fn, reference, cases)
