r"""Distillation divergences for language models, over flattened tokens.

These are the pure reference functions: they build the full (N, V) log-probabilities, so they are
clear and exact but cost O(N * V) memory. ``cookbook.kernels.fused_linear_distill`` computes the
same numbers chunk by chunk without ever holding the (N, V) logits (and is tested against these).

Conventions shared by every function here and by ``cookbook.kernels``:

- ``student_logits`` is (N, V): N tokens (flatten (B, L) first), V the vocabulary.
- ``teacher_logits`` is either dense logits (N, V) or a :class:`TopKTeacher` (see below).
- ``T`` is the temperature: q = softmax(z_s / T), p = softmax(z_t / T). There is **no** T**2 factor
  (LLM distillation usually trains at T = 1); multiply by ``T**2`` yourself for Hinton's scaling.
- Token selection: ``mask`` (N,) bool, True = the token counts; and/or ``labels`` (N,) with
  ``ignore_index`` (default -100, the Hugging Face convention) marking tokens to skip. A token
  counts when both allow it.
- ``reduction``: ``"mean"`` (default) sums over the vocabulary and averages over the counted
  tokens (PyTorch's ``batchmean`` over token rows, *not* ``F.kl_div``'s default mean over N * V
  elements); ``"sum"`` sums over counted tokens; ``"none"`` returns (N,) with 0 at skipped tokens.
- Log-probabilities are floored at -1e30 so that zero probabilities give 0 * finite = 0 instead of
  NaN; a divergence that is truly infinite (reverse KL against a teacher probability of exactly 0)
  is therefore capped at a huge finite value.

Top-k teachers (the format of the LLM teacher cache)
----------------------------------------------------
A :class:`TopKTeacher` holds, per token, the teacher's k most likely next tokens:
``indices`` (N, k) int64, distinct within a row, in [0, V); ``logprobs`` (N, k) float, the teacher's
log-probabilities ``log_softmax(z_t / T)`` at those ids, computed over the *full* vocabulary at the
training temperature ``T`` (recorded in the field ``T``; a loss called with another T raises).
The tail mass ``r = 1 - sum_k exp(logprobs)`` is the teacher's probability of the other V - k
tokens. It is handled explicitly: every divergence is computed over k + 1 outcomes, the k listed
tokens plus one "tail" outcome, whose student probability is the student's total probability on the
unlisted tokens. Nothing is renormalised and nothing is assumed about how the tail is spread. By the
data-processing inequality the result never exceeds the divergence over the full vocabulary, and it
equals it when k = V. When k < V the tail mass is floored at ``TAIL_FLOOR`` (1e-6): log-probs
stored in float16 can sum to 1 after rounding, and a tail of exactly 0 would make reverse KL (and
every divergence that weighs log p by the student's mass) explode on the student's tail mass.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import (
    check_choice,
    check_finite_param,
    check_int,
    check_labels,
    check_reduction,
    check_temperature,
    check_tensor,
    check_unit_interval,
    check_values,
    values_checked,
)

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "taid")  # also computed by cookbook.kernels
ALL_DIVERGENCES = DIVERGENCES + ("skew_kl", "skew_rkl")  # reference functions only
REDUCTIONS = ("mean", "sum", "none")
NEG = -1e30  # floor for log-probabilities: exp(NEG) == 0 exactly, and NEG - NEG is finite
TAIL_FLOOR = 1e-6  # least tail mass of a top-k teacher with k < V (see the module docstring)


class TopKTeacher(NamedTuple):
    """A teacher given by its top-k next-token log-probabilities (see the module docstring).

    Shape: indices (N, k) int64, logprobs (N, k) float; T is the temperature they were computed at.
    """

    indices: Tensor  # (N, k) int64
    logprobs: Tensor  # (N, k)
    T: float = 1.0

    @classmethod
    def from_logits(cls, teacher_logits: Tensor, k: int, *, T: float = 1.0) -> TopKTeacher:
        """Keep the k most likely tokens of dense teacher logits (N, V) at temperature T."""
        check_tensor("teacher_logits", teacher_logits)
        check_temperature(T)
        check_int("k", k, 1)
        if not 1 <= k <= teacher_logits.shape[-1]:
            raise ValueError(f"k must be in [1, V={teacher_logits.shape[-1]}], got {k}")
        logp = F.log_softmax(teacher_logits.float() / T, dim=-1)  # (N, V)
        top = logp.topk(k, dim=-1)
        return cls(top.indices, top.values, float(T))

    def tail_mass(self) -> Tensor:
        """r = 1 - sum_k exp(logprobs), clamped at 0: the teacher's mass outside the top k. (N,)"""
        return (1.0 - self.logprobs.float().exp().sum(-1)).clamp_min(0.0)

    def select(self, rows: Tensor | slice) -> TopKTeacher:
        """The same teacher restricted to some token rows (a slice or an index tensor)."""
        return TopKTeacher(self.indices[rows], self.logprobs[rows], self.T)

    def unlisted_logprob(self, vocab: int) -> Tensor:
        """log(r / (V - k)): the log-prob of one unlisted token when the tail mass r is spread
        evenly over the V - k tokens outside the top k. (N,)"""
        rest = max(vocab - self.indices.shape[1], 1)
        return (self.tail_mass().clamp_min(1e-30) / rest).log()

    def to_dense(self, vocab: int) -> Tensor:
        """Full log-probs (N, V): the top-k as stored, the tail mass spread evenly over the other
        V - k tokens (the maximum-entropy completion). For losses that need a dense teacher
        (Sinkhorn, DAC-KL); the k + 1 outcome losses never need it."""
        n, k = self.indices.shape
        if vocab < k:
            raise ValueError(f"vocab {vocab} is smaller than k={k}")
        dense = self.unlisted_logprob(vocab)[:, None].expand(n, vocab).clone()
        return dense.scatter(1, self.indices, self.logprobs.float())


