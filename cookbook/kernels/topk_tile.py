r"""Top-k teacher, head streamed in tiles: the distillation loss without any (c, V) logits buffer.

Against a top-k teacher cache (``TopKTeacher``: the k largest teacher log-probs per token plus the
tail mass), the loss of :mod:`cookbook.losses.llm` lives on k + 1 outcomes. From the student it
needs only two things per token i, with a = (h_i W^T + b) / T:

    a_top_i  = a_i at the teacher's k ids                       (k numbers)
    lse_tail = log sum_{v not in top-k} exp(a_iv)               (1 number)

Both come from one stream over the head W in tiles of BLOCK_V rows with an **online log-sum-exp**
(running max m and sum d per token: m' = max(m, max x), d' = d e^{m - m'} + sum e^{x - m'}), so the
(N, V) logits never exist, not even a (c, V) chunk: each tile lives in registers / on-chip memory.
This is Cut Cross-Entropy's idea (Wijmans et al. 2024, arXiv 2411.09009), which computes plain
cross-entropy this way, applied to a top-k distillation target.

The k + 1-outcome divergence and its gradient H = dL/dlog Q (N, k + 1) are tiny and done in torch
(``chunked.topk_chunk`` does the same). The backward **recomputes** each (BLOCK_M, BLOCK_V) tile
of logits and turns it into dL/dz on the fly,

    tail token v:  g_iv = coef_i exp(a_iv - lse_tail_i),   coef_i = (H_i,tail - Q_i,tail sum H_i) / T
    top-k slot j:  g_ij = (H_ij - Q_ij sum H_i) / T

then accumulates dh += g W_tile and dW_tile += g^T h (atomic adds across tiles). Peak memory is the
physical floor: weights, their gradient, hidden states and theirs, plus O(N k) row terms.

Runs as compiled Triton on CUDA. Without CUDA it runs through the Triton interpreter (set up by
``triton_kd``): correct but slow, for tests at tiny sizes. Speed on a GPU: not measured (no GPU was
lent when this was written); ``cookbook bench kd-loss`` has it as method ``ours-tile``.
"""

from __future__ import annotations  # noqa: I001  (triton after triton_kd, see below)

import torch
from torch import Tensor

from cookbook.kernels import triton_kd  # sets TRITON_INTERPRET=1 without CUDA
from cookbook.kernels.chunked import canonical
from cookbook.losses.llm import NEG, TopKTeacher, bins_from_parts, row_divergence, token_mask

import triton  # noqa: E402  (after triton_kd: the interpreter flag must be set first)
import triton.language as tl  # noqa: E402

BLOCK_M, BLOCK_V, BLOCK_D = 16, 32, 32  # tile sizes (tl.dot needs >= 16 on every side)
_NEG = tl.constexpr(NEG)


