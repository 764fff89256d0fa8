"""Logit-based distillation losses (vision KD family, notebooks 00 and 01)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cookbook.checks import (
    check_class_weights,
    check_finite_param,
    check_labels,
    check_pair,
    check_probabilities,
    check_reduction,
    check_temperature,
    check_tensor,
    check_unit_interval,
    check_values,
)


def soft_targets(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Temperature-softened class probabilities  p_i = exp(z_i / T) / sum_j exp(z_j / T).

    logits (B, C) -> probabilities (B, C). Larger T spreads mass onto the non-target classes
    ("dark knowledge"); T = 1 is the ordinary softmax.
    """
    check_temperature(T)
    check_tensor("logits", logits)
    check_values("logits", logits)
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

    check_labels(labels, student_logits.shape[1], ignore_index, shape=student_logits.shape[:1])
    ce = F.cross_entropy(student_logits, labels, ignore_index=ignore_index, reduction="none")  # (B,)
    labelled = labels != ignore_index
    if reduction == "none":
        return alpha * kl + (1 - alpha) * ce * labelled
    ce_mean = ce.sum() / labelled.sum().clamp(min=1)
    return alpha * kl.mean() + (1 - alpha) * ce_mean


def _check_labels(labels: torch.Tensor, logits: torch.Tensor) -> None:
    check_tensor("logits", logits)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    check_labels(labels, logits.shape[1], shape=logits.shape[:1])


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
             alpha: float = 1.0, beta: float = 8.0, T: float = 4.0, reduction: str = "mean") -> torch.Tensor:
    """Decoupled knowledge distillation: KD split into a target-class and a non-target-class part.

        TCKD = KL(b_t || b_s),      b = [p_y, 1 - p_y]                       (binary: target vs rest)
        NCKD = KL(q_t || q_s),      q_i = p_i / (1 - p_y) for i != y          (non-target classes only)
        DKD  = T^2 * (alpha * TCKD + beta * NCKD)

    with p = softmax(z / T). Classic KD is the special case KD = TCKD + (1 - p_y^t) NCKD (the paper's
    Eq. 1; tested), so the teacher's confidence p_y^t silently down-weights NCKD; DKD frees it with
    beta. The paper trains with CE + DKD (add the CE yourself).

    student_logits, teacher_logits: (B, C), C >= 3. labels: (B,) int64. reduction: "mean" or "none" (B,).

    Paper: Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022, arXiv 2203.08679.
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    check_reduction(reduction)
    _check_labels(labels, student_logits)
    if student_logits.shape[1] < 3:
        raise ValueError("DKD needs at least 3 classes (NCKD is a distribution over the C - 1 non-target ones)")
    check_finite_param("alpha", alpha, 0.0)
    check_finite_param("beta", beta, 0.0)

    target = F.one_hot(labels, student_logits.shape[1]).bool()                          # (B, C)

    def parts(logits):
        z = logits / T
        lse_all = torch.logsumexp(z, -1)                                                # (B,)
        lse_rest = torch.logsumexp(z.masked_fill(target, float("-inf")), -1)            # (B,)
        log_b = torch.stack([z[target] - lse_all, lse_rest - lse_all], -1)              # (B, 2)
        log_q = F.log_softmax(z.masked_fill(target, float("-inf")), -1)                 # (B, C), -inf at y
        return log_b, log_q

    log_b_s, log_q_s = parts(student_logits)
    log_b_t, log_q_t = parts(teacher_logits.detach())
    tckd = (log_b_t.exp() * (log_b_t - log_b_s)).sum(-1)                                # (B,)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(target, 0.0).sum(-1)      # (B,)
    loss = T**2 * (alpha * tckd + beta * nckd)
    return loss.mean() if reduction == "mean" else loss


def pld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
             T: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Plackett-Luce distillation: a confidence-weighted list-wise loss over the teacher's ranking.

    The "teacher-optimal" permutation pi puts the true label first, then the other classes in
    descending teacher logit. Under the Plackett-Luce model the student's scores s pick pi_k out of
    the classes not yet chosen; each choice is weighted by the teacher's confidence in that class:

        L = sum_k  w_{pi_k} * ( -s_{pi_k} + log sum_{j >= k} exp(s_{pi_j}) ),   w = softmax(t / T)

    The first term is w_y * CE(s, y), so PLD replaces CE + KD with one loss and no mixing weight. It
    is convex in s and unchanged by adding a constant to s. Computed without a loop: gather the
    scores in ranked order, then a reverse cumulative log-sum-exp gives every suffix at once.

    student_logits, teacher_logits: (B, C); labels: (B,) int64. reduction: "mean" or "none" (B,).

    Paper: Bassam, Zhu, Bian, "PLD: A Choice-Theoretic List-Wise Knowledge Distillation", 2025,
    arXiv 2506.12542.
    """
    check_temperature(T)
    check_pair(student_logits, teacher_logits)
    check_reduction(reduction)
    _check_labels(labels, student_logits)
    teacher_logits = teacher_logits.detach()

    target = F.one_hot(labels, student_logits.shape[1]).bool()                          # (B, C)
    order = teacher_logits.masked_fill(target, float("inf")).argsort(-1, descending=True)  # (B, C) = pi
    s = student_logits.gather(-1, order)                                                # (B, C) ranked
    suffix_lse = s.flip(-1).logcumsumexp(-1).flip(-1)                                   # (B, C): k -> lse_{j>=k}
    w = F.softmax(teacher_logits / T, -1).gather(-1, order)                             # (B, C)
    loss = (w * (suffix_lse - s)).sum(-1)                                               # (B,)
    return loss.mean() if reduction == "mean" else loss