# ----------------------------------------------------------------------------- validation


def check_divergence(divergence: str, beta: float, t: float | None, alpha: float = 0.1,
                     allowed: tuple[str, ...] = DIVERGENCES) -> None:
    check_choice("divergence", divergence, allowed)
    if divergence in ("skew_kl", "skew_rkl") and not 0.0 <= alpha < 1.0:
        raise ValueError(f"the skew alpha must be in [0, 1) (alpha = 1 makes the skewed mixture "
                         f"equal the source, so the loss is identically 0), got {alpha}")
    if divergence == "jsd":
        check_unit_interval(beta, "beta (the generalized JSD's weight)")
    if divergence == "taid" and t is None:
        raise ValueError("TAID needs its interpolation time t in [0, 1] (see TAIDSchedule)")
    if divergence == "taid":
        check_unit_interval(t, "TAID's interpolation time t")


def check_topk(teacher: TopKTeacher, n: int, vocab: int, T: float) -> None:
    idx, lp = teacher.indices, teacher.logprobs
    check_tensor("top-k indices", idx)
    check_tensor("top-k logprobs", lp)
    check_finite_param("the top-k teacher's T", teacher.T, 0.0, low_open=True)
    if idx.ndim != 2 or lp.shape != idx.shape:
        raise ValueError(f"top-k teacher needs indices and logprobs of the same shape (N, k), "
                         f"got {tuple(idx.shape)} and {tuple(lp.shape)}")
    if idx.dtype != torch.int64:
        raise ValueError(f"top-k indices must be int64, got {idx.dtype} (use .long())")
    if idx.shape[0] != n:
        raise ValueError(f"top-k teacher has {idx.shape[0]} tokens but the student has {n}")
    if abs(teacher.T - T) > 1e-6 * max(1.0, T):
        raise ValueError(f"the top-k teacher was computed at T={teacher.T} but the loss was "
                         f"called with T={T}; rebuild the cache at the temperature you train with")
    if not values_checked():
        return
    if idx.numel() and (idx.min() < 0 or idx.max() >= vocab):
        raise ValueError(f"top-k indices must lie in [0, V={vocab}): the teacher's vocabulary "
                         f"does not match the student's (max index {int(idx.max())})")
    if idx.shape[1] > 1 and (idx.sort(-1).values.diff(dim=-1) == 0).any():
        raise ValueError("top-k indices must be distinct within each row")
    if torch.isnan(lp).any():
        raise ValueError("NaN in the top-k teacher logprobs")
    if idx.numel() and lp.float().exp().sum(-1).max() > 1.0 + 1e-3:
        raise ValueError("top-k logprobs are not log-probabilities: exp(logprobs) sums to > 1 "
                         "in some row (store log_softmax values, not raw logits)")


def token_mask(n: int, mask: Tensor | None, labels: Tensor | None, ignore_index: int,
               device: torch.device, vocab: int | None = None) -> Tensor:
    """The (N,) bool selection of counted tokens from ``mask`` and ``labels``/``ignore_index``.

    labels: any integer dtype; with ``vocab`` the counted ones must be token ids in [0, vocab)."""
    keep = torch.ones(n, dtype=torch.bool, device=device)
    check_tensor("mask", mask, optional=True)
    check_tensor("labels", labels, optional=True)
    if mask is not None:
        if mask.shape != (n,):
            raise ValueError(f"mask must have shape (N,)=({n},), got {tuple(mask.shape)}")
        keep &= mask.to(device=device, dtype=torch.bool)
    if labels is not None:
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape (N,)=({n},), got {tuple(labels.shape)}")
        check_labels(labels, vocab, ignore_index, any_int=True, size_name="V",
                     where=None if mask is None else keep.to(labels.device))
        keep &= labels.to(device) != ignore_index
    if not bool(keep.any()):
        raise ValueError("every token is masked (mask / labels == ignore_index): nothing to distil")
    return keep


