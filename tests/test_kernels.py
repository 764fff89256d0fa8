"""Fused head + distillation loss (cookbook.kernels) against the reference in losses/llm.py.

Liger-Kernel style: every path is compared with the plain torch reference over odd shapes and
dtypes with per-dtype tolerances. The Triton kernels run on CPU through the Triton interpreter at
tiny sizes; on a GPU they are also checked compiled (skipped without CUDA).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from cookbook.bench import kd_loss as bench
from cookbook.kernels import TeacherHead, auto_chunk_size, chunked, fused_linear_distill
from cookbook.losses import llm as L
from cookbook.losses.llm import TopKTeacher

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
ODD = (41, 401, 1271)  # N, H, V
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}  # relative error
KW = dict(T=2.0, beta=0.3, t=0.6)


def make(n, h, v, ht=None, seed=0, device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ht = ht or h
    x = dict(
        h=torch.randn(n, h, generator=g), w=torch.randn(v, h, generator=g) / h**0.5,
        b=torch.randn(v, generator=g) * 0.1, th=torch.randn(n, ht, generator=g),
        tw=torch.randn(v, ht, generator=g) * 3 / ht**0.5,
        mask=torch.rand(n, generator=g) > 0.3)
    return {k: t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
            for k, t in x.items()}


def teacher_of(x, kind, k=37):
    if kind == "head":
        return TeacherHead(x["th"], x["tw"])
    logits = x["th"].float() @ x["tw"].float().t()  # (N, V)
    if kind == "logits":
        return logits.to(x["th"].dtype)
    return TopKTeacher.from_logits(logits, k, T=KW["T"])


def reference(x, teacher, divergence, **kw):
    """The reference loss on full fp32 logits, and its gradients for h, W, b."""
    h, w, b = (x[k].detach().float().requires_grad_() for k in ("h", "w", "b"))
    if isinstance(teacher, TeacherHead):
        teacher = teacher.hidden.float() @ teacher.head.float().t()
    elif isinstance(teacher, torch.Tensor):
        teacher = teacher.float()
    loss = L.distill_loss(h @ w.t() + b, teacher, divergence=divergence, **kw)
    loss.backward()
    return loss.detach(), h.grad, w.grad, b.grad


def fused(x, teacher, divergence, **kw):
    h, w, b = (x[k].detach().clone().requires_grad_() for k in ("h", "w", "b"))
    loss = fused_linear_distill(h, w, teacher, student_bias=b, divergence=divergence, **kw)
    loss.backward()
    return loss.detach(), h.grad, w.grad, b.grad


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def assert_parity(got, ref, tol):
    for name, a, b in zip(("loss", "dh", "dW", "db"), got, ref):
        assert rel(a, b) <= tol, f"{name}: relative error {rel(a, b):.2e} > {tol}"


# ----------------------------------------------------------------------------- torch path


@pytest.mark.parametrize("kind", ["head", "logits", "topk"])
@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_torch_path_matches_reference_fp32(divergence, kind):
    x = make(*ODD)
    teacher = teacher_of(x, kind)
    ref = reference(x, teacher, divergence, mask=x["mask"], **KW)
    got = fused(x, teacher, divergence, mask=x["mask"], chunk_size=16, backend="torch", **KW)
    assert_parity(got, ref, TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["head", "topk"])
@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_torch_path_low_precision(divergence, kind, dtype):
    x = make(*ODD, dtype=dtype)
    teacher = teacher_of(x, kind)
    got = fused(x, teacher, divergence, backend="torch", **KW)
    assert got[1].dtype == dtype and got[2].dtype == dtype and got[0].dtype == torch.float32
    assert_parity(got, reference(x, teacher, divergence, **KW), TOL[dtype])


def test_teacher_with_its_own_width_and_bias():
    x = make(33, 48, 300, ht=80)
    teacher = TeacherHead(x["th"], x["tw"], torch.randn(300))
    dense = x["th"] @ x["tw"].t() + teacher.bias
    got = fused(x, teacher, "jsd", chunk_size=8, **KW)
    assert_parity(got, reference(x, dense, "jsd", **KW), 1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_jsd_endpoints(beta):
    x = make(20, 32, 200)
    kl = "forward_kl" if beta == 0.0 else "reverse_kl"
    got = fused(x, teacher_of(x, "head"), "jsd", beta=beta, T=1.0)
    assert_parity(got, reference(x, teacher_of(x, "head"), kl, T=1.0), 1e-5)


def test_ignore_index_sum_reduction_and_grad_output():
    x = make(30, 24, 150)
    labels = torch.where(x["mask"], 3, -100)
    teacher = teacher_of(x, "head")
    ref = reference(x, teacher, "forward_kl", labels=labels, reduction="sum")
    h, w, b = (x[k].clone().requires_grad_() for k in ("h", "w", "b"))
    loss = fused_linear_distill(h, w, teacher, student_bias=b, labels=labels, reduction="sum",
                                chunk_size=7)
    (3.0 * loss).backward()  # a non-unit grad_output must scale every gradient
    assert_parity((loss.detach(), h.grad / 3, w.grad / 3, b.grad / 3), ref, 1e-5)
    assert (h.grad[~x["mask"]] == 0).all()


def test_no_grad_and_frozen_inputs():
    x = make(25, 16, 90)
    teacher = teacher_of(x, "topk", k=5)
    ref = reference(x, teacher, "taid", T=2.0, t=0.5)[0]
    with torch.no_grad():
        loss = fused_linear_distill(x["h"], x["w"], teacher, student_bias=x["b"],
                                    divergence="taid", T=2.0, t=0.5)
    assert rel(loss, ref) < 1e-5
    w = x["w"].clone().requires_grad_()  # only the head trains
    fused_linear_distill(x["h"], w, teacher, student_bias=x["b"], divergence="taid", T=2.0,
                         t=0.5).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_no_grad_computes_no_gradients(monkeypatch):
    seen = []
    real = chunked.dense_chunk

    def spy(*a, **kw):
        seen.append(kw["need_grad"])
        return real(*a, **kw)

    monkeypatch.setattr(chunked, "dense_chunk", spy)
    x = make(25, 16, 90)
    h = x["h"].clone().requires_grad_()
    with torch.no_grad():
        loss = fused_linear_distill(h, x["w"], teacher_of(x, "head"), chunk_size=8)
    assert seen and not any(seen) and not loss.requires_grad  # the loss only, no dL/ds, no dW
    seen.clear()
    fused_linear_distill(h, x["w"], teacher_of(x, "head"), chunk_size=8).backward()
    assert all(seen) and h.grad is not None


def test_backward_twice_is_a_clear_error():
    x = make(9, 8, 30)
    h = x["h"].clone().requires_grad_()
    loss = fused_linear_distill(h, x["w"], teacher_of(x, "head"))
    (2 * loss).backward(retain_graph=True)
    h1 = x["h"].clone().requires_grad_()
    fused_linear_distill(h1, x["w"], teacher_of(x, "head")).backward()
    torch.testing.assert_close(h.grad, 2 * h1.grad)  # grad_output scales in place
    with pytest.raises(RuntimeError, match="already run"):
        loss.backward()


@pytest.mark.parametrize("kind", ["head", "logits", "topk"])
def test_autocast_bf16_on_cpu(kind):
    # the usual training setup: fp32 parameters, forward under bf16 autocast
    torch.manual_seed(0)
    body, head = torch.nn.Linear(16, 24), torch.nn.Linear(24, 90, bias=False)
    x_in = torch.randn(30, 16)
    x = make(30, 24, 90)
    teacher = teacher_of(x, kind, k=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = body(x_in)  # bf16 under autocast
        loss = fused_linear_distill(h, head.weight, teacher, divergence="jsd", **KW)
    loss.backward()
    assert loss.dtype == torch.float32 and head.weight.grad.dtype == torch.float32
    body2, head2 = (torch.nn.Linear(16, 24), torch.nn.Linear(24, 90, bias=False))
    body2.load_state_dict(body.state_dict()), head2.load_state_dict(head.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the reference on autocast's bf16 logits
        ref_t = teacher if not isinstance(teacher, TeacherHead) else \
            (teacher.hidden @ teacher.head.t()).float()
        ref = L.distill_loss(head2(body2(x_in)).float(), ref_t, divergence="jsd", **KW)
    ref.backward()
    assert rel(loss, ref) < 2e-2
    assert rel(head.weight.grad, head2.weight.grad) < 3e-2
    assert rel(body.weight.grad, body2.weight.grad) < 3e-2


class _Allocations(TorchDispatchMode):
    """Records every tensor torch creates: their shapes and the largest element count."""

    def __init__(self):
        super().__init__()
        self.largest, self.shapes = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
                self.shapes.add(tuple(t.shape))
        return out


@pytest.mark.parametrize("kind", ["head", "topk"])
def test_never_materialises_the_logits(kind):
    n, h, v, chunk = 512, 16, 1000, 32
    x = make(n, h, v)
    teacher = teacher_of(x, kind)
    with _Allocations() as spy:
        hh = x["h"].clone().requires_grad_()
        fused_linear_distill(hh, x["w"].requires_grad_(), teacher, chunk_size=chunk,
                             T=KW["T"]).backward()
    assert spy.largest <= 2 * chunk * v < n * v  # (chunk, V) buffers at most, never (N, V)


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 40), st.integers(1, 24), st.integers(2, 120), st.integers(1, 9),
       st.sampled_from(L.DIVERGENCES), st.integers(0, 999))
def test_any_shape_and_chunk(n, h, v, chunk, divergence, seed):
    x = make(n, h, v, seed=seed)
    teacher = teacher_of(x, "head")
    got = fused(x, teacher, divergence, chunk_size=chunk, **KW)
    assert_parity(got, reference(x, teacher, divergence, **KW), 2e-5)


def test_auto_chunk_size():
    assert auto_chunk_size(41, 1271, 401, 401) == 41  # never more than the rows
    c_small, c_big = auto_chunk_size(8192, 49152, 576, 576), auto_chunk_size(8192, 128256, 2048, 2048)
    assert c_small % 64 == 0 and c_big % 64 == 0 and c_small < c_big  # wider heads, bigger chunks
    assert auto_chunk_size(8192, 49152, 576, 576, divergence="jsd") < c_small  # more buffers


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_closed_form_gradient_is_the_autograd_gradient(divergence):
    s, t = torch.randn(6, 40) * 2, torch.randn(6, 40) * 3
    a = s.clone().requires_grad_()
    L.distill_loss(a, t, divergence=divergence, reduction="sum", **KW).backward()
    loss, grad = chunked.dense_chunk(s.clone(), t.clone(), divergence=divergence, **KW)
    torch.testing.assert_close(loss.sum(), L.distill_loss(s, t, divergence=divergence,
                                                          reduction="sum", **KW))
    torch.testing.assert_close(grad, a.grad, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- Triton path


@pytest.fixture(scope="module")
def triton_kd():
    pytest.importorskip("triton")
    from cookbook.kernels import triton_kd

    return triton_kd


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
@pytest.mark.parametrize("need_grad", [True, False])
def test_triton_dense_kernel_matches_torch(triton_kd, divergence, need_grad):
    s, t = torch.randn(5, 70) * 2, torch.randn(5, 70) * 3
    s[0, 3] = -float("inf")  # a forbidden token in the student's vocabulary
    ref_loss, ref_grad = chunked.dense_chunk(s.clone(), t.clone(), divergence=divergence,
                                             grad_scale=0.25, **KW)
    loss, grad = triton_kd.dense_chunk(s.clone(), t.clone(), divergence=divergence,
                                       grad_scale=0.25, need_grad=need_grad, block_v=16, **KW)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    if need_grad:
        torch.testing.assert_close(grad, ref_grad, atol=1e-7, rtol=1e-5)
    else:
        assert grad is None


@pytest.mark.parametrize("V", [70, 64])
@pytest.mark.parametrize("t", [0.0, 1.0])
def test_triton_taid_end_points(triton_kd, t, V):
    # t = 0 / 1 with V not a multiple of BLOCK_V (masked lanes hold -inf) and a -inf student logit
    s, z = torch.randn(5, V) * 2, torch.randn(5, V) * 3
    s[0, 3] = -float("inf")
    ref_loss, ref_grad = chunked.dense_chunk(s.clone(), z.clone(), divergence="taid", T=2.0, t=t)
    loss, grad = triton_kd.dense_chunk(s.clone(), z.clone(), divergence="taid", T=2.0, t=t,
                                       block_v=16)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_triton_topk_matches_torch(triton_kd, divergence):
    s, t = torch.randn(4, 50) * 2, torch.randn(4, 50) * 3
    topk = TopKTeacher.from_logits(t, 6, T=2.0)
    args = (topk.indices, topk.logprobs)
    ref = chunked.topk_chunk(s.clone(), *args, divergence=divergence, **KW)
    got = triton_kd.topk_chunk(s.clone(), *args, divergence=divergence, block_v=16, **KW)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["head", "topk"])
def test_triton_path_end_to_end(triton_kd, kind):
    x = make(9, 16, 70)
    teacher = teacher_of(x, kind, k=5)
    got = fused(x, teacher, "jsd", mask=x["mask"], chunk_size=4, backend="triton", **KW)
    assert_parity(got, reference(x, teacher, "jsd", mask=x["mask"], **KW), 1e-5)


# ----------------------------------------------------------------------------- top-k tile kernel


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
@pytest.mark.parametrize("case", ["mask+bias", "sum", "k=V"])
def test_tile_kernel_matches_reference(triton_kd, divergence, case):
    n, h, v = (20, 24, 70) if case != "k=V" else (17, 16, 40)
    x = make(n, h, v)
    teacher = teacher_of(x, "topk", k=v if case == "k=V" else 5)
    kw = dict(KW, reduction="sum") if case == "sum" else dict(KW, mask=x["mask"])
    got = fused(x, teacher, divergence, backend="tile", **kw)
    assert_parity(got, reference(x, teacher, divergence, **kw), 1e-5)


def test_tile_kernel_writes_no_logits_chunk(triton_kd):
    n, h, v = 48, 24, 200
    x = make(n, h, v)
    teacher = teacher_of(x, "topk", k=5)
    with _Allocations() as spy:
        fused(x, teacher, "forward_kl", backend="tile", T=2.0)
    wide = {s for s in spy.shapes if len(s) == 2 and s[1] == v}  # any (rows, V) buffer
    assert not wide, f"(c, V) buffers were allocated: {wide}"
    with _Allocations() as spy:  # the chunked path does write them: the spy can see them
        fused(x, teacher, "forward_kl", chunk_size=16, T=2.0)
    assert (16, v) in spy.shapes


def test_tile_kernel_no_grad_and_bad_teacher(triton_kd):
    x = make(20, 16, 50)
    teacher = teacher_of(x, "topk", k=4)
    with torch.no_grad():
        loss = fused_linear_distill(x["h"], x["w"], teacher, backend="tile", divergence="taid",
                                    T=2.0, t=1.0)
    ref = fused_linear_distill(x["h"], x["w"], teacher, divergence="taid", T=2.0, t=1.0)
    assert rel(loss, ref) < 1e-5
    with pytest.raises(ValueError, match="top-k teacher only"):
        fused_linear_distill(x["h"], x["w"], teacher_of(x, "head"), backend="tile")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["head", "topk"])
@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_triton_on_gpu(divergence, kind, dtype):
    x = make(*ODD, device="cuda", dtype=dtype)
    teacher = teacher_of(x, kind)
    got = fused(x, teacher, divergence, backend="triton", **KW)
    # TF32 may be on for fp32 matmuls on the GPU: allow 1e-4 there
    assert_parity(got, reference(x, teacher, divergence, **KW), max(TOL[dtype], 1e-4))


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_tile_kernel_on_gpu(divergence, dtype):
    x = make(*ODD, device="cuda", dtype=dtype)
    teacher = teacher_of(x, "topk")
    got = fused(x, teacher, divergence, backend="tile", mask=x["mask"], **KW)
    ref = reference(x, teacher, divergence, mask=x["mask"], **KW)
    assert_parity(got, ref, max(TOL[dtype], 1e-4))  # tl.dot may use TF32 for fp32 inputs


@needs_cuda
def test_autocast_bf16_on_gpu():
    x = make(*ODD, device="cuda")
    h, w = x["h"].clone().requires_grad_(), x["w"].clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = fused_linear_distill(h, w, teacher_of(x, "head"), divergence="jsd", **KW)
    loss.backward()
    ref = reference(x, teacher_of(x, "head"), "jsd", **KW)
    assert w.grad.dtype == torch.float32 and rel(loss, ref[0]) < 2e-2 and rel(w.grad, ref[2]) < 3e-2


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(chunk_size=0), "chunk_size"),
        (dict(chunk_size=-4), "chunk_size"),
        (dict(teacher=TeacherHead(torch.randn(10, 8), torch.randn(51, 8))), "vocabulary mismatch"),
        (dict(teacher=torch.randn(10, 49)), "a vocabulary mismatch"),
        (dict(teacher=TopKTeacher(torch.full((10, 2), 60), torch.full((10, 2), -1.0))), "vocabulary"),
        (dict(student_head=torch.randn(50, 7)), "hidden size"),
        (dict(mask=torch.zeros(10, dtype=torch.bool)), "masked"),
        (dict(student_hidden=torch.full((10, 8), float("nan"))), "NaN"),
        (dict(T=0.0), "temperature"),
        (dict(reduction="none"), "reduction"),
        (dict(backend="cuda"), "backend"),
        (dict(teacher="teacher.safetensors"), "teacher must be"),
        (dict(divergence="taid"), "t in"),
    ],
)
def test_bad_input_raises_clear_error(change, match):
    args = dict(student_hidden=torch.randn(10, 8), student_head=torch.randn(50, 8),
                teacher=TeacherHead(torch.randn(10, 8), torch.randn(50, 8)))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        fused_linear_distill(args.pop("student_hidden"), args.pop("student_head"),
                             args.pop("teacher"), **args)


# ----------------------------------------------------------------------------- benchmark harness


def test_bench_harness_in_process(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "_run_one", bench.worker)  # no subprocess: keep the test fast
    rows = bench.run(["tiny"], [128, 256], ["naive", "ours", "liger"], "forward_kl", 1,
                     max_bytes=2**40, device="cpu", log=lambda *a: None)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["method"] for r in ok} == {"naive", "ours"} and len(ok) == 4
    assert all(r["peak_over_floor"] > 0 and r["time_s"] > 0 for r in ok)
    assert all(r["time_over_naive"] == 1.0 for r in ok if r["method"] == "naive")
    losses = {r["N"]: set() for r in ok}
    for r in ok:
        losses[r["N"]].add(round(float(r["loss"]), 4))
    assert all(len(v) == 1 for v in losses.values())  # every method computes the same loss
    # a run predicted above the limit is skipped with the memory it would need
    rows = bench.run(["tiny"], [256], ["naive"], "forward_kl", 1, max_bytes=1, device="cpu",
                     log=lambda *a: None)
    assert rows[0]["status"] == "skipped" and "would need" in rows[0]["reason"]
    bench.write_csv(rows, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text().startswith("device,date,commit")


def test_physical_floor():
    # SmolLM2 shape at N=8192 in fp32: 3 V*H + 3 N*H floats
    assert bench.physical_floor_bytes(8192, 576, 49152) == 4 * (3 * 49152 * 576 + 3 * 8192 * 576)


@pytest.mark.parametrize("divergence", ["skew_kl", "skew_rkl"])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.6])
def test_skew_divergences_on_a_topk_teacher_match_the_reference(divergence, alpha):
    from cookbook.losses.llm import TopKTeacher, distill_loss

    g = torch.Generator().manual_seed(5)
    h = torch.randn(41, 13, generator=g, requires_grad=True)
    w = torch.randn(401, 13, generator=g, requires_grad=True)
    teacher = TopKTeacher.from_logits(torch.randn(41, 401, generator=g) * 3, 9)
    mask = torch.rand(41, generator=g) > 0.3
    got = fused_linear_distill(h, w, teacher, divergence=divergence, alpha=alpha, mask=mask, chunk_size=8)
    want = distill_loss(h @ w.T, teacher, divergence=divergence, alpha=alpha, mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.autograd.grad(got, (h, w)), torch.autograd.grad(want, (h, w))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_skew_divergences_refuse_what_they_cannot_run():
    from cookbook.losses.llm import TopKTeacher

    h, w = torch.randn(5, 4), torch.randn(11, 4)
    with pytest.raises(ValueError, match="TopKTeacher on the torch backend"):
        fused_linear_distill(h, w, torch.randn(5, 11), divergence="skew_kl")
    with pytest.raises(ValueError, match="TopKTeacher on the torch backend"):
        fused_linear_distill(h, w, TopKTeacher.from_logits(torch.randn(5, 11), 3), divergence="skew_kl",
                             backend="tile")
    with pytest.raises(ValueError, match="alpha"):
        fused_linear_distill(h, w, TopKTeacher.from_logits(torch.randn(5, 11), 3), divergence="skew_kl", alpha=1.0)
