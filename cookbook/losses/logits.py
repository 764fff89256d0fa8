"""Logit-based distillation losses (vision KD family, notebooks 00 and 01)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.losses._checks import (
    check_pair,
    check_reduction,
    check_temperature,
    check_unit_interval,
)


def soft_targets(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Temperature-softened class probabilities  p_i = exp(z_i / T) / sum_j exp(z_j / T).

    logits (B, C) -> probabilities (B, C). Larger T spreads mass onto the non-target classes
    ("dark knowledge"); T = 1 is the ordinary softmax.
    """
    check_temperature(T)
    return F.softmax(logits / T, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, T: float = 4.0,
            labels: torch.Tensor | None = None, alpha: float = 1.0, ignore_index: int = -100,
            reduction: str = "mean") -> torch.Tensor:
    """Hinton knowledge distillation.

        L = alpha * T^2 * KL(p_T(t) || p_T(s)) + (1 - alpha) * CE(s, y)

    where p_T(z) = softmax(z / T). The T^2 factor keeps the soft term's gradient on the same scale
    as the hard term's when T changes (its gradient w.r.t. the logits scales as 1/T^2 otherwise).

    student_logits, teacher_logits: (B, C). labels: (B,) int64, optional; entries equal to
    ``ignore_index`` are unlabelled (semi-supervised batches): they get only the KD term, and the
    CE term averages over the labelled entries (0 if there are none).
    alpha: weight of the KD term in [0, 1]; alpha < 1 needs labels.
    reduction: "mean" = mean over the batch of the per-sample KL summed over classes (PyTorch's
    ``batchmean``; note ``F.kl_div(reduction="mean")`` would also divide by C), or "none" (B,).

    Paper: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015, arXiv 1503.02531.
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    check_unit_interval(alpha, "alpha")
    check_reduction(reduction)
    if student_logits.dim() != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(student_logits.shape)}")
    if alpha < 1 and labels is None:
        raise ValueError("alpha < 1 mixes in cross-entropy on labels: pass labels=")

    log_p_s = F.log_softmax(student_logits / T, dim=-1)                     # (B, C)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)            # (B, C)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * T**2               # (B,)
    if alpha == 1:
        return kl.mean() if reduction == "mean" else kl

    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must have shape ({student_logits.shape[0]},), got {tuple(labels.shape)}")
    ce = F.cross_entropy(student_logits, labels, ignore_index=ignore_index, reduction="none")  # (B,)
    labelled = labels != ignore_index
    if reduction == "none":
        return alpha * kl + (1 - alpha) * ce * labelled
    ce_mean = ce.sum() / labelled.sum().clamp(min=1)
    return alpha * kl.mean() + (1 - alpha) * ce_mean
