r"""Token and data selection rules for LLM distillation: which tokens or domains to train on.

These are not losses but the masks and weights fed to them: a selected token mask goes to any
loss in ``cookbook.losses.llm`` as ``mask=``; domain weights go to the data sampler.

- AdaSPEC: keep the tokens the student can still learn (largest gap to a reference student).
- ssToken: keep tokens by retrospective excess loss (vs. an EMA "history" copy of the student)
  mixed with attention-based semantic importance.
- DDK: sample domains in proportion to the student-teacher perplexity gap, smoothed over time.

Selections keep exactly ``ceil(keep_ratio * n)`` of the n valid tokens (per row for 2-D scores),
breaking ties by position (earlier first); masked tokens are never selected.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cookbook.checks import check_finite_param, check_tensor, check_values


def check_scores(name: str, x: Tensor) -> None:
    check_tensor(name, x)
    if x.ndim not in (1, 2) or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty (N,) or (B, L) tensor, got {tuple(x.shape)}")
    check_values(name, x, allow_inf=True)  # scores rank: +-inf are valid ranks, NaN is not


def valid_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    """mask as bool of the scores' shape (all True when None); at least one must be True."""
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    check_tensor("mask", mask)
    if mask.shape != scores.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must have the scores' shape {tuple(scores.shape)}")
    if not mask.any():
        raise ValueError("every token is masked: nothing to select from")
    return mask.to(device=scores.device, dtype=torch.bool)


def top_fraction(scores: Tensor, keep_ratio: float, mask: Tensor | None = None) -> Tensor:
    """The ceil(keep_ratio * n) highest-scoring valid entries, per row for (B, L) scores.

    Ties go to the earlier position; masked entries are never kept. (N,) or (B, L) -> same, bool.
    """
    check_finite_param("keep_ratio", keep_ratio, 0.0, 1.0, low_open=True)
    check_scores("scores", scores)
    valid = valid_mask(scores, mask)
    rows, valid_rows = scores.reshape(-1, scores.shape[-1]), valid.reshape(-1, scores.shape[-1])
    key = torch.where(valid_rows, rows.double(), -math.inf)  # (R, L)
    by_score = key.argsort(dim=-1, descending=True, stable=True)  # (R, L)
    # a second stable sort puts every valid entry before every masked one, even at score -inf
    by_valid = valid_rows.gather(1, by_score).to(torch.int8).argsort(dim=-1, descending=True,
                                                                     stable=True)
    order = by_score.gather(1, by_valid)  # (R, L) valid entries by score, ties by position
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1],
                                                                   device=order.device).expand_as(order))
    k = torch.ceil(keep_ratio * valid_rows.sum(-1).double() - 1e-9).long()  # (R,)
    return ((rank < k[:, None]) & valid_rows).view(scores.shape)


def adaspec_select(student_loss: Tensor, reference_loss: Tensor, keep_ratio: float,
                   mask: Tensor | None = None) -> Tensor:
    r"""AdaSPEC token filter: keep the tokens with the largest student-minus-reference loss gap.

    .. math:: \Delta_i = \mathcal{L}_{draft}(i) - \mathcal{L}_{ref}(i), \qquad
              \text{keep } i \iff \Delta_i \text{ is among the top } \lceil k\, n\rceil

    where both losses are the per-token distillation loss to the target (teacher), e.g.
    ``forward_kl(..., reduction="none")``, of the draft (student) and of a reference model (a
    copy of the draft distilled on all tokens first). Tokens the reference already fits but the
    draft does not are learnable; tokens both miss are too hard for the draft's capacity and are
    dropped. Selection is over the whole batch of valid tokens, as in the reference code (which
    thresholds at the (1 - k) quantile; we keep exactly ceil(k n) and break ties by position).
    Shape: student_loss, reference_loss, mask (N,) -> (N,) bool.
    Paper: Hu et al., "AdaSPEC: Selective Knowledge Distillation for Efficient Speculative
    Decoders", NeurIPS 2025, arXiv:2510.19779.
    """
    for name, x in (("student_loss", student_loss), ("reference_loss", reference_loss)):
        check_tensor(name, x)
        if x.ndim != 1:
            raise ValueError(f"{name} must be per-token (N,), got shape {tuple(x.shape)}")
    if student_loss.shape != reference_loss.shape:
        raise ValueError(f"student_loss {tuple(student_loss.shape)} and reference_loss "
                         f"{tuple(reference_loss.shape)} must have the same shape")
    return top_fraction(student_loss.detach() - reference_loss.detach(), keep_ratio, mask)


