"""Distillation across tasks and distributions (notebook 01d): several source models (P29), a shifted pool (P64).

P29 DistillWeighted / DistillNearest: a small target model learns from the features and
pseudo-labels of source models trained on other tasks, each weighted by its similarity to the
target task. P64 KD3: a student learns from a teacher on a shifted substitute pool, with weighted
instances, feature and classifier alignment, and a contrastive term on MixDistribution views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.checks import (
    check_finite_param,
    check_pair,
    check_temperature,
    check_tensor,
    check_values,
)


def _check_weights(weights: torch.Tensor, n: int, name: str = "weights") -> None:
    check_tensor(name, weights, ndim=1)
    if len(weights) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(weights)}")
    check_values(name, weights)
    if bool((weights < 0).any()):
        raise ValueError(f"{name} must be >= 0")


def multi_source_distill_loss(student_feats: list[torch.Tensor], source_feats: list[torch.Tensor],
                              student_logits: torch.Tensor, source_probs: list[torch.Tensor],
                              source_weights: torch.Tensor, *, feat_weight: float = 1.0) -> torch.Tensor:
    """DistillWeighted: match each source's features and pseudo-labels, weighted by task similarity.

        L = sum_s w_s [ feat_weight * mean_b || h_s(f(x_b))^ - z_s(x_b)^ ||^2 + mean_b KL(q_s(x_b) || p(x_b)) ]

    with ^ = L2 normalisation, h_s the student's regressor for source s (``PooledCNN.extra_heads``),
    z_s the source's features, q_s its pseudo-labels on the target classes (a linear probe fitted on
    the labelled target images, ``cookbook.methods.vision.probe_pseudo_labels``), p the student's
    prediction. w (S,) >= 0 (DistillNearest: one-hot on the most similar source).
    student_feats[s] (B, d_s), source_feats[s] (B, d_s), student_logits (B, C), source_probs[s] (B, C).
    Paper: Borup, Phoo, Hariharan, "Distilling from Similar Tasks for Transfer Learning on a Budget",
    ICCV 2023, arXiv 2304.12314.
    """
    check_finite_param("feat_weight", feat_weight, 0.0)
    S = len(source_feats)
    if not (len(student_feats) == len(source_probs) == S) or S == 0:
        raise ValueError(f"need one student feature, source feature and pseudo-label tensor per source, got "
                         f"{len(student_feats)}, {S}, {len(source_probs)}")
    _check_weights(source_weights, S, "source_weights")
    log_p = F.log_softmax(student_logits, -1)
    total = student_logits.new_zeros(())
    for s in range(S):
        if float(source_weights[s]) == 0.0:
            continue
        check_pair(student_feats[s], source_feats[s], "feats")
        feat = (F.normalize(student_feats[s], dim=-1) - F.normalize(source_feats[s].detach(), dim=-1)).pow(2).sum(-1).mean()
        q = source_probs[s].detach()
        kl = (q * (q.clamp_min(1e-12).log() - log_p)).sum(-1).mean()
        total = total + source_weights[s] * (feat_weight * feat + kl)
    return total


def weighted_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, weights: torch.Tensor, *,
                     T: float = 4.0) -> torch.Tensor:
    """KD on instances weighted by how much we trust them: sum_i w_i T^2 KL(p^t_i || p^s_i) / max(sum_i w_i, eps).

    weights (B,) >= 0 (KD3: the selection weights; all ones is Hinton KD). Returns 0 when every weight is 0.
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    _check_weights(weights, len(student_logits))
    t = F.log_softmax(teacher_logits.detach() / T, -1)
    kl = (t.exp() * (t - F.log_softmax(student_logits / T, -1))).sum(-1) * T * T
    return (weights * kl).sum() / weights.sum().clamp_min(1e-8)


def weighted_feature_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """KD3's weighted feature alignment: sum_i w_i mean_j (s_ij - t_ij)^2 / sum_i w_i.

    student_feats (projected to the teacher's shape), teacher_feats: (B, ...); weights (B,) >= 0.
    Paper: Tang et al., "Distribution Shift Matters for Knowledge Distillation with Webly Collected
    Images", ICCV 2023, arXiv 2307.11469.
    """
    check_pair(student_feats, teacher_feats, "feats")
    _check_weights(weights, len(student_feats))
    per = (student_feats - teacher_feats.detach()).pow(2).flatten(1).mean(1)
    return (weights * per).sum() / weights.sum().clamp_min(1e-8)


def classifier_alignment_loss(student_weight: torch.Tensor, teacher_weight: torch.Tensor,
                              student_bias: torch.Tensor | None = None, teacher_bias: torch.Tensor | None = None) -> torch.Tensor:
    """KD3's classifier alignment: the student's classifier parameters move toward the teacher's.

        L = (1 / C) sum_c ( || W_s[c] - W_t[c] ||^2 + (b_s[c] - b_t[c])^2 )

    a squared distance per class row (summed over the row, so a wide head's many small weights still
    count). Same-shape linear heads (C, D) (the student reads projected features of the teacher's shape).
    Paper: Tang et al., arXiv 2307.11469.
    """
    check_pair(student_weight, teacher_weight, "weight")
    loss = (student_weight - teacher_weight.detach()).pow(2).sum() / len(student_weight)
    if student_bias is not None and teacher_bias is not None:
        check_pair(student_bias, teacher_bias, "bias")
        loss = loss + (student_bias - teacher_bias.detach()).pow(2).sum() / len(student_weight)
    return loss


def instance_contrastive_loss(z: torch.Tensor, z_mixed: torch.Tensor, *, tau: float = 0.2) -> torch.Tensor:
    """InfoNCE between two views of each instance: z_i must pick out z_mixed_i among the batch.

        L = - mean_i log( exp(cos(z_i, z'_i) / tau) / sum_j exp(cos(z_i, z'_j) / tau) )

    z, z_mixed (B, D) (KD3: the student's embedding of an image and of its MixDistribution view,
    so the representation becomes invariant to the distribution shift). tau > 0.
    Paper: Tang et al., arXiv 2307.11469; InfoNCE (van den Oord et al., 2018).
    """
    check_temperature(tau, "temperature tau")
    check_pair(z, z_mixed, "embeddings")
    if z.dim() != 2:
        raise ValueError(f"embeddings must be (B, D), got {tuple(z.shape)}")
    sim = F.normalize(z, dim=-1) @ F.normalize(z_mixed, dim=-1).T / tau
    return F.cross_entropy(sim, torch.arange(len(z), device=z.device))
