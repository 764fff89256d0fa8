"""Feature- and token-level distillation losses (notebook 01b: CNN teacher -> ViT / MLP-Mixer students).

Tokens are (B, N, D) tensors: a ViT's patch tokens, or a CNN map turned into tokens with
``cookbook.models.cnn_tokens``. Student and teacher need the same N (the same patch grid); the
node, contextual and visible-patch losses also need the same D (project the student first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.checks import (
    check_finite_param,
    check_indices,
    check_keep,
    check_pair,
    check_temperature,
    check_tensor,
    check_values,
)


def _check_tokens(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, same_dim: bool = True) -> None:
    check_tensor("student_tokens", student_tokens)
    check_tensor("teacher_tokens", teacher_tokens)
    if student_tokens.dim() != 3 or teacher_tokens.dim() != 3:
        raise ValueError(f"tokens must be (batch, tokens, dim), got {tuple(student_tokens.shape)} "
                         f"and {tuple(teacher_tokens.shape)}")
    if same_dim:
        check_pair(student_tokens, teacher_tokens, "tokens")
    elif student_tokens.shape[:2] != teacher_tokens.shape[:2]:
        raise ValueError(f"student and teacher need the same batch and number of tokens, got "
                         f"{tuple(student_tokens.shape[:2])} and {tuple(teacher_tokens.shape[:2])}")
    else:
        if student_tokens.numel() == 0 or teacher_tokens.numel() == 0:
            raise ValueError(f"empty tokens: shapes {tuple(student_tokens.shape)} and {tuple(teacher_tokens.shape)}")
        check_values("student_tokens", student_tokens)
        check_values("teacher_tokens", teacher_tokens)


def token_node_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
    """TRG's node term: each student token matches its teacher token in direction.

        L_node = mean_{b, n} || s_bn / |s_bn| - t_bn / |t_bn| ||^2  (= 2 - 2 cos)

    student_tokens (projected), teacher_tokens: (B, N, D) -> scalar in [0, 4].
    Paper: Zhang, Liu, He, "Knowledge Distillation via Token-level Relationship Graph", 2023, arXiv 2306.12442.
    """
    _check_tokens(student_tokens, teacher_tokens)
    s, t = F.normalize(student_tokens, dim=-1), F.normalize(teacher_tokens.detach(), dim=-1)
    return (s - t).pow(2).sum(-1).mean()


def token_relation_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, *,
                        tau: float = 0.1) -> torch.Tensor:
    """TRG's edge term: the token-level relationship graph of the student matches the teacher's.

    All B * N tokens of the batch are nodes; edge weights are cosine similarities A_ij (self-loops
    dropped), each row turned into a distribution with softmax(A_i / tau); the student's rows match
    the teacher's in KL:  L_edge = mean_i KL(softmax(A^t_i / tau) || softmax(A^s_i / tau)).
    Relations compare token with token inside each model, so D_s and D_t may differ (no projection).

    student_tokens (B, N, D_s), teacher_tokens (B, N, D_t) -> scalar >= 0. tau > 0.
    Paper: Zhang, Liu, He, "Knowledge Distillation via Token-level Relationship Graph", 2023, arXiv 2306.12442.
    """
    check_temperature(tau)
    _check_tokens(student_tokens, teacher_tokens, same_dim=False)

    def log_rows(tokens: torch.Tensor) -> torch.Tensor:
        z = F.normalize(tokens.flatten(0, 1), dim=-1)                        # (B*N, D)
        sim = (z @ z.T) / tau                                                # (B*N, B*N)
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        return F.log_softmax(sim.masked_fill(eye, -1e4), dim=-1)

    log_t, log_s = log_rows(teacher_tokens.detach()), log_rows(student_tokens)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def contextual_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, *,
                    h: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """The token-wise contextual loss (Mechrez et al., ECCV 2018) that TRG uses inside each image.

    With cosine distances d_ij between teacher token i and student token j of the same image:
    d~_ij = d_ij / (min_k d_ik + eps), w_ij = exp((1 - d~_ij) / h), CX_ij = w_ij / sum_k w_ik, and
    L_cx = mean_b -log( mean_i max_j CX_ij ). It is 0 when every teacher token has a student token
    markedly closer to it than all others, so it asks for matching *context*, not matching positions.

    student_tokens (projected), teacher_tokens: (B, N, D) -> scalar >= 0. h > 0 is the bandwidth.
    Papers: Mechrez, Talmi, Zelnik-Manor, "The Contextual Loss for Image Transformation with
    Non-Aligned Data", ECCV 2018, arXiv 1803.02077; used as in TRG, arXiv 2306.12442.
    """
    check_temperature(h, "temperature (bandwidth) h")
    check_finite_param("eps", eps, 0.0, low_open=True)
    _check_tokens(student_tokens, teacher_tokens)
    t, s = F.normalize(teacher_tokens.detach(), dim=-1), F.normalize(student_tokens, dim=-1)
    d = 1 - t @ s.transpose(1, 2)                                            # (B, N_t, N_s)
    d_rel = d / (d.amin(-1, keepdim=True) + eps)
    cx = F.softmax((1 - d_rel) / h, dim=-1)                                  # rows sum to 1
    return -torch.log(cx.amax(-1).mean(-1).clamp_min(eps)).mean()


def visible_feature_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor) -> torch.Tensor:
    """DMAE's distillation term: the student's features of the visible patches match the teacher's.

        L_feat = mean_{b, k, d} | s_bk / ||s_bk|| - t_bk / ||t_bk|| |

    the L1 distance between unit-normalised vectors, as the official code (``F.normalize`` of both,
    then ``nn.L1Loss``: a mean over all elements). student_feats (B, K, D): the student's tokens of
    the K visible patches through its projection head; teacher_feats (B, K, D): the teacher's
    features of the same patches, in the same order, computed from the visible patches ONLY (the
    teacher runs on the masked input, ``models.visible_block_outputs`` or ``models.mask_patches``):
    a teacher that sees the full image leaks the content of the hidden patches into the target.
    Paper: Bai et al., "Masked Autoencoders Enable Efficient Knowledge Distillers", CVPR 2023, arXiv 2208.12256.
    """
    check_pair(student_feats, teacher_feats, "features")
    if student_feats.dim() != 3:
        raise ValueError(f"features must be (batch, visible patches, dim), got {tuple(student_feats.shape)}")
    s, t = F.normalize(student_feats, dim=-1), F.normalize(teacher_feats.detach(), dim=-1)
    return (s - t).abs().mean()


def masked_reconstruction_loss(pred_patches: torch.Tensor, patches: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """MAE's loss: mean squared error on the pixels of the masked patches only (He et al., 2022).

        L_rec = mean_{b, n not in keep_b} || pred_bn - norm(x_bn) ||^2 / P

    with norm(x_bn) each target patch normalised to zero mean, unit variance (MAE's default).
    pred_patches, patches: (B, N, P); keep (B, K) int64 visible indices, K < N.
    Paper: He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv 2111.06377.
    """
    check_pair(pred_patches, patches, "patches")
    if patches.dim() != 3:
        raise ValueError(f"patches must be (B, N, P), got shape {tuple(patches.shape)}")
    check_tensor("keep", keep, ndim=2)
    if keep.shape[1] >= patches.shape[1]:
        raise ValueError(f"{keep.shape[1]} visible patches out of {patches.shape[1]}: nothing to reconstruct")
    check_keep(keep, patches.shape[0], patches.shape[1])
    masked = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device).scatter(1, keep, False)
    target = F.layer_norm(patches, patches.shape[-1:])
    err = (pred_patches - target).pow(2).mean(-1)                             # (B, N)
    return err[masked].mean()


# ----------------------------------------------------------------------------- Hybrid Distill (notebook 01c)


def restrict_attention(attn: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Attention over all tokens (B, H, 1 + N, 1 + N) -> over CLS + the kept patches (B, H, 1 + K, 1 + K).

    keep (B, K) int64 patch indices (0..N-1, the order the student saw them in); rows are renormalised
    to sum to 1, so a teacher's token relations can be compared with a student that never saw the
    masked tokens.
    """
    check_tensor("attn", attn, ndim=4)
    n = attn.shape[-1] - 1
    check_indices("keep", keep, n, shape=(attn.shape[0], keep.shape[-1]) if keep.dim() == 2 else None,
                  unique_rows=True, what="patches")
    idx = torch.cat([torch.zeros_like(keep[:, :1]), keep + 1], 1)           # CLS stays first
    H = attn.shape[1]
    rows = attn.gather(2, idx[:, None, :, None].expand(-1, H, -1, attn.shape[-1]))
    sub = rows.gather(3, idx[:, None, None, :].expand(-1, H, idx.shape[1], -1))
    return sub / sub.sum(-1, keepdim=True).clamp_min(1e-12)


def attention_kl_loss(student_attn: torch.Tensor, teacher_attn: torch.Tensor) -> torch.Tensor:
    """Token relations: each student attention row matches the teacher's, in KL.

        L_rel = mean_{b, h, i} KL(A^t_{b h i .} || A^s_{b h i .})

    student_attn, teacher_attn: (B, H, T, T) rows of probabilities (same heads and tokens).
    Paper: Shi et al., "Hybrid Distillation: Connecting Masked Autoencoders with Contrastive
    Learners", ICLR 2024, arXiv 2306.15876 (the MIM teacher's relations, against attention collapse).
    """
    check_pair(student_attn, teacher_attn, "attn")
    if student_attn.dim() != 4 or student_attn.shape[-1] != student_attn.shape[-2]:
        raise ValueError(f"attention maps must be (B, H, T, T), got {tuple(student_attn.shape)}")
    t = teacher_attn.detach().clamp_min(1e-12)
    return (t * (t.log() - student_attn.clamp_min(1e-12).log())).sum(-1).mean()


def hybrid_distill_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor,
                        student_attns: list[torch.Tensor], mim_attns: list[torch.Tensor], *,
                        alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """Hybrid Distill: the supervised/CL teacher's features plus the MIM teacher's token relations.

        L = alpha * mean_{b, t} || s_bt - LN(f^c_bt) ||^2  +  beta * mean_{l} L_rel(A^s_l, A^m_l)

    student_tokens (B, T, D): the student's final tokens after a linear projection to the teacher's
    width; teacher_tokens (B, T, D): the supervised teacher's final tokens at the same positions
    (LN: a parameter-free layer norm of each token, as in MaskAlign / DMAE targets); student_attns,
    mim_attns: the attention maps (B, H, T, T) of the chosen blocks, paired in order. alpha, beta >= 0.
    Paper: Shi et al., arXiv 2306.15876 (eq. 3: features of T_c at the last layer, relations of T_m).
    """
    check_finite_param("alpha", alpha, 0.0)
    check_finite_param("beta", beta, 0.0)
    check_tensor("student_tokens", student_tokens, ndim=3)
    if len(student_attns) != len(mim_attns):
        raise ValueError(f"{len(student_attns)} student attention maps but {len(mim_attns)} MIM teacher maps")
    target = F.layer_norm(teacher_tokens.detach(), teacher_tokens.shape[-1:])
    check_pair(student_tokens, target, "tokens")
    loss = alpha * (student_tokens - target).pow(2).mean()
    if beta > 0 and student_attns:
        loss = loss + beta * torch.stack([attention_kl_loss(s, m) for s, m in zip(student_attns, mim_attns)]).mean()
    return loss