def ensemble_soft_targets(teacher_logits: list[torch.Tensor] | tuple[torch.Tensor, ...], T: float = 1.0) -> torch.Tensor:
    """The mean of several teachers' softmax outputs (MEAL V2's supervision): (B, C) probabilities.

    teacher_logits: a non-empty sequence of (B, C) tensors. Averaging probabilities, not logits, keeps
    each teacher's calibration: one over-confident teacher cannot dominate the target.
    """
    if not isinstance(teacher_logits, (list, tuple)):
        raise TypeError(f"teacher_logits must be a list or tuple of (B, C) tensors, got {type(teacher_logits).__name__}")
    if len(teacher_logits) == 0:
        raise ValueError("ensemble_soft_targets needs at least one teacher's logits")
    for i, t in enumerate(teacher_logits):
        check_tensor(f"teacher_logits[{i}]", t)
    for t in teacher_logits[1:]:
        check_pair(teacher_logits[0], t)
    return torch.stack([soft_targets(t.detach(), T) for t in teacher_logits]).mean(0)


def meal_v2_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, discriminator: torch.nn.Module, *,
                 target_logits: torch.Tensor, adv_weight: float = 0.1) -> torch.Tensor:
    """MEAL V2: soft cross-entropy to the teachers' mean probabilities plus a discriminator on logits.

        L_student = -sum_i p_i log q_i  +  adv_weight * BCE(D(z_s), [0, 1])     (q = softmax(z_s))
        L_D       = BCE(D(z_s), [1, 0]) + BCE(D(z_t), [0, 1])

    p = the teachers' mean probabilities (``ensemble_soft_targets``), z_t = the teachers' mean logits,
    z_s = the student's logits. As in the official code, D sees logits and has two outputs scored by a
    2-way BCE with logits ([1, 0] = student, [0, 1] = teacher; ``loss.py``'s ``discriminatorLoss``,
    mean over the 2B x 2 entries). No hard labels. The student's adversarial term asks D to call it
    a teacher (the paper's minimax; the official code instead adds L_D to the student's loss). Returns
    L_student + L_D as one scalar for one optimizer over both players: the adversarial term reaches D
    only through detached copies of its weights, and L_D sees only a detached z_s, so each part trains
    only its own player.

    student_logits, target_logits: (B, C); target_probs: (B, C) rows summing to 1;
    discriminator: (B, C) -> (B, 2) logits.

    Paper: Shen, Savvides, "MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on ImageNet
    without Tricks", 2020, arXiv 2009.08453. Official code: szq0214/MEAL-V2 (loss.py, train.py).
    """
    check_pair(student_logits, target_probs, name="outputs")
    check_pair(student_logits, target_logits, name="teacher logits")
    check_finite_param("adv_weight", adv_weight, 0.0)
    if not isinstance(discriminator, torch.nn.Module):
        raise TypeError(f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}")
    check_probabilities("target_probs", target_probs, hint="use ensemble_soft_targets")
    target_probs, target_logits = target_probs.detach(), target_logits.detach()
    similarity = -(target_probs * F.log_softmax(student_logits, -1)).sum(-1).mean()
    is_teacher, is_student = (torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    frozen = {k: v.detach() for k, v in discriminator.named_parameters()}
    fool = torch.func.functional_call(discriminator, frozen, (student_logits,))         # (B, 2)
    if fool.shape != (len(student_logits), 2):
        raise ValueError(f"discriminator must map (B, C) logits to (B, 2), got {tuple(fool.shape)}")
    adversarial = F.binary_cross_entropy_with_logits(fool, is_teacher.expand_as(fool))
    d_out = discriminator(torch.cat([student_logits.detach(), target_logits]))          # (2B, 2)
    d_target = torch.cat([is_student.expand_as(fool), is_teacher.expand_as(fool)])
    d_loss = F.binary_cross_entropy_with_logits(d_out, d_target)
    return similarity + adv_weight * adversarial + d_loss


def dho_loss(ce_logits: torch.Tensor, labels: torch.Tensor, kd_logits: torch.Tensor, teacher_logits: torch.Tensor,
             *, kd_logits_labelled: torch.Tensor | None = None,
             teacher_logits_labelled: torch.Tensor | None = None,
             T: float = 2.0, lam: float = 0.5) -> torch.Tensor:
    """Dual-Head Optimization training loss: CE on one head, KD on the other, shared features.

        L = lam * CE(h_ce(x_l), y)  +  (1 - lam) * [ T^2 KL(p_T(t(x_u)) || p_T(h_kd(x_u)))
                                                   + T^2 KL(p_T(t(x_l)) || p_T(h_kd(x_l))) ]

    The whole loss of the official code (erjui/DHO ``train_others.py``: ``0.5 * ce_loss + 0.5 *
    (distill_loss_labeled + distill_loss_unlabeled)``, T = 2) when ``kd_logits_labelled`` and
    ``teacher_logits_labelled`` (the KD head and the teacher on the labelled images) are given;
    without them, the labelled KD term is dropped (an ablation).

    ce_logits: (B_l, C) from the CE head on labelled images, labels: (B_l,).
    kd_logits, teacher_logits: (B, C) from the KD head and the teacher on the step's unlabelled
    (or all) images. Because each head sees only one signal, the two gradients never fight inside
    a head; they meet only in the shared feature extractor.

    Paper: Kang, Lee, Jang, Hwang, "Simple Semi-supervised Knowledge Distillation from Vision-Language
    Models via Dual-Head Optimization", 2025, arXiv 2505.07675.
    """
    check_unit_interval(lam, "lam")
    _check_labels(labels, ce_logits)
    check_values("ce_logits", ce_logits)
    if (kd_logits_labelled is None) != (teacher_logits_labelled is None):
        raise ValueError("give both kd_logits_labelled and teacher_logits_labelled, or neither")
    loss = lam * F.cross_entropy(ce_logits, labels) + (1 - lam) * kd_loss(kd_logits, teacher_logits, T=T)
    if kd_logits_labelled is not None:
        if kd_logits_labelled.shape[0] != ce_logits.shape[0]:
            raise ValueError(f"kd_logits_labelled must cover the {ce_logits.shape[0]} labelled images, "
                             f"got {tuple(kd_logits_labelled.shape)}")
        loss = loss + (1 - lam) * kd_loss(kd_logits_labelled, teacher_logits_labelled, T=T)
    return loss


def dual_head_probs(ce_logits: torch.Tensor, kd_logits: torch.Tensor, *, alpha: float, beta: float = 1.0) -> torch.Tensor:
    """DHO's prediction: p = (1 - alpha) * softmax(h_ce) + alpha * softmax(h_kd / beta), (B, C).

    alpha in [0, 1] moves from the label head (0) to the teacher head (1); beta > 0 re-tempers the KD
    head. Both are picked on validation data after training, no retraining needed (arXiv 2505.07675).
    """
    check_unit_interval(alpha, "alpha")
    check_temperature(beta)
    check_pair(ce_logits, kd_logits)
    return (1 - alpha) * F.softmax(ce_logits, -1) + alpha * F.softmax(kd_logits / beta, -1)


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
    check_finite_param("gamma (1 = plain soft cross-entropy)", gamma, 0.0, low_open=True)
    _check_labels(labels, student_logits)
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
    check_class_weights(class_weights, student_logits.shape[-1])
    return F.cross_entropy(student_logits, teacher_logits.argmax(-1), weight=class_weights)

