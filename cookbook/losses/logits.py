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


def ofa_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
             gamma: float = 1.0, T: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """OFA-KD loss with adaptive target enhancement (one-for-all KD between heterogeneous models).

        L = -((1 + p^t_y)^gamma - 1) log p^s_y  -  sum_{c != y} (p^t_c)^gamma log p^s_c

    with p = softmax(z / T) and y the label. gamma = 1 is the cross-entropy with the teacher's
    probabilities; gamma > 1 moves weight onto the target class, more so where the teacher is
    unsure of it (the factor (1 + p)^gamma - 1 shrinks more slowly than p^gamma as p falls). This is the
    form of the authors' code (Hao840/OFAKD, ``ofa_loss``); the paper's Eq. writes the target weight
    as (1 + p^t_y)^gamma, i.e. without the "- 1" (an extra gamma-free cross-entropy on the label).

    student_logits, teacher_logits: (B, C); labels: (B,) int64. reduction: "mean" over the batch or "none" (B,).
    Paper: Hao et al., "One-for-All: Bridge the Gap Between Heterogeneous Architectures in Knowledge
    Distillation", NeurIPS 2023, arXiv 2310.19444.
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    check_reduction(reduction)
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0 (1 = plain soft cross-entropy), got {gamma}")
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must have shape ({student_logits.shape[0]},), got {tuple(labels.shape)}")
    p_t = F.softmax(teacher_logits.detach() / T, dim=-1)                      # (B, C)
    target = F.one_hot(labels, p_t.shape[-1]).to(p_t)                         # (B, C)
    weight = (p_t + target) ** gamma - target                                 # (B, C)
    loss = -(weight * F.log_softmax(student_logits / T, dim=-1)).sum(-1)      # (B,)
    return loss.mean() if reduction == "mean" else loss


def hard_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                           class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """DeiT's hard distillation: cross-entropy against the teacher's arg-max label y_t = argmax z^t.

        L = sum_i w_{y_t,i} CE(z^s_i, y_t,i) / sum_i w_{y_t,i}

    class_weights (C,): optional per-class weights of the teacher's label (DeiT-LT re-weights tail
    classes with DRW: class-balanced weights switched on late in training); None = plain mean.
    student_logits, teacher_logits: (B, C) -> scalar.
    Papers: Touvron et al., "Training data-efficient image transformers & distillation through
    attention", ICML 2021, arXiv 2012.12877; Rangwani et al., "DeiT-LT: Distillation Strikes Back for
    Vision Transformer Training on Long-Tailed Datasets", CVPR 2024, arXiv 2404.02900.
    """
    check_pair(student_logits, teacher_logits)
    if class_weights is not None and class_weights.shape != student_logits.shape[-1:]:
        raise ValueError(f"class_weights must have shape ({student_logits.shape[-1]},), "
                         f"got {tuple(class_weights.shape)}")
    return F.cross_entropy(student_logits, teacher_logits.argmax(-1), weight=class_weights)