def prompt_attention_scores(attention: Tensor, prompt_mask: Tensor) -> Tensor:
    r"""ssToken's semantic importance: the attention each token pays to the prompt.

    .. math:: a_t = \frac{1}{H} \sum_h \sum_{j \in \text{prompt}} A_{h,t,j}

    ``attention``: post-softmax weights (B, H, L, L) or head-averaged (B, L, L) of one layer
    (query t, key j); ``prompt_mask`` (B, L) bool marks prompt tokens. -> (B, L), each in [0, 1].
    Paper: Qin et al., ssToken, 2025, arXiv:2510.18250.
    """
    check_tensor("attention", attention)
    check_tensor("prompt_mask", prompt_mask)
    if attention.ndim == 4:
        attention = attention.mean(1)
    if attention.ndim != 3 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be (B, H, L, L) or (B, L, L), got {tuple(attention.shape)}")
    if prompt_mask.shape != attention.shape[:2]:
        raise ValueError(f"prompt_mask must be (B, L)={tuple(attention.shape[:2])}, "
                         f"got {tuple(prompt_mask.shape)}")
    return (attention.detach().float() * prompt_mask[:, None, :].float()).sum(-1)  # (B, L)


def sstoken_scores(current_loss: Tensor, history_loss: Tensor, attention_scores: Tensor | None = None,
                   *, gamma: float = 0.5, mask: Tensor | None = None) -> Tensor:
    r"""ssToken score: min-max normalised retrospective excess loss mixed with prompt attention.

    .. math:: \mathrm{REL}_t = \mathcal{L}_{his}(t) - \mathcal{L}_{\theta}(t), \quad
              s_t = \gamma\,\frac{\mathrm{REL}_t - \min \mathrm{REL}}{\max \mathrm{REL}
              - \min \mathrm{REL} + 10^{-8}} + (1 - \gamma)\, a_t

    L are per-token losses (next-token NLL in the paper; a distillation loss works the same way)
    of the current model and of the history model (the base model or an :class:`EMA` of the
    current one). REL > 0: the model has been learning this token, so it is still informative.
    min / max run over each row's valid (response) tokens; a_t comes from
    :func:`prompt_attention_scores` (already in [0, 1], used as is, like the official code).
    gamma = 1 is loss-only and needs no attention; the paper's default is 0.5.
    Shape: losses, attention_scores, mask (B, L) or (N,) -> same; 0 at masked tokens.
    Paper: Qin et al., "ssToken: Self-modulated and Semantic-aware Token Selection for LLM
    Fine-tuning", 2025, arXiv:2510.18250 (official code: github.com/jianke0604/ssToken).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    check_scores("current_loss", current_loss)
    check_scores("history_loss", history_loss)
    if history_loss.shape != current_loss.shape:
        raise ValueError(f"history_loss {tuple(history_loss.shape)} and current_loss "
                         f"{tuple(current_loss.shape)} must have the same shape")
    if attention_scores is None and gamma < 1.0:
        raise ValueError("attention_scores are needed unless gamma = 1 (loss-only selection)")
    valid = valid_mask(current_loss, mask)
    rel = (history_loss - current_loss).detach().double()  # (B, L)
    lo = torch.where(valid, rel, math.inf).amin(-1, keepdim=True)
    hi = torch.where(valid, rel, -math.inf).amax(-1, keepdim=True)
    score = gamma * (rel - lo) / (hi - lo + 1e-8)
    if attention_scores is not None:
        if attention_scores.shape != current_loss.shape:
            raise ValueError(f"attention_scores {tuple(attention_scores.shape)} must have the "
                             f"losses' shape {tuple(current_loss.shape)}")
        check_scores("attention_scores", attention_scores)
        score = score + (1 - gamma) * attention_scores.detach().double()
    return torch.where(valid, score, torch.zeros_like(score)).to(current_loss.dtype)


def sstoken_select(scores: Tensor, keep_ratio: float, mask: Tensor | None = None) -> Tensor:
    """ssToken: keep the top ceil(keep_ratio * n) valid tokens of each sequence by
    :func:`sstoken_scores` (the paper keeps rho = 0.6 of the response tokens).
    Shape: scores, mask (B, L) (or (N,) for one sequence) -> bool of the same shape.
    Paper: Qin et al., ssToken, 2025, arXiv:2510.18250.
    """
    return top_fraction(scores, keep_ratio, mask)


class EMA:
    r"""An exponential moving average of a model's weights: ssToken's adaptive history model.

    .. math:: \theta_{his} \leftarrow \beta\,\theta_{his} + (1 - \beta)\,\theta

    ``module`` is a frozen deep copy of the model (eval mode); ``update(model)`` after each
    optimiser step moves it toward the model (buffers are copied), ``copy_to(other)`` loads its
    weights into another module of the same architecture. decay = 1 keeps the initial model fixed
    (the paper's default history model is the base model before fine-tuning).
    """

    def __init__(self, model: nn.Module, decay: float = 0.99):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for mine, theirs in zip(self.module.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1.0 - self.decay)
        for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.module.state_dict())


def ddk_domain_weights(student_domain_loss: Tensor, teacher_domain_loss: Tensor,
                       previous: Tensor | None = None, smoothing: float = 0.5) -> Tensor:
    r"""DDK domain sampling weights from the student-teacher perplexity gap per domain.

    With per-domain validation perplexities :math:`\ell_S[i] = e^{CE_S[i]}`, :math:`\ell_T[i]`:

    .. math:: r_0[i] = \mathrm{softmax}_i\big(\ell_S[i] / \ell_T[i]\big)

    and, every K steps, the factor smooth update from the previous weights :math:`r_t`:

    .. math:: \psi[i] = r_t[i]\, e^{\ell_S[i] / \ell_T[i]}, \qquad
              r_{t+1}[i] = \alpha\,\frac{\psi[i]}{\sum_j \psi[j]} + \frac{1 - \alpha}{N}

    ``smoothing`` is alpha (0.5 in the paper): the history r_t enters multiplicatively through psi
    and the constant (1 - alpha)/N keeps every domain sampled. Computed in log space (float64).
    Shape: student_domain_loss, teacher_domain_loss (mean cross-entropy per domain), previous
    (N domains,) -> (N,) probabilities summing to 1. The domain with the larger gap gets more.
    Paper: Liu et al., "DDK: Distilling Domain Knowledge for Efficient Large Language Models",
    NeurIPS 2024, arXiv:2407.16154 (Eq. 1 and 2).
    """
    losses = (student_domain_loss, teacher_domain_loss)
    check_tensor("student_domain_loss", student_domain_loss)
    check_tensor("teacher_domain_loss", teacher_domain_loss)
    check_tensor("previous", previous, optional=True)
    if any(x.ndim != 1 or x.numel() == 0 for x in losses) or \
            student_domain_loss.shape != teacher_domain_loss.shape:
        raise ValueError(f"student and teacher domain losses must be (N domains,) of equal shape, "
                         f"got {tuple(student_domain_loss.shape)}, {tuple(teacher_domain_loss.shape)}")
    if not all(torch.isfinite(x).all() for x in losses):
        raise ValueError("domain losses must be finite (no NaN / inf)")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing (DDK's alpha) must be in [0, 1], got {smoothing}")
    ratio = (student_domain_loss.double() - teacher_domain_loss.double()).exp()  # l_S / l_T (N,)
    if not torch.isfinite(ratio).all():
        raise ValueError("perplexity ratio overflows: are the domain losses cross-entropies (nats)?")
    if previous is None:
        return F.softmax(ratio, dim=0)
    if previous.shape != ratio.shape or not torch.isfinite(previous).all() or (previous < 0).any() \
            or abs(float(previous.double().sum()) - 1.0) > 1e-6:
        raise ValueError(f"previous must be a probability vector over the {ratio.numel()} domains")
    psi = F.softmax(previous.double().log() + ratio, dim=0)  # psi / sum(psi)
    return smoothing * psi + (1.0 - smoothing) / ratio.numel()
