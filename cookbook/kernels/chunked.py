r"""The chunked torch path: a chunk's divergence and its gradient w.r.t. the student logits.

``fused.py`` projects one chunk of c tokens through the heads (torch matmuls) and hands the
fp32 logits to one of these functions. They work **in place** on the (c, V) buffers (a few
temporaries of the same size at most), return the per-token losses (c,) and a buffer holding
dL/dz_s (c, V), already multiplied by ``grad_scale`` (1/N for a mean). The Triton path
(``triton_kd.py``) has the same signatures; both are checked against ``cookbook.losses.llm``.

Closed-form gradients, with a = z_s / T, q = softmax(a), p = softmax(z_t / T) and dL/dz_s = dL/da / T:

- forward KL   sum p (log p - log q):                       dL/da = q - p
- reverse KL   R = sum q (log q - log p):                   dL/da = q (log q - log p - R)
- JSD(beta)    b KL(p||m) + (1-b) KL(q||m), m = b p + (1-b) q: dL/da = (1-b) q (log q - log m - KL(q||m))
- TAID         KL(r||q), r = softmax((1-t) sg(log q) + t log p): dL/da = q - r
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from cookbook.losses.llm import NEG, bins_from_parts, row_divergence, rowdot


def canonical(divergence: str, beta: float) -> str:
    """JSD's endpoints are forward KL (beta = 0) and reverse KL (beta = 1), as in the reference."""
    if divergence == "jsd" and beta == 0.0:
        return "forward_kl"
    if divergence == "jsd" and beta == 1.0:
        return "reverse_kl"
    return divergence


def _log_softmax_(x: Tensor, inv_T: float) -> Tensor:
    x.mul_(inv_T)
    return x.sub_(x.logsumexp(-1, keepdim=True)).clamp_(min=NEG)


def dense_chunk(s: Tensor, tlog: Tensor, *, divergence: str, T: float, beta: float = 0.5,
                t: float | None = None, grad_scale: float = 1.0,
                need_grad: bool = True) -> tuple[Tensor, Tensor | None]:
    """Loss (c,) and scaled dL/dz_s (c, V) from student and teacher logits (c, V); overwrites both."""
    divergence = canonical(divergence, beta)
    g = grad_scale / T
    logq = _log_softmax_(s, 1.0 / T)  # (c, V)
    logp = _log_softmax_(tlog, 1.0 / T)  # (c, V)
    if divergence == "forward_kl":
        d = logp - logq  # (c, V)
        p = logp.exp_()
        loss = rowdot(p, d)
        return loss, (logq.exp_().sub_(p).mul_(g) if need_grad else None)
    if divergence == "reverse_kl":
        d = logp.neg_().add_(logq)  # log q - log p
        q = logq.exp_()
        loss = rowdot(q, d)
        return loss, (d.sub_(loss[:, None]).mul_(q).mul_(g) if need_grad else None)
    if divergence == "jsd":
        logm = torch.logaddexp(logp + math.log(beta), logq + math.log1p(-beta))  # (c, V)
        dq = logq - logm  # log q - log m
        dp = logm.neg_().add_(logp)  # log p - log m
        kl_pm = rowdot(logp.exp_(), dp)
        del dp, logm
        q = logq.exp_()
        kl_qm = rowdot(q, dq)
        loss = beta * kl_pm + (1 - beta) * kl_qm
        return loss, (dq.sub_(kl_qm[:, None]).mul_(q).mul_((1 - beta) * g) if need_grad else None)
    logr = torch.add(logq * (1 - t), logp, alpha=t)  # TAID's interpolated target (c, V)
    logr.sub_(logr.logsumexp(-1, keepdim=True))
    d = logr - logq
    r = logr.exp_()
    loss = rowdot(r, d)
    return loss, (logq.exp_().sub_(r).mul_(g) if need_grad else None)


def torch_row_lse(x: Tensor) -> Tensor:
    """log-sum-exp of each row of x (c, V) -> (c,)."""
    return x.logsumexp(-1)


def torch_softmax_scale_(x: Tensor, lse: Tensor, coef: Tensor) -> Tensor:
    """In place: x_ij <- exp(x_ij - lse_i) * coef_i."""
    return x.sub_(lse[:, None]).exp_().mul_(coef[:, None])


def topk_chunk(s: Tensor, indices: Tensor, logprobs: Tensor, *, divergence: str, T: float,
               beta: float = 0.5, t: float | None = None, grad_scale: float = 1.0,
               need_grad: bool = True, row_lse: Callable[[Tensor], Tensor] = torch_row_lse,
               softmax_scale_: Callable = torch_softmax_scale_, alpha: float = 0.1) -> tuple[Tensor, Tensor | None]:
    """Loss (c,) and scaled dL/dz_s (c, V) against a top-k teacher (indices, logprobs (c, k)).

    The divergence lives on k + 1 outcomes (losses/llm.py), so its gradient H = dL/dlog Q_b is
    cheap autograd on (c, k+1). Mapping back to the V logits: a top-k token j gets
    H_j - q_j sum(H); a tail token gets exp(a_j - lse_tail) (H_tail - Q_tail sum(H)).
    Only the two vocabulary-wide passes (row_lse, softmax_scale_) touch (c, V). ``alpha`` is the
    skew of DistiLLM's "skew_kl" / "skew_rkl" (ignored by the other divergences).
    """
    k = indices.shape[1]
    a = s.mul_(1.0 / T)  # (c, V)
    a_top = a.gather(1, indices)  # (c, k)
    a.scatter_(1, indices, NEG)  # only the tail is left
    lse_tail = row_lse(a)  # (c,)
    logq, logp = bins_from_parts(a_top, lse_tail, logprobs, tail_empty=k == a.shape[1])
    with torch.enable_grad():
        logq.requires_grad_(need_grad)
        loss = row_divergence(logq, logp, divergence=canonical(divergence, beta), beta=beta, t=t, alpha=alpha)
        if not need_grad:
            return loss.detach(), None
        (H,) = torch.autograd.grad(loss.sum(), logq)  # (c, k+1)
    loss = loss.detach()
    q = logq.detach().exp()  # (c, k+1)
    sum_h = H.sum(-1)  # (c,)
    g = grad_scale / T
    coef = (H[:, k] - q[:, k] * sum_h) * g  # (c,)
    softmax_scale_(a, lse_tail, coef)  # tail tokens; top-k slots hold exp(NEG - .) = 0
    a.scatter_(1, indices, (H[:, :k] - q[:, :k] * sum_h[:, None]) * g)
    return loss, a
