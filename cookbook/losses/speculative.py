r"""Losses for speculative-decoding drafts: the total variation distance that sets acceptance, and
the feature-level head's loss (EAGLE / FSPAD).

For one position with target distribution p and draft distribution q, speculative sampling keeps
the draft's token with probability $\beta = \sum_v \min(p_v, q_v) = 1 - \mathrm{TVD}(p, q)$
(Leviathan et al., ICML 2023, arXiv 2211.17192, Def. 3.1 / Thm. 3.5). A draft trained to minimise
TVD therefore maximises the expected acceptance rate directly; DistillSpec (Zhou et al., ICLR
2024, arXiv 2310.08461, Sec. 4.1) uses TVD as one of its divergences for this reason. Same
conventions as ``cookbook.losses.llm`` (``student_logits`` (N, V); dense teacher logits or a
``TopKTeacher``; ``mask``; reductions "mean" over counted tokens, "sum", "none").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_reduction, check_temperature
from cookbook.losses.llm import (
    REDUCTIONS,
    TopKTeacher,
    check_logits,
    pair_logprobs,
    reduce_tokens,
    token_mask,
)


def tvd_loss(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, T: float = 1.0,
             mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    r"""Total variation distance between the teacher (target) and the student (draft).

    .. math:: \mathrm{TVD}(p, q) = \tfrac12 \sum_v |p_v - q_v| = 1 - \sum_v \min(p_v, q_v),
              \quad q = \mathrm{softmax}(z^s / T),\ p = \mathrm{softmax}(z^t / T)

    1 - TVD is the probability that speculative sampling accepts the draft's token (at T).
    With a top-k teacher it is computed over the k + 1 outcomes (top-k tokens, tail), a lower
    bound of the full-vocabulary TVD (merging outcomes never increases it). Its gradient is
    (1/2) sign(q - p) through the softmax: every token the draft over-weights is pushed down
    by the same force, whatever its size. Shape: (N, V) -> scalar, or (N,) with reduction="none".
    """
    check_logits("student_logits", student_logits)
    check_temperature(T)
    check_reduction(reduction, REDUCTIONS)
    n, vocab = student_logits.shape
    keep = token_mask(n, mask, None, -100, student_logits.device, vocab)
    logq, logp = pair_logprobs(student_logits, teacher_logits, T)                   # (N, V) or (N, k+1)
    per_token = 0.5 * (logp.exp() - logq.exp()).abs().sum(-1)                    # (N,)
    return reduce_tokens(per_token, keep, reduction)


def feature_draft_loss(predict_logits: Tensor, regress: Tensor, target_features: Tensor, target_logits: Tensor, *,
                       v_w: float = 1.0, p_w: float = 0.1, mask: Tensor | None = None) -> Tensor:
    r"""The EAGLE / FSPAD training loss of a feature-level draft head.

    .. math:: \mathcal{L} = v_w\, \mathrm{SmoothL1}(\hat f, f) + p_w\, \big(-\textstyle\sum_v p_v \log \hat q_v\big),
              \quad p = \mathrm{softmax}(z^t),\ \hat q = \mathrm{softmax}(W_{head} \hat f^{pred})

    ``regress`` (N, H) is regressed on the target's next feature ``target_features`` (N, H)
    (SmoothL1, mean over H); ``predict_logits`` (N, V) = the LM head of the predict output is
    distilled to the target's distribution at that position, ``target_logits`` (N, V) (soft cross
    entropy). Both terms are averaged over the counted tokens (``mask`` (N,)). Weights v_w = 1.0,
    p_w = 0.1 as in the official EAGLE and FSPAD training configs (``main_fspad.py``).
    Gui et al., 2024, arXiv 2408.15562; Li et al., EAGLE, ICML 2024, arXiv 2401.15077.
    """
    check_logits("predict_logits", predict_logits)
    if target_logits.shape != predict_logits.shape:
        raise ValueError(f"target_logits {tuple(target_logits.shape)} must match predict_logits "
                         f"{tuple(predict_logits.shape)}")
    if regress.dim() != 2 or regress.shape != target_features.shape or len(regress) != len(predict_logits):
        raise ValueError(f"need regress and target_features (N, H) with N = {len(predict_logits)}, got "
                         f"{tuple(regress.shape)} and {tuple(target_features.shape)}")
    keep = token_mask(len(regress), mask, None, -100, regress.device)
    vloss = F.smooth_l1_loss(regress.float(), target_features.float(), reduction="none").mean(-1)        # (N,)
    ploss = -(target_logits.float().softmax(-1) * predict_logits.float().log_softmax(-1)).sum(-1)         # (N,)
    return reduce_tokens(v_w * vloss + p_w * ploss, keep, "mean")