@triton.jit
def _logit_tile(H, W, B, rows, cols, rmask, cmask, D, stride_h, stride_w,
                HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr,
                BLOCK_D: tl.constexpr):
    """(BLOCK_M, BLOCK_V) fp32 tile of h W^T + b, accumulated over the hidden size in BLOCK_D."""
    acc = tl.zeros([BLOCK_M, BLOCK_V], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        dmask = ds < D
        h = tl.load(H + rows[:, None] * stride_h + ds[None, :],
                    mask=rmask[:, None] & dmask[None, :], other=0.0)
        w = tl.load(W + cols[:, None] * stride_w + ds[None, :],
                    mask=cmask[:, None] & dmask[None, :], other=0.0)
        acc += tl.dot(h, tl.trans(w))
    if HAS_BIAS:
        acc += tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _forward_kernel(H, W, B, IDX, LSE_TAIL, A_TOP, N, V, D, stride_h, stride_w, inv_T,
                    K: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < N
    rows64 = rows.to(tl.int64)
    m = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    d = tl.zeros([BLOCK_M], dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cmask = cols < V
        a = _logit_tile(H, W, B, rows64, cols, rmask, cmask, D, stride_h, stride_w, HAS_BIAS,
                        BLOCK_M, BLOCK_V, BLOCK_D) * inv_T
        is_top = (cols < 0)[None, :]  # all False, (1, BLOCK_V)
        for j in range(K):  # the teacher's ids that fall in this tile: record a, leave the tail
            idx_j = tl.load(IDX + rows64 * K + j, mask=rmask, other=-1)
            hit = cols[None, :] == idx_j[:, None]  # (BLOCK_M, BLOCK_V), at most one per row
            is_top = is_top | hit
            found = tl.sum(hit.to(tl.int32), 1) > 0
            tl.store(A_TOP + rows64 * K + j, tl.sum(tl.where(hit, a, 0.0), 1),
                     mask=rmask & found)
        a = tl.where(is_top | (cmask == 0)[None, :], float("-inf"), a)
        new_m = tl.maximum(m, tl.max(a, 1))
        safe = tl.where(new_m == float("-inf"), 0.0, new_m)  # no (-inf) - (-inf) before any token
        d = d * tl.exp(m - safe) + tl.sum(tl.exp(a - safe[:, None]), 1)
        m = new_m
    lse = tl.where(d > 0.0, m + tl.log(d), _NEG)  # an empty tail (k = V) is floored like the reference
    tl.store(LSE_TAIL + rows64, lse, mask=rmask)


@triton.jit
def _backward_kernel(H, W, B, IDX, LSE_TAIL, COEF, GTOP, GOUT, DH, DW, DB, N, V, D, stride_h,
                     stride_w, inv_T, K: tl.constexpr, HAS_BIAS: tl.constexpr,
                     NEED_DH: tl.constexpr, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    rmask = rows < N
    cmask = cols < V
    rows64 = rows.to(tl.int64)
    cols64 = cols.to(tl.int64)
    a = _logit_tile(H, W, B, rows64, cols64, rmask, cmask, D, stride_h, stride_w, HAS_BIAS,
                    BLOCK_M, BLOCK_V, BLOCK_D) * inv_T  # recomputed, never stored
    lse = tl.load(LSE_TAIL + rows64, mask=rmask, other=0.0)
    coef = tl.load(COEF + rows64, mask=rmask, other=0.0)
    g = coef[:, None] * tl.exp(a - lse[:, None])  # tail tokens
    for j in range(K):  # top-k slots take their own gradient
        idx_j = tl.load(IDX + rows64 * K + j, mask=rmask, other=-1)
        g_j = tl.load(GTOP + rows64 * K + j, mask=rmask, other=0.0)
        g = tl.where(cols[None, :] == idx_j[:, None], g_j[:, None], g)
    g = tl.where(rmask[:, None] & cmask[None, :], g, 0.0) * tl.load(GOUT)
    if NEED_DB:
        tl.atomic_add(DB + cols64, tl.sum(g, 0), mask=cmask)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        dmask = ds < D
        if NEED_DH:
            w = tl.load(W + cols64[:, None] * stride_w + ds[None, :],
                        mask=cmask[:, None] & dmask[None, :], other=0.0)
            tl.atomic_add(DH + rows64[:, None] * D + ds[None, :], tl.dot(g.to(w.dtype), w),
                          mask=rmask[:, None] & dmask[None, :])
        if NEED_DW:
            h = tl.load(H + rows64[:, None] * stride_h + ds[None, :],
                        mask=rmask[:, None] & dmask[None, :], other=0.0)
            tl.atomic_add(DW + cols64[:, None] * D + ds[None, :],
                          tl.dot(tl.trans(g).to(h.dtype), h),
                          mask=cmask[:, None] & dmask[None, :])


def tail_and_top(h: Tensor, w: Tensor, b: Tensor | None, indices: Tensor, T: float
                 ) -> tuple[Tensor, Tensor]:
    """One stream over the head: (lse_tail (N,), a_top (N, k)) of a = (h W^T + b) / T (fp32)."""
    n, dim = h.shape
    vocab, k = w.shape[0], indices.shape[1]
    lse = torch.empty(n, dtype=torch.float32, device=h.device)
    a_top = torch.empty(n, k, dtype=torch.float32, device=h.device)
    with triton_kd._quiet(h):
        _forward_kernel[(triton.cdiv(n, BLOCK_M),)](
            h, w, b if b is not None else w, indices, lse, a_top, n, vocab, dim, h.stride(0),
            w.stride(0), 1.0 / T, K=k, HAS_BIAS=b is not None, BLOCK_M=BLOCK_M,
            BLOCK_V=BLOCK_V, BLOCK_D=BLOCK_D)
    return lse, a_top


def row_terms(a_top: Tensor, lse_tail: Tensor, logprobs: Tensor, vocab: int, *, divergence: str,
              T: float, beta: float, t: float | None, grad_scale: float, need_grad: bool):
    """The k + 1-outcome divergence per token and what the backward needs: (loss (N,), coef (N,),
    g_top (N, k)), gradients already scaled by grad_scale / T (as ``chunked.topk_chunk``)."""
    k = a_top.shape[1]
    logq, logp = bins_from_parts(a_top, lse_tail, logprobs.float(), tail_empty=k == vocab)
    with torch.enable_grad():
        logq.requires_grad_(need_grad)
        loss = row_divergence(logq, logp, divergence=canonical(divergence, beta), beta=beta, t=t)
        if not need_grad:
            return loss.detach(), None, None
        (H,) = torch.autograd.grad(loss.sum(), logq)  # (N, k + 1)
    q = logq.detach().exp()
    sum_h = H.sum(-1)
    g = grad_scale / T
    coef = (H[:, k] - q[:, k] * sum_h) * g
    g_top = (H[:, :k] - q[:, :k] * sum_h[:, None]) * g
    return loss.detach(), coef.contiguous(), g_top.contiguous()


class _TopKTile(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, b, indices, logprobs, opts):
        lse, a_top = tail_and_top(h, w, b, indices, opts["T"])
        need = any(ctx.needs_input_grad[:3])
        loss, coef, g_top = row_terms(a_top, lse, logprobs, w.shape[0], need_grad=need, **opts)
        ctx.save_for_backward(h, w, b, indices, lse, coef, g_top)
        ctx.T = opts["T"]
        return loss.sum() * opts["grad_scale"]

    @staticmethod
    def backward(ctx, grad_out):
        h, w, b, indices, lse, coef, g_top = ctx.saved_tensors
        need_dh, need_dw, need_db = ctx.needs_input_grad[:3]
        n, dim = h.shape
        vocab, k = w.shape[0], indices.shape[1]
        f32 = dict(dtype=torch.float32, device=h.device)
        dh = torch.zeros(n, dim, **f32) if need_dh else None
        dw = torch.zeros(vocab, dim, **f32) if need_dw else None
        db = torch.zeros(vocab, **f32) if need_db else None
        dummy = lse  # a valid pointer for the gradients nobody asked for
        grid = (triton.cdiv(n, BLOCK_M), triton.cdiv(vocab, BLOCK_V))
        with triton_kd._quiet(h):
            _backward_kernel[grid](
                h, w, b if b is not None else w, indices, lse, coef, g_top,
                grad_out.detach().float().reshape(1), dh if need_dh else dummy,
                dw if need_dw else dummy, db if need_db else dummy, n, vocab, dim, h.stride(0),
                w.stride(0), 1.0 / ctx.T, K=k, HAS_BIAS=b is not None, NEED_DH=bool(need_dh),
                NEED_DW=bool(need_dw), NEED_DB=bool(need_db), BLOCK_M=BLOCK_M,
                BLOCK_V=BLOCK_V, BLOCK_D=BLOCK_D)
        cast = lambda g, like: None if g is None else g.to(like.dtype)
        return cast(dh, h), cast(dw, w), cast(db, b) if b is not None else None, None, None, None


def fused_linear_topk_distill(student_hidden: Tensor, student_head: Tensor, teacher: TopKTeacher,
                              *, student_bias: Tensor | None = None,
                              divergence: str = "forward_kl", T: float = 1.0, beta: float = 0.5,
                              t: float | None = None, mask: Tensor | None = None,
                              labels: Tensor | None = None, ignore_index: int = -100,
                              reduction: str = "mean") -> Tensor:
    r"""Student head + top-k distillation loss, the head streamed in tiles (no (c, V) buffer).

    The same loss and gradients as ``fused_linear_distill(..., teacher=TopKTeacher)`` and
    ``cookbook.losses.llm.distill_loss`` on the full logits (every divergence, T, beta, t, masks,
    "mean"/"sum"); reached from there with ``backend="tile"``, which validates the inputs first.
    Cut Cross-Entropy's tiling (Wijmans et al. 2024) applied to distillation: forward streams W
    once with an online log-sum-exp; backward recomputes each logits tile.

    Shape: student_hidden (N, Hs), student_head (V, Hs), teacher.indices / logprobs (N, k)
    -> scalar fp32 loss.
    """
    n, vocab = student_hidden.shape[0], student_head.shape[0]
    if mask is not None or labels is not None:
        keep = token_mask(n, mask, labels, ignore_index, student_hidden.device, vocab)
        rows = keep.nonzero().squeeze(1)
        student_hidden = student_hidden[rows]  # autograd scatters dh back
        teacher = TopKTeacher(teacher.indices[rows], teacher.logprobs[rows], teacher.T)
    n_valid = student_hidden.shape[0]
    opts = dict(divergence=divergence, T=float(T), beta=float(beta), t=t,
                grad_scale=1.0 / n_valid if reduction == "mean" else 1.0)
    h = student_hidden.contiguous()
    w = student_head.contiguous()
    b = student_bias.contiguous() if student_bias is not None else None
    idx = teacher.indices.to(device=h.device, dtype=torch.int64).contiguous()
    lp = teacher.logprobs.to(h.device).detach()
    grad_inputs = (h, w, b)
    if not torch.is_grad_enabled() or not any(x is not None and x.requires_grad
                                              for x in grad_inputs):
        lse, a_top = tail_and_top(h, w, b, idx, opts["T"])
        loss = row_terms(a_top, lse, lp, vocab, need_grad=False, **opts)[0]
        return loss.sum() * opts["grad_scale"]
    return _TopKTile.apply(h, w, b, idx, lp, opts)
