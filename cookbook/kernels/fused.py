r"""Fused "student head + distillation loss": the public function and its autograd wrapper.

The loss of :mod:`cookbook.losses.llm` needs the student logits h W^T (N, V) and, for a dense
teacher, the teacher's (N, V) too: at N = 8192 tokens and V = 128256 that is 4 GiB per fp32 copy,
and autograd keeps several. Here the tokens are processed in chunks of c rows:

    for each chunk:  s = h_c W^T (+ b)                        (c, V) fp32, torch matmul
                     z_t = teacher logits of the chunk        (c, V), or its top-k (c, k)
                     loss_c, G = divergence and dL/ds          chunked.py (torch) or triton_kd.py
                     dh_c = G W ;  dW += G^T h_c ;  db += sum G   (accumulated in the forward)

so the largest temporaries are a few (c, V) buffers, and the backward pass only rescales the stored
gradients by the incoming grad_output (in place, without a host sync). No recompute: the FLOPs are
those of the naive version. Low-precision inputs (bf16/fp16): logits, loss and the dW/db
accumulators are fp32 (on CUDA via low-precision GEMMs with fp32 accumulation and fp32 output; on
CPU, which lacks them, the heads are upcast once per call); dh and dW are returned in the input dtype.

Under ``torch.autocast`` the student's hidden states, head and bias are cast to the autocast dtype
first (what autocast does for a ``linear``), and the kernel runs with autocast off, so its fp32
accumulators stay fp32; gradients flow back to fp32 parameters in fp32. Under ``torch.no_grad()``
(or when no input requires a gradient) only the loss is computed: no gradient buffers, no dW GEMM.

For a top-k teacher, ``backend="tile"`` (``cookbook.kernels.topk_tile``) streams the head in tiles
instead and never writes a (c, V) chunk either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from cookbook.checks import check_choice, check_finite_param, check_int, check_tensor, check_values
from cookbook.kernels import chunked
from cookbook.losses.llm import (
    ALL_DIVERGENCES,
    DIVERGENCES,
    TopKTeacher,
    check_divergence,
    check_temperature,
    check_topk,
    token_mask,
)


class TeacherHead(NamedTuple):
    """A dense teacher given by its last hidden states and its output head.

    Its logits are ``hidden @ head.T + bias``; they are computed chunk by chunk, never in full.
    Shape: hidden (N, Ht), head (V, Ht), bias (V,) or None. The teacher is frozen (no gradients).
    """

    hidden: Tensor  # (N, Ht)
    head: Tensor  # (V, Ht)
    bias: Tensor | None = None  # (V,)


@dataclass
class _Plan:
    divergence: str
    T: float
    beta: float
    t: float | None
    grad_scale: float
    chunk: int
    backend: str
    alpha: float = 0.1     # skew KL / skew reverse KL (top-k teachers, torch path)


def triton_available() -> bool:
    """True when the Triton path can be imported (it needs the ``triton`` package)."""
    try:
        import cookbook.kernels.triton_kd  # noqa: F401
    except ImportError:
        return False
    return True


# fp32 (c, V) buffers alive at once in chunked.py, per teacher kind and divergence
_BUFFERS = {"forward_kl": 3, "reverse_kl": 3, "jsd": 5, "taid": 4, "topk": 2}
SKEWED = ("skew_kl", "skew_rkl")   # DistiLLM's divergences: top-k teachers on the torch path only


def auto_chunk_size(n_rows: int, vocab: int, student_dim: int, teacher_dim: int = 0, *,
                    divergence: str = "forward_kl", topk: bool = False,
                    budget: float = 0.3) -> int:
    """Rows per chunk so that the chunk's fp32 (c, V) workspace stays near ``budget`` x floor.

    The floor counts, in elements, the weights, the head gradient and the hidden states (and their
    gradient), as ``bench.physical_floor_bytes`` does. Larger chunks make better matmuls (and
    re-read dW less often); smaller ones save memory. Result: a multiple of 64 in [64, 4096]
    (16 for tiny inputs), at most n_rows. n_rows, vocab, student_dim >= 1; teacher_dim >= 0;
    budget finite > 0; divergence one of ``DIVERGENCES``.
    """
    check_int("n_rows", n_rows, 1)
    check_int("vocab", vocab, 1)
    check_int("student_dim", student_dim, 1)
    check_int("teacher_dim", teacher_dim, 0)
    check_finite_param("budget", budget, 0.0, low_open=True)
    check_choice("divergence", divergence, ALL_DIVERGENCES if topk else DIVERGENCES)
    floor = vocab * (2 * student_dim + teacher_dim) + n_rows * (2 * student_dim + teacher_dim)
    n_buf = _BUFFERS["topk" if topk else divergence]
    c = int(budget * floor / (n_buf * vocab))
    c = max(64, min(4096, c // 64 * 64)) if c >= 64 else max(16, c // 16 * 16)
    return max(1, min(c, n_rows))


def _matmul_head(w: Tensor | None) -> Tensor | None:
    """The head as the chunk matmuls will use it: CPU has no bf16 x bf16 -> fp32 matmul, so a
    low-precision head is upcast once per call there (one extra fp32 copy of W)."""
    if w is None or w.dtype == torch.float32 or w.is_cuda:
        return w
    return w.float()


def _logits_f32(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """h W^T + b as a fresh fp32 (c, V) buffer, accumulated in fp32 for any input dtype."""
    if w.dtype == torch.float32:
        h = h.float()
        return torch.addmm(b.float(), h, w.t()) if b is not None else h @ w.t()
    out = torch.mm(h, w.t(), out_dtype=torch.float32)  # CUDA: low-precision GEMM, fp32 output
    return out.add_(b.float()) if b is not None else out


def _validate(student_hidden, student_head, student_bias, teacher, chunk_size, reduction, backend):
    check_tensor("student_hidden", student_hidden)
    check_tensor("student_head", student_head)
    check_tensor("student_bias", student_bias, optional=True)
    if student_hidden.ndim != 2 or student_head.ndim != 2:
        raise ValueError("student_hidden must be (N, H) and student_head (V, H); flatten (B, L, H)"
                         f" first. Got {tuple(student_hidden.shape)} and {tuple(student_head.shape)}")
    n, hs = student_hidden.shape
    vocab = student_head.shape[0]
    if student_head.shape[1] != hs:
        raise ValueError(f"student_head {tuple(student_head.shape)} does not match hidden size {hs}")
    if student_head.dtype != student_hidden.dtype:
        raise ValueError(f"student_hidden ({student_hidden.dtype}) and student_head "
                         f"({student_head.dtype}) must share a dtype")
    if student_bias is not None and student_bias.shape != (vocab,):
        raise ValueError(f"student_bias must be (V,)=({vocab},), got {tuple(student_bias.shape)}")
    if n == 0:
        raise ValueError("student_hidden is empty (N = 0)")
    check_values("student_hidden", student_hidden)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"chunk_size must be a positive int (or None for automatic), got "
                         f"{chunk_size!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' for the fused loss, got {reduction!r}"
                         " (per-token values: use cookbook.losses.llm with reduction='none')")
    if backend not in ("auto", "torch", "triton", "tile"):
        raise ValueError(f"backend must be 'auto', 'torch', 'triton' or 'tile', got {backend!r}")
    if isinstance(teacher, TeacherHead):
        th, tw = teacher.hidden, teacher.head
        check_tensor("teacher hidden", th)
        check_tensor("teacher head", tw)
        check_tensor("teacher bias", teacher.bias, optional=True)
        if th.ndim != 2 or tw.ndim != 2 or th.shape[0] != n or tw.shape[1] != th.shape[1]:
            raise ValueError(f"teacher hidden (N, Ht) and head (V, Ht) expected with N={n}, got "
                             f"{tuple(th.shape)} and {tuple(tw.shape)}")
        if tw.shape[0] != vocab:
            raise ValueError(f"vocabulary mismatch: teacher head has V={tw.shape[0]}, student "
                             f"head V={vocab} (distillation needs a shared tokenizer)")
        check_values("the teacher hidden states", th)
    elif isinstance(teacher, Tensor):
        if teacher.shape != (n, vocab):
            raise ValueError(f"dense teacher logits must be (N, V)=({n}, {vocab}), got "
                             f"{tuple(teacher.shape)} (a vocabulary mismatch?)")
        check_values("the teacher logits", teacher, allow_neg_inf=True)
    elif not isinstance(teacher, TopKTeacher):
        raise ValueError("teacher must be a TeacherHead(hidden, head[, bias]), a TopKTeacher"
                         f"(indices, logprobs[, T]) or dense logits (N, V); got {type(teacher)}")


def _chunk_fns(backend: str):
    if backend == "triton":
        from cookbook.kernels import triton_kd

        return triton_kd.dense_chunk, triton_kd.topk_chunk
    return chunked.dense_chunk, chunked.topk_chunk


def _run(h_s, w_s, b_s, teacher, rows, plan: _Plan, need: tuple[bool, bool, bool]):
    """Chunk loop: returns the loss and (dh, dW, db) already scaled by plan.grad_scale."""
    n_rows = h_s.shape[0] if rows is None else rows.numel()
    vocab, dtype, dev = w_s.shape[0], h_s.dtype, h_s.device
    need_dh, need_dw, need_db = need
    need_grad = any(need)
    dh = torch.zeros_like(h_s) if need_dh else None  # (N, Hs)
    dw = torch.zeros(vocab, w_s.shape[1], dtype=torch.float32, device=dev) if need_dw else None
    db = torch.zeros(vocab, dtype=torch.float32, device=dev) if need_db else None
    total = torch.zeros((), dtype=torch.float32, device=dev)
    dense_fn, topk_fn = _chunk_fns(plan.backend)
    w_mm = _matmul_head(w_s)  # (V, Hs)
    if isinstance(teacher, TeacherHead):
        teacher = TeacherHead(teacher.hidden, _matmul_head(teacher.head), teacher.bias)
    kw = dict(divergence=plan.divergence, T=plan.T, beta=plan.beta, t=plan.t,
              grad_scale=plan.grad_scale, need_grad=need_grad)
    if plan.divergence in SKEWED:
        kw["alpha"] = plan.alpha
    for start in range(0, n_rows, plan.chunk):
        sel = slice(start, min(start + plan.chunk, n_rows)) if rows is None else \
            rows[start:start + plan.chunk]
        h = h_s[sel]  # (c, Hs)
        s = _logits_f32(h, w_mm, b_s)  # (c, V)
        if isinstance(teacher, TopKTeacher):
            loss, g = topk_fn(s, teacher.indices[sel], teacher.logprobs[sel].float(), **kw)
        else:
            if isinstance(teacher, TeacherHead):
                tlog = _logits_f32(teacher.hidden[sel], teacher.head, teacher.bias)  # (c, V)
            else:
                tlog = teacher[sel].to(torch.float32, copy=True)  # the chunk fn overwrites it
            loss, g = dense_fn(s, tlog, **kw)
            del tlog
        total += loss.sum()
        if g is None:
            continue
        if need_dh:
            dh_c = (g.to(w_mm.dtype) @ w_mm).to(dtype)  # (c, Hs)
            if rows is None:
                dh[sel] = dh_c
            else:
                dh.index_copy_(0, sel, dh_c)
        if need_dw:
            if w_s.is_cuda and w_s.dtype != torch.float32:  # bf16/fp16 GEMM, fp32 accumulate
                torch.addmm(dw, g.t().to(w_s.dtype), h, out_dtype=torch.float32, out=dw)
            else:
                dw.addmm_(g.t(), h.float())  # (V, Hs) += (V, c) @ (c, Hs)
        if need_db:
            db += g.sum(0)
        del s, g
    loss = total * plan.grad_scale
    if dw is not None and w_s.dtype != torch.float32:
        dw = dw.to(w_s.dtype)
    if db is not None and b_s.dtype != torch.float32:
        db = db.to(b_s.dtype)
    return loss, dh, dw, db


class _FusedLinearDistill(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_s, w_s, b_s, teacher_tensors, rows, plan, teacher_kind):
        teacher = _rebuild_teacher(teacher_kind, teacher_tensors)
        need = tuple(ctx.needs_input_grad[:3])
        loss, dh, dw, db = _run(h_s, w_s, b_s, teacher, rows, plan, need)
        ctx.save_for_backward(dh, dw, db)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        # The gradients were computed in the forward; scale them in place by grad_out (a 0-dim
        # tensor: no host sync, no second copy of dW). That consumes them, so a second backward
        # through the same graph (retain_graph=True) cannot be served.
        if getattr(ctx, "consumed", False):
            raise RuntimeError("fused_linear_distill: backward was already run for this loss "
                               "(its gradients are computed in the forward and used once); "
                               "call the loss again instead of retain_graph=True")
        ctx.consumed = True
        grads = [None if x is None else x.mul_(grad_out.to(x.dtype)) for x in ctx.saved_tensors]
        return (*grads, None, None, None, None)


def _rebuild_teacher(kind, tensors):
    if kind == "head":
        return TeacherHead(*tensors)
    if kind == "topk":
        return TopKTeacher(tensors[0], tensors[1])
    return tensors[0]


def fused_linear_distill(student_hidden: Tensor, student_head: Tensor,
                         teacher: TeacherHead | TopKTeacher | Tensor, *,
                         student_bias: Tensor | None = None, divergence: str = "forward_kl",
                         T: float = 1.0, beta: float = 0.5, t: float | None = None, alpha: float = 0.1,
                         mask: Tensor | None = None, labels: Tensor | None = None,
                         ignore_index: int = -100, reduction: str = "mean",
                         chunk_size: int | None = None, backend: str = "auto") -> Tensor:
    r"""Student vocab projection + distillation loss in one pass, never holding (N, V) logits.

    .. math:: \mathcal{L} = \frac{1}{|\mathcal{M}|}\sum_{i\in\mathcal{M}}
              D\big(p_i,\ \mathrm{softmax}((h_i W^\top + b) / T)\big)

    Equal to ``cookbook.losses.llm.distill_loss(student_hidden @ student_head.T + student_bias,
    teacher logits, ...)`` (same divergences, T, beta, t, masks, reduction "mean"/"sum"), with
    gradients for student_hidden, student_head and student_bias. DistiLLM's "skew_kl" / "skew_rkl"
    (``alpha``) run for top-k teachers on the torch path (their k + 1 outcome gradient is autograd
    on (c, k+1), as every top-k divergence here).

    Args:
        student_hidden: (N, Hs) last hidden states (flatten (B, L, Hs) first).
        student_head: (V, Hs) the student's output embedding (``lm_head.weight``).
        teacher: ``TeacherHead(hidden (N, Ht), head (V, Ht), bias)``, a ``TopKTeacher``
            (indices, logprobs (N, k)) from the teacher cache, or dense teacher logits (N, V).
        chunk_size: tokens per chunk; None picks one from the shapes (``auto_chunk_size``).
        backend: "torch" (any device), "triton" (CUDA; on CPU the Triton interpreter, tiny sizes
            only), "tile" (top-k teachers only: ``topk_tile``, the head streamed in tiles with an
            online log-sum-exp and recomputed in the backward; CUDA, or the interpreter on CPU)
            or "auto" (Triton on CUDA when installed, else torch).
    Shape: -> scalar fp32 loss.
    """
    dev_type = student_hidden.device.type if isinstance(student_hidden, Tensor) else "cpu"
    if torch.is_autocast_enabled(dev_type):  # cast as autocast would for a linear, then opt out
        dt = torch.get_autocast_dtype(dev_type)
        cast = lambda x: x.to(dt) if isinstance(x, Tensor) and x.is_floating_point() else x
        student_hidden, student_head, student_bias = map(cast, (student_hidden, student_head,
                                                                student_bias))
        if isinstance(teacher, TeacherHead):
            teacher = TeacherHead(*map(cast, teacher))
        with torch.autocast(dev_type, enabled=False):
            return fused_linear_distill(
                student_hidden, student_head, teacher, student_bias=student_bias,
                divergence=divergence, T=T, beta=beta, t=t, mask=mask, labels=labels,
                ignore_index=ignore_index, reduction=reduction, chunk_size=chunk_size,
                backend=backend)
    _validate(student_hidden, student_head, student_bias, teacher, chunk_size, reduction, backend)
    check_temperature(T)
    check_divergence(divergence, beta, t, alpha, allowed=ALL_DIVERGENCES)
    if divergence in SKEWED and (not isinstance(teacher, TopKTeacher) or backend in ("triton", "tile")):
        raise ValueError(f"{divergence} runs fused only for a TopKTeacher on the torch backend; use "
                         "cookbook.losses.llm.skew_kl / skew_reverse_kl on full logits otherwise")
    if divergence in SKEWED and backend == "auto":
        backend = "torch"
    n, vocab = student_hidden.shape[0], student_head.shape[0]
    if isinstance(teacher, TopKTeacher):
        check_topk(teacher, n, vocab, T)
    if backend == "tile":
        if not isinstance(teacher, TopKTeacher):
            raise ValueError("backend='tile' streams the head for a top-k teacher only; use "
                             "'torch' or 'triton' for a dense teacher")
        from cookbook.kernels.topk_tile import fused_linear_topk_distill

        return fused_linear_topk_distill(student_hidden, student_head, teacher,
                                         student_bias=student_bias, divergence=divergence, T=T,
                                         beta=beta, t=t, mask=mask, labels=labels,
                                         ignore_index=ignore_index, reduction=reduction)
    if mask is None and labels is None:  # every token counts: no host sync for the count
        n_valid, rows = n, None
    else:  # compacting the counted rows needs their number on the host (one sync)
        keep = token_mask(n, mask, labels, ignore_index, student_hidden.device, vocab)
        n_valid = int(keep.sum())
        rows = None if n_valid == n else keep.nonzero().squeeze(1)  # (n_valid,)
    if backend == "auto":
        backend = "triton" if student_hidden.is_cuda and triton_available() else "torch"
    t_dim = teacher.hidden.shape[1] if isinstance(teacher, TeacherHead) else 0
    chunk = chunk_size or auto_chunk_size(n_valid, vocab, student_hidden.shape[1], t_dim,
                                          divergence=chunked.canonical(divergence, beta),
                                          topk=isinstance(teacher, TopKTeacher))
    plan = _Plan(divergence, float(T), float(beta), t, 1.0 / n_valid if reduction == "mean"
                 else 1.0, chunk, backend, float(alpha))
    if isinstance(teacher, TeacherHead):
        kind, tensors = "head", tuple(x.detach() if x is not None else None for x in teacher)
    elif isinstance(teacher, TopKTeacher):
        kind, tensors = "topk", (teacher.indices, teacher.logprobs.detach())
    else:
        kind, tensors = "logits", (teacher.detach(),)
    grad_inputs = (student_hidden, student_head, student_bias)
    if not torch.is_grad_enabled() or not any(x is not None and x.requires_grad
                                              for x in grad_inputs):  # loss only: half the work
        with torch.no_grad():
            return _run(student_hidden, student_head, student_bias,
                        _rebuild_teacher(kind, tensors), rows, plan, (False, False, False))[0]
    return _FusedLinearDistill.apply(student_hidden, student_head, student_bias, tensors, rows,
                                     plan, kind)


def fused_linear_ce(student_hidden: Tensor, student_head: Tensor, labels: Tensor, *,
                    ignore_index: int = -100, chunk_size: int | None = None) -> Tensor:
    r"""Next-token cross-entropy through the fused head: :func:`fused_linear_distill` against a
    one-hot "teacher" (top-1, log-prob 0) at each label.

    .. math:: \mathcal{L}_{CE} = -\frac{1}{|\mathcal{M}|}\sum_{i\in\mathcal{M}} \log q_i(y_i)

    Forward KL to a one-hot target is the cross-entropy; the only difference is the top-k tail
    floor (``TAIL_FLOOR`` = 1e-6 of mass left outside the label), which moves the loss by < 1e-4.
    Shape: student_hidden (N, Hs), student_head (V, Hs), labels (N,) with ``ignore_index`` at
    skipped tokens -> scalar (mean over counted tokens).
    """
    check_tensor("labels", labels, ndim=1)
    target = TopKTeacher(labels.clamp_min(0).long()[:, None],
                         torch.zeros(len(labels), 1, device=labels.device))
    return fused_linear_distill(student_hidden, student_head, target, labels=labels,
                                ignore_index=ignore_index, chunk_size=chunk_size)
