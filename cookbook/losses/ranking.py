"""Ranking distillation losses (notebook 04): each a pure function of candidate scores.

Notation: a batch of B queries, each with a candidate list of 1 + K documents, the relevant one
FIRST (index 0) and K negatives after it. ``student_scores`` s and ``teacher_scores`` t are (B, 1+K);
a bi-encoder's score is a scaled dot product of unit vectors. Teacher scores are detached.

- ``contrastive_loss``: labels only, in-batch negatives (the no-distillation baseline).
- ``margin_mse_loss``: Margin-MSE (P61, Hofstätter et al. 2020).
- ``score_kl_loss``: KL between the softmaxed candidate scores (the pointwise-scorer KD term).
- ``ranknet_loss``: RankNet (Burges et al. 2005) with hard or soft (DeAR code) pair targets.
- ``dear_loss``: DeAR stage 1 (P04): CE + RankNet + KL, weighted as the official code.
- ``pld_ranking_loss``: PLD (P53) on the candidate list: the positive first, then teacher order.
- ``multi_exit_loss``: ModularStarEncoder's depth-weighted sum over exits (P21).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import (
    check_finite_param,
    check_pair,
    check_reduction,
    check_temperature,
    check_tensor,
    check_unit_interval,
    check_values,
    values_checked,
)
from cookbook.losses.logits import pld_loss


def _check_list(student_scores: Tensor, teacher_scores: Tensor | None = None) -> None:
    check_tensor("student_scores", student_scores, ndim=2)
    if student_scores.shape[0] == 0:
        raise ValueError("student_scores: empty batch")
    if student_scores.shape[1] < 2:
        raise ValueError(f"need a positive and at least one negative per query, got {student_scores.shape[1]} candidate(s)")
    if teacher_scores is not None:
        check_pair(student_scores, teacher_scores, name="scores")
    if values_checked():
        check_values("student_scores", student_scores)
        if teacher_scores is not None:
            check_values("teacher_scores", teacher_scores)


def contrastive_loss(query_emb: Tensor, doc_emb: Tensor, positives: Tensor, *, scale: float = 20.0) -> Tensor:
    """In-batch softmax cross-entropy: each query against every document of the batch (mean over queries).

        L = -1/B sum_i log softmax_j(scale * q_i . d_j)[pos_i]

    query_emb: (B, E); doc_emb: (N, E) every document of the batch (positives, hard negatives);
    positives: (B,) int64 index of each query's relevant row of doc_emb. ``scale`` = 1 / temperature
    (20, sentence-transformers' MultipleNegativesRankingLoss default). The labels-only baseline of
    every ranking-distillation paper (e.g. DPR, Karpukhin et al. 2020, arXiv 2004.04906).
    """
    check_tensor("query_emb", query_emb, ndim=2)
    check_tensor("doc_emb", doc_emb, ndim=2)
    check_tensor("positives", positives, ndim=1)
    check_finite_param("scale", scale, low=0.0, low_open=True)
    if query_emb.shape[1] != doc_emb.shape[1]:
        raise ValueError(f"query_emb {tuple(query_emb.shape)} and doc_emb {tuple(doc_emb.shape)} differ in width")
    if len(positives) != len(query_emb):
        raise ValueError(f"positives has {len(positives)} entries for {len(query_emb)} queries")
    if positives.dtype != torch.int64 or (len(positives) and (positives.min() < 0 or positives.max() >= len(doc_emb))):
        raise ValueError(f"positives must be int64 indices in [0, {len(doc_emb)})")
    return F.cross_entropy(scale * query_emb @ doc_emb.T, positives)


def margin_mse_loss(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """Margin-MSE: match the teacher's margin between the positive and each negative (mean).

        L = 1/(B K) sum_i sum_k ( (s_i0 - s_ik) - (t_i0 - t_ik) )^2

    Only differences enter, so a teacher whose scores sit on another scale or offset (a
    cross-encoder's logits vs a dot product) can still teach: adding a constant to t changes
    nothing, multiplying it by c sets the margins the student must reach. With K = 1 it is the
    official ``MarginMSELoss`` (sebastian-hofstaetter/neural-ranking-kd, checked):
    mean(((s_pos - s_neg) - (t_pos - t_neg))^2) over triples.

    student_scores, teacher_scores: (B, 1+K), positive first.
    Paper: Hofstätter, Althammer, Schröder, Sertkan, Hanbury, "Improving Efficient Neural Ranking
    Models with Cross-Architecture Knowledge Distillation", 2020, arXiv 2010.02666.
    """
    _check_list(student_scores, teacher_scores)
    teacher_scores = teacher_scores.detach()
    s_margin = student_scores[:, :1] - student_scores[:, 1:]                  # (B, K)
    t_margin = teacher_scores[:, :1] - teacher_scores[:, 1:]
    return (s_margin - t_margin).pow(2).mean()


def score_kl_loss(student_scores: Tensor, teacher_scores: Tensor, *, T: float = 1.0) -> Tensor:
    """KL(teacher || student) over each query's candidate list, at temperature T (batchmean, x T^2).

        L = T^2 / B sum_i KL( softmax(t_i / T) || softmax(s_i / T) )

    The distillation term of DeAR's stage 1 (P04), alone: the pointwise scorer's scores of one list
    become a distribution over its candidates (Hinton KD over documents instead of classes).
    student_scores, teacher_scores: (B, 1+K) (the order does not matter here).
    """
    _check_list(student_scores, teacher_scores)
    check_temperature(T)
    log_p_s = F.log_softmax(student_scores / T, dim=-1)
    log_p_t = F.log_softmax(teacher_scores.detach() / T, dim=-1)
    return T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()


def ranknet_loss(student_scores: Tensor, target_scores: Tensor, *, soft: bool = True) -> Tensor:
    """RankNet: logistic loss on every pair of a list (mean over pairs i < j and queries).

        L = mean_{i<j} BCE( sigmoid(s_i - s_j), P_ij ),
        P_ij = sigmoid(r_i - r_j)                       (soft, DeAR's official code)
        P_ij = 1[r_i > r_j] + 1/2 1[r_i = r_j]           (hard, Burges et al. 2005)

    target_scores r: (B, N) relevance labels (e.g. 1 for the positive, 0 for negatives) or teacher
    scores. With soft targets and binary labels, a positive-negative pair has P = sigmoid(1) = 0.73
    and a negative-negative pair P = 0.5, exactly as DeAR's ``RankLoss.rank_net`` (checked).
    student_scores: (B, N). Paper: Burges et al., "Learning to Rank using Gradient Descent", ICML
    2005; used in DeAR (P04, Abdallah et al. 2025, arXiv 2508.16998).
    """
    _check_list(student_scores, target_scores)
    s_diff = student_scores.unsqueeze(2) - student_scores.unsqueeze(1)      # (B, N, N): s_i - s_j
    r_diff = (target_scores.unsqueeze(2) - target_scores.unsqueeze(1)).detach()
    target = torch.sigmoid(r_diff) if soft else (r_diff > 0).to(s_diff.dtype) + 0.5 * (r_diff == 0).to(s_diff.dtype)
    n = student_scores.shape[1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=student_scores.device), diagonal=1)
    return F.binary_cross_entropy_with_logits(s_diff[:, upper], target[:, upper])


def dear_loss(student_scores: Tensor, teacher_scores: Tensor, *, T: float = 2.0, alpha: float = 0.1,
              beta: float = 0.5) -> Tensor:
    """DeAR stage 1: cross-entropy + RankNet on the labels, plus KL to the teacher (scalar).

        L = (1 - alpha) [ beta RankNet(s, y) + (1 - beta) CE(s, 0) ] + alpha T^2 KL(softmax(t/T) || softmax(s/T))

    y = (1, 0, ..., 0) (the positive first); RankNet with DeAR's soft pair targets. Weights as the
    official code (DataScienceUIBK/DeAR-Reranking, ``loss_type=ranknet_binary_softmax_ce``: beta
    = 0.5; ``train_pointwise.sh``: T = 2, alpha = 0.1; checked).
    student_scores, teacher_scores: (B, 1+K), positive first.
    Paper: Abdallah, Mozafari, Piryani, Jatowt, "DeAR: Dual-Stage Document Reranking with Reasoning
    Agents via LLM Distillation", EMNLP Findings 2025, arXiv 2508.16998.
    """
    _check_list(student_scores, teacher_scores)
    check_unit_interval(alpha, "alpha")
    check_unit_interval(beta, "beta")
    labels = torch.zeros_like(student_scores)
    labels[:, 0] = 1.0
    target = torch.zeros(len(student_scores), dtype=torch.long, device=student_scores.device)
    main = beta * ranknet_loss(student_scores, labels) + (1 - beta) * F.cross_entropy(student_scores, target)
    return (1 - alpha) * main + alpha * score_kl_loss(student_scores, teacher_scores, T=T)


def pld_ranking_loss(student_scores: Tensor, teacher_scores: Tensor, *, T: float = 1.0) -> Tensor:
    """PLD as a list-wise ranking loss: Plackett-Luce over the candidates, positive first.

        L = 1/B sum_i sum_k w_{pi_k} ( -s_{pi_k} + log sum_{j>=k} exp s_{pi_j} ),  w = softmax(t_i / T)

    pi puts the relevant document first, then the negatives in descending teacher score. This is
    ``cookbook.losses.logits.pld_loss`` with the candidate list in place of the classes and label 0
    (P53's "teacher-optimal" ranking is a ranking of documents here). Invariant to adding a
    constant to s or t; convex in s.
    student_scores, teacher_scores: (B, 1+K), positive first.
    Paper: Bassam, Zhu, Bian, "PLD: A Choice-Theoretic List-Wise Knowledge Distillation", 2025,
    arXiv 2506.12542.
    """
    _check_list(student_scores, teacher_scores)
    labels = torch.zeros(len(student_scores), dtype=torch.long, device=student_scores.device)
    return pld_loss(student_scores, teacher_scores, labels, T=T)


def exit_weights(exit_layers: Sequence[int], num_layers: int) -> list[float]:
    """ModularStarEncoder's weight of each exit: alpha_l = l / num_layers (deeper exits weigh more).

    The paper's exits 4, 9, 18, 27, 36 of 36 layers get 0.11, 0.25, 0.5, 0.75, 1 (P21, Sec. 3).
    """
    layers = list(exit_layers)
    if not layers:
        raise ValueError("exit_layers is empty")
    if any(not isinstance(layer, int) or not 1 <= layer <= num_layers for layer in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"exit_layers must be distinct ints in [1, {num_layers}], got {layers}")
    return [layer / num_layers for layer in layers]


def multi_exit_loss(exit_losses: Sequence[Tensor], exit_layers: Sequence[int], num_layers: int,
                    reduction: str = "sum") -> Tensor:
    """Hierarchical self-distillation: the depth-weighted sum of the same loss at every exit.

        L = sum_{l in exits} (l / num_layers) * L_l

    Each exit has its own projection head; the layers below it are shared with every deeper exit,
    so the deep exits' gradients shape the early layers ("higher layers guide earlier ones").
    exit_losses: one scalar per exit, in the order of ``exit_layers``. reduction: "sum" (the
    paper) or "mean" (divided by the sum of weights: the same gradient scale as one loss).
    Paper: Gurioli, Pennino, Monteiro, Gabbrielli, "One Model to Train them All: Hierarchical
    Self-Distillation for Enhanced Early Layer Embeddings", 2025, arXiv 2503.03008.
    """
    check_reduction(reduction, ("sum", "mean"))
    weights = exit_weights(exit_layers, num_layers)
    if len(exit_losses) != len(weights):
        raise ValueError(f"{len(exit_losses)} exit losses for {len(weights)} exits")
    for i, loss in enumerate(exit_losses):
        check_tensor(f"exit_losses[{i}]", loss, ndim=0)
    total = sum(w * loss for w, loss in zip(weights, exit_losses))
    return total / sum(weights) if reduction == "mean" else total
