r"""Losses for speculative-decoding drafts: the total variation distance that sets acceptance.

For one position with target distribution p and draft distribution q, speculative sampling keeps
the draft's token with probability $\beta = \sum_v \min(p_v, q_v) = 1 - \mathrm{TVD}(p, q)$
(Leviathan et al., ICML 2023, arXiv 2211.17192, Def. 3.1 / Thm. 3.5). A draft trained to minimise
TVD therefore maximises the expected acceptance rate directly; DistillSpec (Zhou et al., ICLR
2024, arXiv 2310.08461, Sec. 4.1) uses TVD as one of its divergences for this reason. Same
conventions as ``cookbook.losses.llm`` (``student_logits`` (N, V); dense teacher logits or a
``TopKTeacher``; ``mask``; reductions "mean" over counted tokens, "sum", "none").
"""

from __future__ import annotations

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