def check_logits(name: str, x: Tensor) -> None:
    check_tensor(name, x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, V): flatten (B, L, V) with .flatten(0, 1), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    check_values(name, x, allow_neg_inf=True)  # -inf = a token of probability 0


# ----------------------------------------------------------------------------- row divergences


def rowdot(x: Tensor, y: Tensor) -> Tensor:
    """sum_j x_ij y_ij without an (N, V) temporary."""
    return torch.bmm(x.unsqueeze(1), y.unsqueeze(2)).view(-1)


def row_divergence(logq: Tensor, logp: Tensor, *, divergence: str, beta: float = 0.5,
                   t: float | None = None, alpha: float = 0.1) -> Tensor:
    r"""Per-row divergence between student log-probs ``logq`` and teacher log-probs ``logp``.

    Rows are distributions over the last dim (V tokens, or the k + 1 top-k outcomes). (N, V) -> (N,)
    """
    logq, logp = logq.clamp_min(NEG), logp.clamp_min(NEG)
    q, p = logq.exp(), logp.exp()
    if divergence == "forward_kl" or (divergence == "jsd" and beta == 0.0):
        return rowdot(p, logp - logq)  # KL(p || q)
    if divergence == "reverse_kl" or (divergence == "jsd" and beta == 1.0):
        return rowdot(q, logq - logp)  # KL(q || p)
    if divergence == "jsd":
        logm = torch.logaddexp(logp + math.log(beta), logq + math.log1p(-beta))  # m = b p + (1-b) q
        return beta * rowdot(p, logp - logm) + (1 - beta) * rowdot(q, logq - logm)
    if divergence == "skew_kl":
        return rowdot(p, logp - log_mixture(logp, logq, alpha))  # KL(p || a p + (1-a) q)
    if divergence == "skew_rkl":
        return rowdot(q, logq - log_mixture(logq, logp, alpha))  # KL(q || a q + (1-a) p)
    mix = (1 - t) * logq.detach() + t * logp  # TAID: the target never carries gradient
    logr = F.log_softmax(mix, dim=-1)
    return rowdot(logr.exp(), logr - logq)  # KL(r_t || q)


def log_mixture(logx: Tensor, logy: Tensor, alpha: float) -> Tensor:
    """log(alpha x + (1 - alpha) y) from log x and log y, for alpha in [0, 1)."""
    if alpha == 0.0:
        return logy
    return torch.logaddexp(logx + math.log(alpha), logy + math.log1p(-alpha))


def bins_from_parts(a_top: Tensor, lse_tail: Tensor, logprobs: Tensor, *,
                    tail_empty: bool) -> tuple[Tensor, Tensor]:
    """k + 1 outcome log-probs from the student's top-k scaled logits a_top (N, k), the
    log-sum-exp of its other logits lse_tail (N,) and the teacher's logprobs (N, k)."""
    lse = torch.logaddexp(lse_tail, a_top.logsumexp(-1))  # (N,) student normaliser
    logq = torch.cat([a_top, lse_tail[:, None]], dim=1) - lse[:, None]  # (N, k+1)
    tail = (1.0 - logprobs.float().exp().sum(-1)).clamp_min(TAIL_FLOOR)  # (N,) teacher tail mass r
    if tail_empty:  # k = V: the tail is empty, so r is rounding noise, not mass
        tail = torch.zeros_like(tail)
    logp = torch.cat([logprobs.float(), tail.log()[:, None]], dim=1)  # (N, k+1)
    return logq, logp


