"""Dataset-distillation losses: what a synthetic set S is optimised to match in the real set R.

Pure functions (tensors in, a scalar out); the synthesis loops that call them are in
``cookbook.methods.dataset``. Symbols of notebooks 03a and 03c: theta network parameters, g gradients,
f(x) embeddings, S synthetic images, R real images, c a class, z logits, w committee votes.

Papers: DC (Zhao, Mopuri, Bilen, ICLR 2021, arXiv 2006.05929); DM (Zhao & Bilen, WACV 2023,
arXiv 2110.04181); MTT (Cazenavette et al., CVPR 2022, arXiv 2203.11932); P67 AST (Shen et al.,
*Efficient Dataset Distillation through Alignment with Smooth and High-Quality Expert
Trajectories*, arXiv 2310.10541); P54 KRR-ST (Lee et al., *Self-Supervised Dataset Distillation for
Transfer Learning*, ICLR 2024, arXiv 2310.06511); Barlow Twins (Zbontar et al., ICML 2021, arXiv
2103.03230), the self-supervised objective of KRR-ST's target model. Notebook 03c: SRe2L (Yin, Xing,
Shen, NeurIPS 2023, arXiv 2306.13092), the batch-norm statistic matching both papers build on;
P34 CV-DD (Cui et al., *Dataset Distillation via Committee Voting*, arXiv 2501.07575); P68 INFER
(Zhang, Du, Liu, Zhou, *Breaking Class Barriers: Efficient Dataset Distillation via Inter-Class
Feature Compensator*, ICLR 2025, arXiv 2408.06927).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_finite_param, check_int, check_tensor, check_values


def _check_same(a: Tensor, b: Tensor, names: str) -> None:
    check_tensor(names.split(",")[0], a)
    check_tensor(names.split(",")[1].strip(), b)
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def gradient_match_distance(grads_syn: Sequence[Tensor], grads_real: Sequence[Tensor]) -> Tensor:
    """DC's layer-wise gradient distance d(g^S, g^R) = sum_layers sum_rows (1 - cos(g^S_row, g^R_row)).

    Each layer's gradient is viewed as (out, rest): one cosine per output channel (conv: out x
    in*kh*kw, linear: out x in). One-dimensional gradients (biases, norm scales) contribute 0, as in
    the official ``distance_wb`` (``VICO-UoE/DatasetCondensation@53f63a6:utils.py``); 1e-6 keeps
    zero rows finite. Lists of tensors in ``model.parameters()`` order; returns a scalar (sum).
    DC, Zhao et al. 2021, arXiv 2006.05929.
    """
    if len(grads_syn) != len(grads_real) or not grads_syn:
        raise ValueError(f"need two equally long, non-empty gradient lists, got {len(grads_syn)} and {len(grads_real)}")
    for gs, gr in zip(grads_syn, grads_real):
        _check_same(gs, gr, "grads_syn, grads_real")
    total = grads_syn[0].new_zeros(())
    for gs, gr in zip(grads_syn, grads_real):
        if gs.dim() == 1:
            continue
        gs, gr = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)      # (out, rest)
        cos = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def mean_embedding_loss(real_feats: Tensor, syn_feats: Tensor) -> Tensor:
    """DM's loss for one class: || mean_i f(r_i) - mean_j f(s_j) ||^2 (squared L2, summed over features).

    real_feats (N_R, D), syn_feats (N_S, D) -> scalar. The caller sums it over classes, each class
    embedded by the same freshly initialised network. DM, Zhao & Bilen 2023, arXiv 2110.04181.
    """
    check_tensor("real_feats", real_feats, ndim=2)
    check_tensor("syn_feats", syn_feats, ndim=2)
    if real_feats.shape[1] != syn_feats.shape[1] or not len(real_feats) or not len(syn_feats):
        raise ValueError(f"need non-empty (N, D) features with the same D, got {tuple(real_feats.shape)} and {tuple(syn_feats.shape)}")
    return (real_feats.mean(0) - syn_feats.mean(0)).pow(2).sum()


def trajectory_matching_loss(student_params: Tensor, start_params: Tensor, target_params: Tensor) -> Tensor:
    """MTT's normalised parameter distance ||theta_hat_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2.

    Flat parameter vectors (P,): the student after N steps on S from the expert's epoch-t
    parameters, those starting parameters, and the expert's parameters M epochs later. Scalar in
    [0, inf): 1 means the student got no closer than its start. The official code's extra division
    of both terms by P cancels. MTT, Cazenavette et al. 2022, arXiv 2203.11932.
    """
    _check_same(student_params, target_params, "student_params, target_params")
    _check_same(start_params, target_params, "start_params, target_params")
    denom = (start_params - target_params).pow(2).sum()
    if denom.item() == 0:
        raise ValueError("start_params equal target_params: the expert did not move between the two epochs")
    return (student_params - target_params).pow(2).sum() / denom


def expert_loss_scale(epoch: int, schedule: Sequence[float] = tuple(0.5 + 0.05 * i for i in range(10))) -> float:
    """P67's clipping loss for training experts: the CE of epoch ``epoch`` is multiplied by
    ``schedule[epoch]`` (0.5, 0.55, ..., 0.95 over the first ten epochs), then by 1.

    Damping the loss early caps how far the expert's parameters move per epoch, so its trajectory
    is smoother and easier for a student to follow. The values are the official ``loss_decay``
    list (``shenjiyuan123/AST-Alignment-with-Smooth-Expert@8030869:buffer.py``). P67, arXiv 2310.10541.
    """
    check_int("epoch", epoch, 0)
    return float(schedule[epoch]) if epoch < len(schedule) else 1.0


def input_gradient_penalty(outputs: Tensor, inputs: Tensor, lam: float = 2.0) -> Tensor:
    """P67's gradient penalty on experts: lam * mean((|| d sum(outputs) / d inputs ||_2 over dim 1 - 1)^2).

    outputs: the network's logits on ``inputs`` (which must require grad), (B, C); inputs (B, ...).
    The norm is over dim 1 of the input gradient, the channel axis of an image, exactly as the
    official ``epoch_gp`` (WGAN-GP style, LAMBDA=2); on grey images that is |gradient| per pixel.
    Returns a scalar that can be back-propagated into the network (create_graph=True).
    P67, arXiv 2310.10541 (``shenjiyuan123/AST-Alignment-with-Smooth-Expert@8030869:utils.py``).
    """
    check_tensor("outputs", outputs)
    check_tensor("inputs", inputs)
    lam = check_finite_param("lam", lam, 0.0)
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad (inputs.requires_grad_(True) before the forward pass)")
    grads, = torch.autograd.grad(outputs, inputs, grad_outputs=torch.ones_like(outputs), create_graph=True)
    return lam * (grads.norm(p=2, dim=1) - 1).pow(2).mean()


def balanced_inner_weight(start_epoch: int, max_start_epoch: int) -> float:
    """P67's balanced inner loss: the student's CE is multiplied by log_5(t - T/2 + 8) when the start
    epoch t >= T/2 (T = max_start_epoch), and divided by log_5(T/2 - t + 8) otherwise.

    Late expert epochs move little, so their students' CE is scaled up; early ones are scaled down.
    Values as in the official ``distill.py --balance_loss``. P67, arXiv 2310.10541.
    """
    check_int("max_start_epoch", max_start_epoch, 1)
    check_int("start_epoch", start_epoch, 0)
    half = max_start_epoch // 2
    if start_epoch >= half:
        return math.log(start_epoch - half + 8, 5)
    return 1.0 / math.log(half - start_epoch + 8, 5)


def krr_predict(syn_feats: Tensor, syn_targets: Tensor, real_feats: Tensor, ridge: float = 1e-6) -> Tensor:
    """Kernel ridge regression of a linear head: K_RS (K_SS + lam I)^-1 Y_S, with a bias feature.

    syn_feats (N_S, D), syn_targets (N_S, K), real_feats (N_R, D) -> predictions (N_R, K).
    Features get a constant 1 column (the head's bias); the kernel is linear, K = F F^T, and
    lam = ridge * trace(K_SS) as in the official code (``db-Lee/selfsup_dd@4beb4b1:algorithms/
    distill.py``). Equal to solving the ridge problem for W in closed form. P54 KRR-ST, arXiv 2310.06511.
    """
    check_tensor("syn_feats", syn_feats, ndim=2)
    check_tensor("syn_targets", syn_targets, ndim=2)
    check_tensor("real_feats", real_feats, ndim=2)
    ridge = check_finite_param("ridge", ridge, 0.0, low_open=True)
    if len(syn_feats) != len(syn_targets) or syn_feats.shape[1] != real_feats.shape[1]:
        raise ValueError(f"shapes do not fit: syn_feats {tuple(syn_feats.shape)}, syn_targets "
                         f"{tuple(syn_targets.shape)}, real_feats {tuple(real_feats.shape)}")
    fs = torch.cat([syn_feats, syn_feats.new_ones(len(syn_feats), 1)], 1)     # (N_S, D+1)
    fr = torch.cat([real_feats, real_feats.new_ones(len(real_feats), 1)], 1)  # (N_R, D+1)
    k_ss, k_rs = fs @ fs.T, fr @ fs.T
    lam = ridge * torch.trace(k_ss.detach())
    eye = torch.eye(len(fs), dtype=fs.dtype, device=fs.device)
    return k_rs @ torch.linalg.solve(k_ss + lam * eye, syn_targets)


def krr_st_loss(syn_feats: Tensor, syn_targets: Tensor, real_feats: Tensor, real_targets: Tensor,
                ridge: float = 1e-6) -> Tensor:
    """KRR-ST's outer loss: MSE between the KRR head's predictions on real images and the target
    model's representations of them, mean over entries.

    syn_targets (N_S, K) are the *learnable* target representations of the synthetic images;
    real_targets (N_R, K) the frozen self-supervised target model's outputs on real images.
    P54 KRR-ST, arXiv 2310.06511.
    """
    pred = krr_predict(syn_feats, syn_targets, real_feats, ridge=ridge)
    _check_same(pred, real_targets, "predictions, real_targets")
    return F.mse_loss(pred, real_targets)


def barlow_twins_loss(z1: Tensor, z2: Tensor, lam: float = 5e-3) -> Tensor:
    """Barlow Twins: sum_i (1 - C_ii)^2 + lam * sum_{i != j} C_ij^2, C the cross-correlation of the
    batch-standardised embeddings of two augmented views, (B, K) each -> scalar.

    The self-supervised objective we train KRR-ST's target model with (the paper's target model
    is a Barlow Twins ResNet-18). Zbontar et al. 2021, arXiv 2103.03230.
    """
    _check_same(z1, z2, "z1, z2")
    if z1.dim() != 2 or len(z1) < 2:
        raise ValueError(f"z1, z2 must be (B, K) with B >= 2, got {tuple(z1.shape)}")
    lam = check_finite_param("lam", lam, 0.0)
    check_values("z1", z1)
    check_values("z2", z2)
    a = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-5)   # batch norm without affine
    b = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + 1e-5)
    c = a.T @ b / len(z1)                                                      # (K, K)
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on + lam * off


# ----------------------------------------------------------------------------- SRe2L, CV-DD (P34), INFER (P68)


def bn_matching_loss(bn_inputs: Sequence[Tensor], running_means: Sequence[Tensor], running_vars: Sequence[Tensor], *,
                     first_multiplier: float = 10.0, groups: int = 1, reduction: str = "sum") -> Tensor:
    """SRe2L's statistic-matching loss R_BN(S) = sum_l a_l (||mu_l(S) - mu_l^BN||_2 + ||var_l(S) - var_l^BN||_2).

    bn_inputs: the input of each BatchNorm layer l of a frozen teacher on the synthetic batch S, in
    call order, (B, C_l, H, W) or (B, C_l); running_means / running_vars: that layer's stored
    statistics (C_l,). mu_l, var_l are the batch's per-channel mean and biased variance; the norms
    are plain (not squared) L2 norms over channels, and a_1 = ``first_multiplier`` (10), a_l = 1
    after, as the official ``BNFeatureHook`` and ``--first-bn-multiplier``
    (``VILA-Lab/SRe2L@8d00cba``, reused by CV-DD and INFER). ``groups`` > 1 splits the batch into
    that many equal consecutive groups with their own statistics (each is one synthetic batch of
    the official loop, which we optimise together); reduction "sum" (scalar) or "none" (groups,).
    SRe2L, Yin, Xing, Shen, NeurIPS 2023, arXiv 2306.13092.
    """
    if not len(bn_inputs) or not (len(bn_inputs) == len(running_means) == len(running_vars)):
        raise ValueError(f"need one running mean and variance per BatchNorm input, got {len(bn_inputs)}, "
                         f"{len(running_means)}, {len(running_vars)}")
    check_int("groups", groups, 1)
    first_multiplier = check_finite_param("first_multiplier", first_multiplier, 0.0)
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    total = bn_inputs[0].new_zeros(groups)
    for i, (x, rm, rv) in enumerate(zip(bn_inputs, running_means, running_vars)):
        check_tensor(f"bn_inputs[{i}]", x)
        if x.dim() < 2 or x.shape[0] % groups or x.shape[0] // groups < 1 or rm.shape != (x.shape[1],) or rv.shape != rm.shape:
            raise ValueError(f"bn_inputs[{i}] {tuple(x.shape)} does not fit {groups} group(s) and statistics of "
                             f"shape {tuple(rm.shape)}, {tuple(rv.shape)}")
        v = x.reshape(groups, x.shape[0] // groups, x.shape[1], -1).transpose(1, 2).flatten(2)   # (G, C, B/G * H * W)
        mean, var = v.mean(-1), v.var(-1, unbiased=False)                                     # (G, C)
        term = (mean - rm).norm(dim=-1) + (var - rv).norm(dim=-1)                              # (G,)
        total = total + term * (first_multiplier if i == 0 else 1.0)
    return total.sum() if reduction == "sum" else total


def vote_weights(priors: Tensor, temperature: float = 5.0) -> Tensor:
    """CV-DD's prior-based voter: w = softmax(prior / tau) over the committee members, (K,) -> (K,).

    prior_k: how good member k's own distilled data is (an accuracy in %); tau: 5 when the members
    recover images together and 10 when they relabel (official ``utils_recover.load_recover_model``
    and ``relabel.save``, ``Jiacheng8/CV-DD@24097e9``). tau -> inf gives equal votes, tau -> 0 the
    best member alone. CV-DD, Cui et al., arXiv 2501.07575 (P34).
    """
    check_tensor("priors", priors, ndim=1)
    check_values("priors", priors)
    temperature = check_finite_param("temperature", temperature, 0.0, low_open=True)
    return torch.softmax(priors / temperature, dim=0)


def voting_recover_loss(ce: Tensor, bn: Tensor, weights: Tensor, r_bn: float = 0.01) -> Tensor:
    """CV-DD's recovery loss: sum_k w_k (CE_k(S) + r_bn R_BN,k(S)), summed over all entries.

    ce, bn, weights: aligned tensors of any one shape (member, or member x synthetic batch); one
    member with weight 1 is SRe2L's L = CE + r_bn R_BN (r_bn 0.01 in the official CIFAR scripts of
    both; INFER uses 1). Returns a scalar. CV-DD arXiv 2501.07575 (P34); SRe2L arXiv 2306.13092.
    """
    _check_same(ce, bn, "ce, bn")
    _check_same(ce, weights, "ce, weights")
    r_bn = check_finite_param("r_bn", r_bn, 0.0)
    return (weights * (ce + r_bn * bn)).sum()


def vote_logits(member_logits: Sequence[Tensor], weights: Tensor) -> Tensor:
    """A committee's soft label: z = sum_k w_k z_k, the members' logits weighted *before* the softmax.

    member_logits: K tensors (B, C); weights (K,) (``vote_weights``; equal weights 1/K give INFER's
    average of its architectures' logits). Returns (B, C) logits. CV-DD (P34, official
    ``relabel.save``) and INFER (P68, official ``val_static.py``) both average logits, not probabilities.
    """
    if not len(member_logits):
        raise ValueError("vote_logits needs at least one member's logits")
    check_tensor("weights", weights, ndim=1)
    if len(weights) != len(member_logits):
        raise ValueError(f"{len(member_logits)} members but {len(weights)} weights")
    for z in member_logits[1:]:
        _check_same(member_logits[0], z, "member_logits[0], member_logits[k]")
    return (weights.to(member_logits[0])[:, None, None] * torch.stack(list(member_logits))).sum(0)


def interpolated_logits(logits: Tensor, perm: Tensor, lam: float) -> Tensor:
    """INFER's interpolated label of a mixed image lam x_i + (1 - lam) x_perm(i): lam z_i + (1 - lam) z_perm(i).

    logits (B, C): the *stored* (static) soft labels of the un-mixed images, one per synthetic
    image; perm (B,) the mixing partner of each row; lam in [0, 1]. Mixing the stored logits
    instead of asking the teacher about every mixed image is what lets INFER keep one label per
    image (official ``val_static.py``). INFER, Zhang et al., ICLR 2025, arXiv 2408.06927 (P68).
    """
    check_tensor("logits", logits, ndim=2)
    check_tensor("perm", perm, ndim=1)
    if len(perm) != len(logits):
        raise ValueError(f"perm has {len(perm)} entries for {len(logits)} rows")
    lam = check_finite_param("lam", lam, 0.0, 1.0)
    return lam * logits + (1 - lam) * logits[perm]
