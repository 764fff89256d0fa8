"""Segmentation distillation losses (notebook 01d, P55 LAD): channel-wise distillation, dual-path training.

Logits are per pixel, (B, C, H, W); masks are int64 (B, H, W) class ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.checks import check_finite_param, check_labels, check_pair, check_temperature


def cwd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, T: float = 4.0) -> torch.Tensor:
    """Channel-wise distillation: each class channel, as a distribution over pixels, matches the teacher's.

        L_cwd = T^2 / (B C) * sum_{b, c} KL( softmax_{hw}(t_bc / T) || softmax_{hw}(s_bc / T) )

    student_logits, teacher_logits (B, C, H, W) -> scalar >= 0; T > 0 (4 in the LAD code).
    Paper: Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021,
    arXiv 2011.13256; the distillation loss of LAD's official code (``CriterionCWD``).
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    if student_logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, H, W), got {tuple(student_logits.shape)}")
    s = F.log_softmax(student_logits.flatten(2) / T, -1)                        # (B, C, HW)
    t = F.log_softmax(teacher_logits.detach().flatten(2) / T, -1)
    return (t.exp() * (t - s)).sum(-1).mean() * T * T


def dual_path_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, masks: torch.Tensor, *,
                   consistency: float = 5.0, T: float = 4.0) -> torch.Tensor:
    """LAD's teacher objective: both paths (two independent noisy label encodings) fit the masks
    and agree with each other.

        L = CE(z_a, y) + CE(z_b, y) + consistency * ( CWD(z_a, sg(z_b)) + CWD(z_b, sg(z_a)) )

    sg = stop-gradient (``cwd_loss`` detaches its teacher argument). logits_a, logits_b (B, C, H, W),
    masks int64 (B, H, W); consistency >= 0 (5 in the official code), T > 0 (4).
    Paper: Qiu et al., "Make a Strong Teacher with Label Assistance: A Novel Knowledge Distillation
    Approach for Semantic Segmentation", ECCV 2024, arXiv 2407.13254 (official code
    github.com/skyshoumeng/Label_Assisted_Distillation, ``train_baseline.py``).
    """
    check_finite_param("consistency", consistency, 0.0)
    check_pair(logits_a, logits_b)
    check_labels(masks, logits_a.shape[1], shape=(logits_a.shape[0], *logits_a.shape[2:]), name="masks")
    ce = F.cross_entropy(logits_a, masks) + F.cross_entropy(logits_b, masks)
    if consistency == 0:
        return ce
    return ce + consistency * (cwd_loss(logits_a, logits_b, T=T) + cwd_loss(logits_b, logits_a, T=T))