def topk_bins(student_logits: Tensor, teacher: TopKTeacher, T: float) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probs over the k + 1 outcomes (top-k tokens, tail). (N, k+1) each."""
    a = student_logits.float() / T  # (N, V)
    a_top = a.gather(1, teacher.indices)  # (N, k)
    lse_tail = a.scatter(1, teacher.indices, NEG).logsumexp(-1)  # (N,)
    return bins_from_parts(a_top, lse_tail, teacher.logprobs,
                           tail_empty=teacher.indices.shape[1] == a.shape[1])


def pair_logprobs(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, T: float) -> tuple[Tensor, Tensor]:
    """Student and teacher log-probs at T over what they can be compared on: the full vocabulary
    for dense teacher logits (N, V) each, the k + 1 outcomes for a top-k teacher (N, k+1) each.
    Checks the teacher against the (already checked) student logits."""
    n, vocab = student_logits.shape
    if isinstance(teacher_logits, TopKTeacher):
        check_topk(teacher_logits, n, vocab, T)
        return topk_bins(student_logits, teacher_logits, T)  # (N, k+1)
    check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                         f"{tuple(student_logits.shape)} differ: vocabularies must match")
    return (F.log_softmax(student_logits.float() / T, dim=-1),  # (N, V)
            F.log_softmax(teacher_logits.float() / T, dim=-1))


def reduce_tokens(per_token: Tensor, keep: Tensor, reduction: str) -> Tensor:
    """Apply the token selection and the reduction to per-token losses (N,)."""
    per_token = torch.where(keep, per_token, torch.zeros_like(per_token))
    if reduction == "none":
        return per_token
    total = per_token.sum()
    return total / keep.sum() if reduction == "mean" else total


# ----------------------------------------------------------------------------- public losses


def distill_loss(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *,
                 divergence: str = "forward_kl", T: float = 1.0, beta: float = 0.5,
                 t: float | None = None, alpha: float = 0.1, mask: Tensor | None = None,
                 labels: Tensor | None = None, ignore_index: int = -100,
                 reduction: str = "mean") -> Tensor:
    r"""Any of the token-level divergences, on dense or top-k teachers (the reference).

    .. math:: \mathcal{L} = \frac{1}{|\mathcal{M}|}\sum_{i \in \mathcal{M}} D\big(p_i, q_i\big),
              \quad q_i = \mathrm{softmax}(z^s_i / T),\ p_i = \mathrm{softmax}(z^t_i / T)

    ``divergence``: "forward_kl", "reverse_kl", "jsd" (uses ``beta``), "taid" (uses ``t``), and
    DistiLLM's "skew_kl" / "skew_rkl" (use ``alpha``; not in ``cookbook.kernels``).
    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher (N, k) -> scalar
    (or (N,) with reduction="none").
    """
    check_logits("student_logits", student_logits)
    check_temperature(T)
    check_divergence(divergence, beta, t, alpha, allowed=ALL_DIVERGENCES)
    check_reduction(reduction, REDUCTIONS)
    n, vocab = student_logits.shape
    keep = token_mask(n, mask, labels, ignore_index, student_logits.device, vocab)
    logq, logp = pair_logprobs(student_logits, teacher_logits, T)
    per_token = row_divergence(logq, logp, divergence=divergence, beta=beta, t=t,
                               alpha=alpha)  # (N,)
    return reduce_tokens(per_token, keep, reduction)


def forward_kl(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, T: float = 1.0,
               mask: Tensor | None = None, labels: Tensor | None = None, ignore_index: int = -100,
               reduction: str = "mean") -> Tensor:
    r"""Forward KL, the classic distillation loss (mean-seeking: the student covers every mode).

    .. math:: \mathrm{KL}(p \,\|\, q) = \sum_v p_v (\log p_v - \log q_v)

    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015,
    arXiv:1503.02531 (here without the T^2 factor).
    """
    return distill_loss(student_logits, teacher_logits, divergence="forward_kl", T=T, mask=mask,
                        labels=labels, ignore_index=ignore_index, reduction=reduction)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, T: float = 1.0,
               mask: Tensor | None = None, labels: Tensor | None = None, ignore_index: int = -100,
               reduction: str = "mean") -> Tensor:
    r"""Reverse KL (mode-seeking: the student may drop teacher modes it cannot fit).

    .. math:: \mathrm{KL}(q \,\|\, p) = \sum_v q_v (\log q_v - \log p_v)

    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", 2023,
    arXiv:2306.08543 (the token-level term; MiniLLM optimises it at sequence level).
    """
    return distill_loss(student_logits, teacher_logits, divergence="reverse_kl", T=T, mask=mask,
                        labels=labels, ignore_index=ignore_index, reduction=reduction)


def generalized_jsd(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *,
                    beta: float = 0.5, T: float = 1.0, mask: Tensor | None = None,
                    labels: Tensor | None = None, ignore_index: int = -100,
                    reduction: str = "mean") -> Tensor:
    r"""Generalized Jensen-Shannon divergence JSD(beta) of GKD.

    .. math:: \mathrm{JSD}_\beta = \beta\,\mathrm{KL}(p \,\|\, m) + (1-\beta)\,\mathrm{KL}(q \,\|\, m),
              \quad m = \beta p + (1-\beta) q

    The formula is identically 0 at beta = 0 and 1; as GKD, TRL and Liger do, those endpoints
    return forward KL (beta = 0) and reverse KL (beta = 1), the limits of JSD(beta) / beta and
    JSD(beta) / (1 - beta). beta = 0.5 is the symmetric JSD, bounded by log 2.
    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
    Mistakes" (GKD), 2023, arXiv:2306.13649.
    """
    return distill_loss(student_logits, teacher_logits, divergence="jsd", beta=beta, T=T,
                        mask=mask, labels=labels, ignore_index=ignore_index, reduction=reduction)


def taid_target(student_logits: Tensor, teacher_logits: Tensor, *, t: float,
                T: float = 1.0) -> Tensor:
    r"""TAID's intermediate target: a geometric interpolation of the detached student and teacher.

    .. math:: r_t = \mathrm{softmax}\big((1-t)\,\log q'  + t \log p\big), \quad q' = \mathrm{sg}(q)

    Shape: student_logits, teacher_logits (N, V) -> (N, V) probabilities. t = 0 gives the student,
    t = 1 the teacher. Paper: Shing et al., "TAID: Temporally Adaptive Interpolated Distillation for
    Efficient Knowledge Transfer in Language Models", 2025, arXiv:2501.16937.
    """
    check_divergence("taid", 0.5, t)
    check_temperature(T)
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                         f"{tuple(student_logits.shape)} differ: vocabularies must match")
    logq = F.log_softmax(student_logits.detach().float() / T, dim=-1)  # (N, V)
    logp = F.log_softmax(teacher_logits.float() / T, dim=-1)  # (N, V)
    return F.softmax((1 - t) * logq + t * logp, dim=-1)


def taid_loss(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, t: float,
              T: float = 1.0, mask: Tensor | None = None, labels: Tensor | None = None,
              ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    r"""TAID: forward KL from the time-dependent interpolated target :func:`taid_target` to q.

    .. math:: \mathcal{L}_{TAID}(t) = \mathrm{KL}(r_t \,\|\, q)

    The paper writes the cross-entropy -sum r_t log q; the two differ by the entropy of the
    detached target, so their gradients are identical. t comes from :class:`TAIDSchedule`.
    For a top-k teacher the interpolation runs over the k + 1 outcomes.
    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Shing et al., TAID, 2025, arXiv:2501.16937.
    """
    return distill_loss(student_logits, teacher_logits, divergence="taid", t=t, T=T, mask=mask,
                        labels=labels, ignore_index=ignore_index, reduction=reduction)


class TAIDSchedule:
    r"""TAID's adaptive time t (Algorithm 1 of arXiv:2501.16937).

    After every step call ``update(loss)``. With the relative loss change
    :math:`\delta_n = (J_{n-1} - J_n) / (J_{n-1} + \epsilon)` and its momentum
    :math:`m_n = \mu m_{n-1} + (1-\mu)\delta_n`:

    .. math:: t_{n+1} = \min\big(t_{end},\ \max(t_{lin}(n),\ t_n + \alpha\,\sigma(m_n)(1 - t_n))\big)

    where :math:`t_{lin}` rises linearly from t_start to t_end over ``total_steps``: t never
    decreases, moves faster while the loss is falling fast, and reaches t_end by the last step.
    Defaults are the paper's (t_start 0.4, t_end 1, alpha 5e-4, momentum 0.99).
    """

    def __init__(self, total_steps: int, *, t_start: float = 0.4, t_end: float = 1.0,
                 alpha: float = 5e-4, momentum: float = 0.99):
        if total_steps <= 0 or not 0.0 <= t_start <= t_end <= 1.0:
            raise ValueError("need total_steps > 0 and 0 <= t_start <= t_end <= 1")
        check_int("total_steps", total_steps, 1)
        check_finite_param("alpha", alpha, 0.0)
        check_finite_param("momentum", momentum, 0.0, 1.0)
        self.total_steps, self.t_start, self.t_end = total_steps, t_start, t_end
        self.alpha, self.momentum = alpha, momentum
        self.t, self.step, self.m, self.prev_loss = t_start, 0, 0.0, None

    def update(self, loss: float) -> float:
        """Record this step's loss and return the t to use for the next step."""
        loss = float(loss)
        self.step += 1
        if self.prev_loss is None:  # the first step only records the loss
            self.prev_loss = loss
            return self.t
        delta = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.m = self.momentum * self.m + (1 - self.momentum) * delta
        t_lin = self.t_start + (self.t_end - self.t_start) * min(1.0, self.step / self.total_steps)
        step_up = self.alpha / (1 + math.exp(-self.m)) * (1 - self.t)
        self.t = min(self.t_end, max(t_lin, self.t + step_up))
        self.prev_loss = loss
        return self.t


# ----------------------------------------------------------------------------- DistiLLM skew KL


def skew_kl(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, alpha: float = 0.1,
            T: float = 1.0, mask: Tensor | None = None, labels: Tensor | None = None,
            ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    r"""Skew forward KL of DistiLLM: forward KL to a mixture that always keeps some student mass.

    .. math:: \mathrm{SKL}_\alpha(p, q) = \mathrm{KL}\big(p \,\|\, \alpha p + (1-\alpha) q\big)

    The mixture bounds the log-ratio by -log(alpha), so the loss and its gradient stay finite where
    the student puts almost no mass. alpha = 0 is forward KL; the paper uses alpha = 0.1. Gradients
    flow through the mixture, as in the reference code. Top-k teachers use the k + 1 bins.
    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Ko et al., "DistiLLM: Towards Streamlined Distillation for Large Language Models",
    ICML 2024, arXiv:2402.03898.
    """
    return distill_loss(student_logits, teacher_logits, divergence="skew_kl", alpha=alpha, T=T,
                        mask=mask, labels=labels, ignore_index=ignore_index, reduction=reduction)


def skew_reverse_kl(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *,
                    alpha: float = 0.1, T: float = 1.0, mask: Tensor | None = None,
                    labels: Tensor | None = None, ignore_index: int = -100,
                    reduction: str = "mean") -> Tensor:
    r"""Skew reverse KL of DistiLLM: reverse KL to a mixture that always keeps some teacher mass.

    .. math:: \mathrm{SRKL}_\alpha(p, q) = \mathrm{KL}\big(q \,\|\, \alpha q + (1-\alpha) p\big)

    alpha = 0 is reverse KL; the paper uses alpha = 0.1. Top-k teachers use the k + 1 bins.
    Shape: student_logits (N, V); teacher_logits (N, V) or TopKTeacher -> scalar (mean over tokens).
    Paper: Ko et al., DistiLLM, ICML 2024, arXiv:2402.03898.
    """
    return distill_loss(student_logits, teacher_logits, divergence="skew_rkl", alpha=alpha, T=T,
                        mask=mask, labels=labels, ignore_index=ignore_index, reduction=reduction)


# ----------------------------------------------------------------------------- SinKD


def check_dense_pair(student_logits: Tensor, teacher_logits: Tensor, T: float,
                     reduction: str) -> None:
    """Checks for the losses that need full teacher rows (no top-k cache)."""
    if isinstance(teacher_logits, TopKTeacher):
        raise ValueError("this loss needs dense teacher logits (N, V), not a TopKTeacher")
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                         f"{tuple(student_logits.shape)} differ: vocabularies must match")
    check_temperature(T)
    check_reduction(reduction, REDUCTIONS)


def sinkhorn_plan(cost: Tensor, *, epsilon: float, n_iter: int) -> Tensor:
    r"""Entropic optimal-transport plan between two uniform measures, in log space.

    .. math:: P = \arg\min_{P \in U(\frac{1}{M}\mathbf{1}, \frac{1}{M}\mathbf{1})}
              \langle P, C\rangle - \epsilon H(P),
              \quad P = \mathrm{diag}(u)\, e^{-C/\epsilon}\, \mathrm{diag}(v)

    ``n_iter`` Sinkhorn iterations, each a row then a column scaling (log-sum-exp, so no underflow
    for small epsilon). Gradients flow through the unrolled iterations. cost (M, M) -> plan (M, M).
    """
    m = cost.shape[0]
    log_k = -cost / epsilon  # (M, M)
    log_marginal = -math.log(m)
    log_v = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for _ in range(n_iter):
        log_u = log_marginal - torch.logsumexp(log_k + log_v[None, :], dim=1)  # rows sum to 1/M
        log_v = log_marginal - torch.logsumexp(log_k + log_u[:, None], dim=0)  # cols sum to 1/M
    return (log_u[:, None] + log_k + log_v[None, :]).exp()


def sinkhorn_loss(student_logits: Tensor, teacher_logits: Tensor, *, T: float = 1.0,
                  epsilon: float = 0.1, n_iter: int = 20, mask: Tensor | None = None,
                  labels: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean") -> Tensor:
    r"""SinKD: the batch-wise Sinkhorn distance between student and teacher token distributions.

    SinKD does not compare each student row with its own teacher row. It treats the M counted
    tokens of the batch as two empirical measures, {q_i} (student) and {p_j} (teacher), with cost
    the L1 distance between distributions, and transports one onto the other:

    .. math:: C_{ij} = \lVert q_i - p_j \rVert_1, \qquad
              \mathcal{L} = \langle P^\star, C\rangle = \sum_{ij} P^\star_{ij} C_{ij}

    with P* the entropic plan of :func:`sinkhorn_plan` (uniform marginals 1/M, regulariser
    ``epsilon``, ``n_iter`` iterations). Matching student i to teacher i costs 0 when they agree,
    but the entropic plan also spreads mass onto other pairs, so the loss at student == teacher is
    a small positive "entropic bias" that vanishes as epsilon -> 0 (for distinct rows).
    ``reduction``: "mean" is <P*, C> with marginals 1/M (the average transport cost per token);
    "sum" is M times that, which is the reference code's plan with unit marginals; "none" gives
    each counted student token's share M * sum_j P*_ij C_ij (N,), 0 at skipped tokens. No T^2.
    Cost: the (M, M) L1 cost costs O(M^2 V): call it on a few hundred tokens, not a whole batch of
    49k-way rows. Dense teachers only (the batch-wise cost needs full rows).
    Shape: student_logits, teacher_logits (N, V) -> scalar.
    Paper: Cui et al., "Sinkhorn Distance Minimization for Knowledge Distillation", LREC-COLING
    2024, arXiv:2402.17110 (reference code: github.com/2018cx/SinKD, loss.py).
    """
    check_dense_pair(student_logits, teacher_logits, T, reduction)
    if not epsilon > 0 or n_iter < 1:
        raise ValueError(f"need epsilon > 0 and n_iter >= 1, got epsilon={epsilon}, n_iter={n_iter}")
    check_finite_param("epsilon", epsilon, 0.0, low_open=True)
    check_int("n_iter", n_iter, 1)
    n, vocab = student_logits.shape
    keep = token_mask(n, mask, labels, ignore_index, student_logits.device, vocab)
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    q = F.softmax(student_logits[keep].to(dtype) / T, dim=-1)  # (M, V)
    p = F.softmax(teacher_logits[keep].to(dtype) / T, dim=-1)  # (M, V)
    cost = torch.cdist(q, p, p=1)  # (M, M)
    plan = sinkhorn_plan(cost, epsilon=epsilon, n_iter=n_iter)  # (M, M)
    share = q.shape[0] * (plan * cost).sum(1)  # (M,) averages to <P, C>
    per_token = torch.zeros(n, dtype=dtype, device=share.device).masked_scatter(keep, share)
    return reduce_tokens(per_token, keep, reduction)


# ----------------------------------------------------------------------------- DAC-KL


def quantile_threshold(sorted_rows: Tensor, level: float | Tensor, rounding) -> Tensor:
    """The value at rank round(level * (V - 1)) of each ascending row. (N, V) -> (N, 1)"""
    n, vocab = sorted_rows.shape
    level = torch.as_tensor(level, dtype=torch.float64, device=sorted_rows.device).expand(n)
    rank = rounding(level * (vocab - 1)).long().clamp(0, vocab - 1)  # (N,)
    return sorted_rows.gather(1, rank[:, None])


def dac_kl_keep(teacher_probs: Tensor, lower: float | Tensor, upper: float | Tensor) -> Tensor:
    """Vocabulary entries whose teacher probability lies between the row's ``lower`` and ``upper``
    quantiles (over the V entries). (N, V) -> (N, V) bool, never empty."""
    ranked = teacher_probs.sort(dim=-1).values  # (N, V) ascending
    lo = quantile_threshold(ranked, lower, torch.ceil)  # (N, 1)
    hi = quantile_threshold(ranked, upper, torch.floor)  # (N, 1)
    return (teacher_probs >= lo) & (teacher_probs <= hi)


def dac_kl_loss(student_logits: Tensor, teacher_logits: Tensor | TopKTeacher, *, lower: float | Tensor = 0.99,
                upper: float | Tensor = 1.0, T: float = 1.0, mask: Tensor | None = None,
                labels: Tensor | None = None, ignore_index: int = -100,
                reduction: str = "mean") -> Tensor:
    r"""DAC-KL: forward KL restricted to the high-density part of the teacher distribution.

    For each token, keep the vocabulary entries S whose teacher probability lies between the
    row's ``lower`` and ``upper`` quantiles (taken over the V entries), plus the target token
    ``labels`` when given; renormalise teacher and student over S and take forward KL:

    .. math:: \tilde p_v = \frac{p_v [v \in S]}{\sum_{u \in S} p_u},\quad
              \tilde q_v = \frac{q_v [v \in S]}{\sum_{u \in S} q_u},\quad
              \mathcal{L} = \mathrm{KL}(\tilde p \,\|\, \tilde q)

    With lower = 0 and upper = 1 nothing is clipped and this is forward KL.
    NOT the paper's learned rule: MGSR predicts the two quantile bounds per token with a small
    learnable sub-network fed the teacher distribution, trained through the loss. The paper does
    not specify that network, so here the bounds are fixed hyper-parameters (defaults are ours:
    the top 1 % of the vocabulary, ~490 of SmolLM2's 49,152 tokens, plus the target). ``lower`` /
    ``upper`` may also be (N,) tensors, e.g. from your own predictor, but the hard clip passes no
    gradient to them. A :class:`TopKTeacher` is already a clip: it goes to :func:`dac_kl_topk`
    (S = its k tokens + the target; ``lower`` / ``upper`` are then unused). No T^2.
    Shape: student_logits, teacher_logits (N, V); labels (N,) -> scalar (mean over tokens).
    Paper: Liu et al., "Multi-Granularity Semantic Revision for Large Language Model
    Distillation" (MGSR), 2024, arXiv:2407.10068.
    """
    if isinstance(teacher_logits, TopKTeacher):
        return dac_kl_topk(student_logits, teacher_logits, T=T, mask=mask, labels=labels,
                           ignore_index=ignore_index, reduction=reduction)
    check_dense_pair(student_logits, teacher_logits, T, reduction)
    for name, b in (("lower", lower), ("upper", upper)):
        if not isinstance(b, (torch.Tensor, int, float)):
            raise TypeError(f"{name} must be a float or an (N,) torch.Tensor, got {type(b).__name__}")
    lo, hi = torch.as_tensor(lower, dtype=torch.float64), torch.as_tensor(upper, dtype=torch.float64)
    if torch.isnan(lo).any() or torch.isnan(hi).any() or not (0 <= lo).all() or not (hi <= 1).all() \
            or not (lo <= hi).all():
        raise ValueError(f"DAC-KL needs 0 <= lower <= upper <= 1 (quantiles of the teacher "
                         f"probabilities), got lower={lower}, upper={upper}")
    n, vocab = student_logits.shape
    if any(b.ndim and b.shape != (n,) for b in (lo, hi)):
        raise ValueError(f"lower / upper must be floats or (N,)=({n},) tensors")
    keep = token_mask(n, mask, labels, ignore_index, student_logits.device, vocab)
    a_t = teacher_logits.float() / T  # (N, V)
    kept = dac_kl_keep(F.softmax(a_t, dim=-1), lower, upper)  # (N, V)
    if labels is not None:
        target = torch.where(keep, labels, torch.zeros_like(labels)).long()  # (N,)
        if values_checked() and (target.min() < 0 or target.max() >= vocab):
            raise ValueError(f"labels of counted tokens must be token ids in [0, V={vocab})")
        kept = kept.scatter(1, target[:, None], True)
    logp = F.log_softmax(a_t.masked_fill(~kept, NEG), dim=-1)  # (N, V) renormalised over S
    logq = F.log_softmax((student_logits.float() / T).masked_fill(~kept, NEG), dim=-1)
    per_token = row_divergence(logq, logp, divergence="forward_kl")  # (N,)
    return reduce_tokens(per_token, keep, reduction)


def dac_kl_topk(student_logits: Tensor, teacher: TopKTeacher, *, T: float = 1.0,
                mask: Tensor | None = None, labels: Tensor | None = None, ignore_index: int = -100,
                reduction: str = "mean") -> Tensor:
    r"""DAC-KL on a top-k teacher: the clipped set S is the teacher's k listed tokens (+ the target).

    A top-k cache has already clipped the teacher's low-density tail, so S needs no quantiles:
    teacher and student are renormalised over S and compared by forward KL, in O(N k) instead of
    O(N V log V). A target outside the top k gets the evenly spread tail probability r / (V - k)
    (``TopKTeacher.to_dense``'s completion). Equals :func:`dac_kl_loss` on ``teacher.to_dense(V)``
    whenever that keeps exactly the top k (+ the target). Shape: student_logits (N, V) -> scalar.
    """
    check_logits("student_logits", student_logits)
    check_temperature(T)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    n, vocab = student_logits.shape
    check_topk(teacher, n, vocab, T)
    keep = token_mask(n, mask, labels, ignore_index, student_logits.device, vocab)
    idx, logp = teacher.indices, teacher.logprobs.float()                          # (N, k)
    a = student_logits.float() / T
    logq = a.gather(1, idx)                                                        # (N, k)
    if labels is not None:  # one extra slot for the target, empty when it is already listed
        target = torch.where(keep, labels, torch.zeros_like(labels)).long()[:, None]   # (N, 1)
        if values_checked() and (target.min() < 0 or target.max() >= vocab):
            raise ValueError(f"labels of counted tokens must be token ids in [0, V={vocab})")
        listed = (idx == target).any(-1, keepdim=True)                                 # (N, 1)
        target_lp = teacher.unlisted_logprob(vocab)[:, None]
        logp = torch.cat([logp, torch.where(listed, NEG, target_lp)], dim=1)           # (N, k+1)
        logq = torch.cat([logq, torch.where(listed, NEG, a.gather(1, target))], dim=1)
    logp, logq = F.log_softmax(logp, dim=-1), F.log_softmax(logq, dim=-1)          # renormalised over S
    per_token = row_divergence(logq, logp, divergence="forward_kl")                    # (N,)
    return reduce_tokens(per_token, keep, reduction)


# ----------------------------------------------------------------------------- next-token CE


def shift_labels(ids: Tensor) -> Tensor:
    """Next-token labels for ids (B, L), flattened to (B*L,): the last position gets -100."""
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    return labels.flatten()


def token_ce(logits: Tensor, ids: Tensor) -> Tensor:
    """Per-token next-token cross-entropy (B*L,) of logits (B, L, V), 0 at each last position."""
    check_tensor("logits", logits, ndim=3)
    check_labels(ids, logits.shape[-1], shape=logits.shape[:2], name="ids", size_name="V")
    return F.cross_entropy(logits.flatten(0, 1).float(), shift_labels(ids), reduction="none")
