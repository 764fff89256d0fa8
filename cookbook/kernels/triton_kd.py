r"""Triton path: the per-chunk divergence and its gradient, fused over the vocabulary.

One program handles one token row of a (c, V) chunk of fp32 student logits (the torch matmul of
the head wrote them; the head GEMMs stay in torch). It streams the row in blocks of BLOCK_V:

1. online log-sum-exp of a = z_s / T and b = z_t / T (and of TAID's mix (1-t) a + t b),
2. the loss, and for forward KL / TAID the gradient, written **over the student logits in place**,
3. reverse KL and JSD need a row scalar (the loss itself, or KL(q||m)) inside their gradient, so
   they take a third pass.

No (c, V) temporary is allocated. Top-k teachers reuse ``chunked.topk_chunk`` with two small
kernels for its vocabulary-wide passes (row log-sum-exp, scaled softmax).

On a machine without CUDA, importing this module sets ``TRITON_INTERPRET=1`` (before the
``@triton.jit`` decorators run) so the kernels execute on CPU tensors through Triton's
interpreter: correct but slow, used by the tests at tiny sizes only.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch


def _use_interpreter_on_cpu() -> None:
    """Without CUDA, make ``@triton.jit`` build interpreted functions (notes/env.md).

    The flag is read when a function is decorated, so it must be set before triton.language is
    imported. ``import cookbook`` may already have imported it (torchvision pulls in torch._dynamo,
    which imports triton), leaving its own jit helpers (tl.max, tl.sum, tl.zeros) compiled-only; we
    then re-run those decorators. Compiled Triton cannot run without a GPU, so nothing is lost.
    """
    if torch.cuda.is_available():
        return
    os.environ.setdefault("TRITON_INTERPRET", "1")
    std = sys.modules.get("triton.language.standard")
    if std is not None and type(std.max).__name__ != "InterpretedFunction":
        importlib.reload(std)
        importlib.reload(sys.modules["triton.language"])


_use_interpreter_on_cpu()

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from cookbook.kernels import chunked  # noqa: E402
from cookbook.kernels.chunked import canonical  # noqa: E402

_DIV_CODE = {"forward_kl": 0, "reverse_kl": 1, "jsd": 2, "taid": 3}
NEG = tl.constexpr(-1e30)  # the floor for log-probabilities of cookbook.losses.llm


@triton.jit
def _mix(a, b, t):
    """TAID's (1 - t) a + t b, with the end points taken as they are: at t = 0 or 1 the product
    with the other side would be 0 * (-inf) = NaN for masked lanes and -inf logits."""
    m = (1.0 - t) * a + t * b
    m = tl.where(t == 0.0, a, m)
    return tl.where(t == 1.0, b, m)


@triton.jit
def _dense_kd_kernel(S, TLOG, LOSS, stride_s, stride_t, V, inv_T, beta, t_mix, grad_scale,
                     DIV: tl.constexpr, NEED_GRAD: tl.constexpr, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    s_row = S + row * stride_s
    t_row = TLOG + row * stride_t

    # pass 1: online log-sum-exp of a, b and (TAID) the mix
    m_a = float("-inf")
    d_a = 0.0
    m_b = float("-inf")
    d_b = 0.0
    m_c = float("-inf")
    d_c = 0.0
    for off in range(0, V, BLOCK_V):
        cols = off + tl.arange(0, BLOCK_V)
        msk = cols < V
        a = tl.load(s_row + cols, mask=msk, other=float("-inf")) * inv_T
        b = tl.load(t_row + cols, mask=msk, other=float("-inf")) * inv_T
        new_a = tl.maximum(m_a, tl.max(a, 0))
        d_a = d_a * tl.exp(m_a - new_a) + tl.sum(tl.exp(a - new_a), 0)
        m_a = new_a
        new_b = tl.maximum(m_b, tl.max(b, 0))
        d_b = d_b * tl.exp(m_b - new_b) + tl.sum(tl.exp(b - new_b), 0)
        m_b = new_b
        if DIV == 3:
            c = _mix(a, b, t_mix)
            new_c = tl.maximum(m_c, tl.max(c, 0))
            d_c = d_c * tl.exp(m_c - new_c) + tl.sum(tl.exp(c - new_c), 0)
            m_c = new_c
    lse_a = m_a + tl.log(d_a)
    lse_b = m_b + tl.log(d_b)
    lse_c = 0.0
    if DIV == 3:
        lse_c = m_c + tl.log(d_c)
    g = grad_scale * inv_T

    # pass 2: loss (+ gradient for forward KL and TAID, which need no row scalar)
    acc = tl.zeros([BLOCK_V], dtype=tl.float32)
    aux = tl.zeros([BLOCK_V], dtype=tl.float32)
    for off in range(0, V, BLOCK_V):
        cols = off + tl.arange(0, BLOCK_V)
        msk = cols < V
        a = tl.load(s_row + cols, mask=msk, other=0.0) * inv_T
        b = tl.load(t_row + cols, mask=msk, other=0.0) * inv_T
        lq = tl.maximum(a - lse_a, NEG)
        lp = tl.maximum(b - lse_b, NEG)
        q = tl.exp(lq)
        p = tl.exp(lp)
        if DIV == 0:
            term = p * (lp - lq)
            if NEED_GRAD:
                tl.store(s_row + cols, (q - p) * g, mask=msk)
        elif DIV == 1:
            term = q * (lq - lp)
        elif DIV == 2:
            x = lp + tl.log(beta)
            y = lq + tl.log(1.0 - beta)
            mx = tl.maximum(x, y)
            lm = mx + tl.log(tl.exp(x - mx) + tl.exp(y - mx))
            kl_q = q * (lq - lm)
            term = beta * p * (lp - lm) + (1.0 - beta) * kl_q
            aux += tl.where(msk, kl_q, 0.0)
        else:
            # the reference mixes floored log-probs; for finite logits that equals mix - lse_c
            lr = tl.maximum(_mix(a, b, t_mix) - lse_c, NEG)
            r = tl.exp(lr)
            term = r * (lr - lq)
            if NEED_GRAD:
                tl.store(s_row + cols, (q - r) * g, mask=msk)
        acc += tl.where(msk, term, 0.0)
    loss = tl.sum(acc, 0)
    tl.store(LOSS + row, loss)

    # pass 3: gradients that need a row scalar
    if NEED_GRAD and (DIV == 1 or DIV == 2):
        kl_qm = tl.sum(aux, 0)
        for off in range(0, V, BLOCK_V):
            cols = off + tl.arange(0, BLOCK_V)
            msk = cols < V
            a = tl.load(s_row + cols, mask=msk, other=0.0) * inv_T
            b = tl.load(t_row + cols, mask=msk, other=0.0) * inv_T
            lq = tl.maximum(a - lse_a, NEG)
            lp = tl.maximum(b - lse_b, NEG)
            q = tl.exp(lq)
            if DIV == 1:
                grad = q * (lq - lp - loss) * g
            else:
                x = lp + tl.log(beta)
                y = lq + tl.log(1.0 - beta)
                mx = tl.maximum(x, y)
                lm = mx + tl.log(tl.exp(x - mx) + tl.exp(y - mx))
                grad = (1.0 - beta) * q * (lq - lm - kl_qm) * g
            tl.store(s_row + cols, grad, mask=msk)


@triton.jit
def _row_lse_kernel(X, OUT, stride, V, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * stride
    m = float("-inf")
    d = 0.0
    for off in range(0, V, BLOCK_V):
        cols = off + tl.arange(0, BLOCK_V)
        x = tl.load(x_row + cols, mask=cols < V, other=float("-inf"))
        new_m = tl.maximum(m, tl.max(x, 0))
        d = d * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m), 0)
        m = new_m
    tl.store(OUT + row, m + tl.log(d))


@triton.jit
def _softmax_scale_kernel(X, LSE, COEF, stride, V, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * stride
    lse = tl.load(LSE + row)
    coef = tl.load(COEF + row)
    for off in range(0, V, BLOCK_V):
        cols = off + tl.arange(0, BLOCK_V)
        msk = cols < V
        x = tl.load(x_row + cols, mask=msk, other=0.0)
        tl.store(x_row + cols, tl.exp(x - lse) * coef, mask=msk)


def _quiet(x: torch.Tensor):
    """The interpreter runs kernels in numpy, which warns about lanes that tl.where discards."""
    import contextlib

    import numpy as np

    return contextlib.nullcontext() if x.is_cuda else np.errstate(all="ignore")


def _block_v(V: int, block_v: int | None) -> int:
    return block_v or min(4096, triton.next_power_of_2(V))


def _warps(block: int) -> int:
    """More warps for wide blocks: ~10 live fp32 vectors of BLOCK_V must fit in registers."""
    return 16 if block >= 4096 else 8 if block >= 1024 else 4


def _check_buffer(x: torch.Tensor) -> None:
    if x.dtype != torch.float32 or x.stride(1) != 1:
        raise ValueError("the Triton path expects fp32 row-contiguous (c, V) logits buffers")


def dense_chunk(s: torch.Tensor, tlog: torch.Tensor, *, divergence: str, T: float,
                beta: float = 0.5, t: float | None = None, grad_scale: float = 1.0,
                need_grad: bool = True, block_v: int | None = None):
    """Triton twin of ``chunked.dense_chunk``: loss (c,) and dL/dz_s written over ``s``."""
    _check_buffer(s)
    _check_buffer(tlog)
    divergence = canonical(divergence, beta)
    c, V = s.shape
    loss = torch.empty(c, dtype=torch.float32, device=s.device)
    with _quiet(s):
        _launch_dense(s, tlog, loss, V, T, beta, t, divergence, grad_scale, need_grad, block_v)
    return loss, (s if need_grad else None)


def _launch_dense(s, tlog, loss, V, T, beta, t, divergence, grad_scale, need_grad, block_v):
    _dense_kd_kernel[(s.shape[0],)](
        s, tlog, loss, s.stride(0), tlog.stride(0), V, 1.0 / T,
        float(beta) if divergence == "jsd" else 0.5, float(t) if t is not None else 0.0,
        float(grad_scale), DIV=_DIV_CODE[divergence], NEED_GRAD=bool(need_grad),
        BLOCK_V=_block_v(V, block_v), num_warps=_warps(_block_v(V, block_v)))


def row_lse(x: torch.Tensor, block_v: int | None = None) -> torch.Tensor:
    """log-sum-exp of each row of x (c, V) -> (c,), streamed over the vocabulary."""
    _check_buffer(x)
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    _row_lse_kernel[(x.shape[0],)](x, out, x.stride(0), x.shape[1],
                                   BLOCK_V=_block_v(x.shape[1], block_v))
    return out


def softmax_scale_(x: torch.Tensor, lse: torch.Tensor, coef: torch.Tensor,
                   block_v: int | None = None) -> torch.Tensor:
    """In place: x_ij <- exp(x_ij - lse_i) * coef_i."""
    _check_buffer(x)
    _softmax_scale_kernel[(x.shape[0],)](x, lse.contiguous(), coef.contiguous().float(),
                                         x.stride(0), x.shape[1],
                                         BLOCK_V=_block_v(x.shape[1], block_v))
    return x


def topk_chunk(s: torch.Tensor, indices: torch.Tensor, logprobs: torch.Tensor, *,
               block_v: int | None = None, **kw):
    """Triton twin of ``chunked.topk_chunk``: its two vocabulary-wide passes run as kernels."""
    _check_buffer(s)
    return chunked.topk_chunk(
        s, indices, logprobs, row_lse=lambda x: row_lse(x, block_v),
        softmax_scale_=lambda x, lse, coef: softmax_scale_(x, lse, coef, block_v), **kw)
