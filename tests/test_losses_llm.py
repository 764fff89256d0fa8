"""The LLM distillation divergences (cookbook.losses.llm): values, laws, traps and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses import llm as L
from cookbook.losses.llm import TopKTeacher


def logits(n=6, v=11, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * scale


# ----------------------------------------------------------------------------- values


def test_forward_kl_by_hand():
    student = torch.zeros(1, 3)  # q uniform
    teacher = torch.tensor([[0.5, 0.25, 0.25]]).log()
    expected = 0.5 * math.log(0.5 / (1 / 3)) + 2 * 0.25 * math.log(0.25 / (1 / 3))
    assert L.forward_kl(student, teacher).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_forward_kl_is_batchmean_not_elementwise_mean():
    s, t = logits(), logits(seed=1)
    log_q, log_p = F.log_softmax(s, -1), F.log_softmax(t, -1)
    batchmean = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    torch.testing.assert_close(L.forward_kl(s, t), batchmean)
    elementwise = F.kl_div(log_q, log_p, log_target=True, reduction="mean")  # the trap: / (N * V)
    torch.testing.assert_close(elementwise * s.shape[1], batchmean)


def test_temperature_has_no_T2_factor():
    s, t = logits(), logits(seed=1)
    torch.testing.assert_close(L.forward_kl(s, t, T=2.0), L.forward_kl(s / 2, t / 2))


def test_reverse_kl_is_forward_kl_with_roles_swapped():
    s, t = logits(), logits(seed=1)
    torch.testing.assert_close(L.reverse_kl(s, t), L.forward_kl(t, s))


def test_jsd_endpoints_are_forward_and_reverse_kl():
    s, t = logits(), logits(seed=1)
    torch.testing.assert_close(L.generalized_jsd(s, t, beta=0.0), L.forward_kl(s, t))
    torch.testing.assert_close(L.generalized_jsd(s, t, beta=1.0), L.reverse_kl(s, t))
    # near the endpoints JSD(beta) vanishes like beta * KL: the reason for the convention
    small = L.generalized_jsd(s, t, beta=1e-3) / 1e-3
    assert small.item() == pytest.approx(L.forward_kl(s, t).item(), rel=2e-2)


def test_jsd_half_by_hand():
    p, q = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.5, 0.5]])
    m = (p + q) / 2
    expected = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    got = L.generalized_jsd(q.log(), p.log(), beta=0.5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_reductions_and_masks():
    s, t = logits(8), logits(8, seed=1)
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    labels = torch.where(mask, 5, -100)
    sub = L.forward_kl(s[mask], t[mask])
    torch.testing.assert_close(L.forward_kl(s, t, mask=mask), sub)
    torch.testing.assert_close(L.forward_kl(s, t, labels=labels), sub)
    torch.testing.assert_close(L.forward_kl(s, t, mask=mask, reduction="sum"), sub * mask.sum())
    per_token = L.forward_kl(s, t, mask=mask, reduction="none")
    assert per_token.shape == (8,) and (per_token[~mask] == 0).all()
    torch.testing.assert_close(per_token[mask].mean(), sub)


def test_masked_tokens_get_no_gradient():
    s = logits(8).requires_grad_()
    mask = torch.arange(8) % 2 == 0
    L.reverse_kl(s, logits(8, seed=1), mask=mask).backward()
    assert (s.grad[~mask] == 0).all() and (s.grad[mask] != 0).any()


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_gradients_flow(divergence):
    s = logits().requires_grad_()
    L.distill_loss(s, logits(seed=1), divergence=divergence, t=0.5).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    torch.testing.assert_close(s.grad.sum(-1), torch.zeros(6), atol=1e-6, rtol=0)  # softmax shift


# ----------------------------------------------------------------------------- TAID


def test_taid_endpoints_and_detached_target():
    s, t = logits(), logits(seed=1)
    torch.testing.assert_close(L.taid_loss(s, t, t=1.0), L.forward_kl(s, t))
    assert L.taid_loss(s, t, t=0.0).item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(L.taid_target(s, t, t=1.0), F.softmax(t, -1))
    # the target is a constant: dL/dz_s = (q - r_t) / (T N), not the gradient through r_t
    s = s.requires_grad_()
    L.taid_loss(s, t, t=0.4, T=2.0).backward()
    r = L.taid_target(s, t, t=0.4, T=2.0)
    expected = (F.softmax(s.detach() / 2, -1) - r) / (2.0 * s.shape[0])
    torch.testing.assert_close(s.grad, expected, atol=1e-6, rtol=1e-5)


def test_taid_schedule_is_monotone_bounded_and_adaptive():
    fast, slow = L.TAIDSchedule(100, alpha=0.05), L.TAIDSchedule(100, alpha=0.05)
    ts = []
    for step in range(100):
        ts.append(fast.update(10.0 * 0.9**step))  # loss falling fast
        slow.update(10.0)  # loss flat
    assert all(b >= a for a, b in zip(ts, ts[1:]))
    assert ts[0] == pytest.approx(0.4) and ts[-1] == pytest.approx(1.0)
    assert fast.t >= slow.t
    mid_fast, mid_slow = L.TAIDSchedule(100, alpha=0.05), L.TAIDSchedule(100, alpha=0.05)
    for step in range(20):
        mid_fast.update(10.0 * 0.5**step)
        mid_slow.update(10.0)
    assert mid_fast.t > mid_slow.t > 0.4
    with pytest.raises(ValueError):
        L.TAIDSchedule(0)


# ----------------------------------------------------------------------------- top-k teachers


@pytest.mark.parametrize("divergence", L.DIVERGENCES)
def test_topk_with_k_equal_V_is_the_dense_loss(divergence):
    s, t = logits(), logits(seed=1)
    topk = TopKTeacher.from_logits(t, t.shape[1], T=1.5)
    kw = dict(divergence=divergence, T=1.5, t=0.5, beta=0.3)
    torch.testing.assert_close(L.distill_loss(s, topk, **kw), L.distill_loss(s, t, **kw))


def test_topk_tail_bin_by_hand():
    student = torch.zeros(1, 4)  # q = 1/4 each
    teacher = TopKTeacher(torch.tensor([[2, 0]]), torch.tensor([[0.6, 0.3]]).log())
    assert teacher.tail_mass().item() == pytest.approx(0.1)
    # outcomes {2, 0, tail}: p = (0.6, 0.3, 0.1), q = (0.25, 0.25, 0.5)
    expected = 0.6 * math.log(0.6 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.1 * math.log(0.1 / 0.5)
    assert L.forward_kl(student, teacher).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_rkl"])
def test_topk_never_exceeds_the_dense_divergence(divergence):
    # coarsening to k + 1 outcomes can only lose information (data-processing inequality)
    s, t = logits(20, 50), logits(20, 50, seed=1)
    dense = L.distill_loss(s, t, divergence=divergence, reduction="none")
    for k in (1, 5, 20):
        topk = L.distill_loss(s, TopKTeacher.from_logits(t, k), divergence=divergence,
                              reduction="none")
        assert (topk <= dense + 1e-5).all()


def test_topk_select_and_from_logits():
    t = logits(5, 9)
    topk = TopKTeacher.from_logits(t, 3, T=2.0)
    assert topk.indices.dtype == torch.int64 and topk.logprobs.shape == (5, 3) and topk.T == 2.0
    torch.testing.assert_close(topk.tail_mass(), 1 - topk.logprobs.exp().sum(-1))
    assert topk.select(slice(1, 3)).indices.shape == (2, 3)


# ----------------------------------------------------------------------------- laws


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(2, 12), st.integers(0, 10_000),
       st.sampled_from(L.DIVERGENCES), st.floats(0.0, 1.0))
def test_divergences_are_nonnegative_and_zero_on_equal(n, v, seed, divergence, beta):
    s, t = logits(n, v, seed), logits(n, v, seed + 1)
    kw = dict(divergence=divergence, beta=beta, t=0.5)
    assert L.distill_loss(s, t, **kw).item() >= -1e-6
    assert L.distill_loss(s, s.clone(), **kw).item() == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(2, 12), st.integers(0, 10_000))
def test_jsd_half_is_symmetric_and_below_log2(n, v, seed):
    s, t = logits(n, v, seed, scale=4.0), logits(n, v, seed + 1, scale=4.0)
    a = L.generalized_jsd(s, t, beta=0.5)
    torch.testing.assert_close(a, L.generalized_jsd(t, s, beta=0.5), atol=1e-6, rtol=1e-5)
    assert a.item() <= math.log(2) + 1e-6


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, t: L.forward_kl(s, t, T=0.0), "temperature"),
        (lambda s, t: L.forward_kl(s, t, T=-1.0), "temperature"),
        (lambda s, t: L.forward_kl(s, t[:, :-1]), "vocabularies"),
        (lambda s, t: L.forward_kl(s, t[:-1]), "vocabularies"),
        (lambda s, t: L.forward_kl(s, t, mask=torch.zeros(6, dtype=torch.bool)), "masked"),
        (lambda s, t: L.forward_kl(s, t, labels=torch.full((6,), -100)), "masked"),
        (lambda s, t: L.forward_kl(s * float("nan"), t), "NaN"),
        (lambda s, t: L.forward_kl(s, t * float("nan")), "NaN"),
        (lambda s, t: L.forward_kl(s[None], t[None]), "2-D"),
        (lambda s, t: L.forward_kl(s[:0], t[:0]), "empty"),
        (lambda s, t: L.generalized_jsd(s, t, beta=1.5), "beta"),
        (lambda s, t: L.distill_loss(s, t, divergence="taid"), "t in"),
        (lambda s, t: L.distill_loss(s, t, divergence="kl"), "unknown divergence"),
        (lambda s, t: L.forward_kl(s, t, reduction="batchmean"), "reduction"),
        (lambda s, t: L.forward_kl(s, t, mask=torch.ones(5, dtype=torch.bool)), "mask"),
        (lambda s, t: L.forward_kl(s[:, :5], TopKTeacher.from_logits(t, 3)), "vocabulary"),
        (lambda s, t: L.forward_kl(s, TopKTeacher.from_logits(t, 3, T=2.0)), "rebuild the cache"),
        (lambda s, t: L.forward_kl(s, TopKTeacher(torch.zeros(6, 2).long(), torch.full((6, 2), -1.0))),
         "distinct"),
        (lambda s, t: L.forward_kl(s, TopKTeacher(torch.arange(2).repeat(6, 1), torch.zeros(6, 2))),
         "sums to > 1"),
        (lambda s, t: L.forward_kl(s, TopKTeacher(torch.arange(2).repeat(6, 1).int(),
                                                  torch.full((6, 2), -1.0))), "int64"),
        (lambda s, t: TopKTeacher.from_logits(t, 0), "k must be"),
    ],
)
def test_bad_input_raises_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(logits(), logits(seed=1))


# ----------------------------------------------------------------------------- DistiLLM skew KL


def test_skew_kl_by_hand_and_as_distillm_writes_it():
    p, q = torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([[0.2, 0.3, 0.5]])
    m = 0.1 * p + 0.9 * q
    assert L.skew_kl(q.log(), p.log()).item() == pytest.approx((p * (p / m).log()).sum().item(), rel=1e-6)
    m = 0.1 * q + 0.9 * p
    assert L.skew_reverse_kl(q.log(), p.log()).item() == pytest.approx(
        (q * (q / m).log()).sum().item(), rel=1e-6)
    # DistiLLM's code writes SKL as the cross-entropy -sum p log m: the same up to H(p), a constant
    s, t = logits(), logits(seed=1)
    pt, ps = F.softmax(t, -1), F.softmax(s, -1)
    ce = -(pt * (0.3 * pt + 0.7 * ps).log()).sum(-1).mean()
    entropy = -(pt * pt.log()).sum(-1).mean()
    torch.testing.assert_close(L.skew_kl(s, t, alpha=0.3), ce - entropy)


def test_skew_alpha_zero_is_plain_kl_and_skew_bounds_the_loss():
    s, t = logits(), logits(seed=1)
    torch.testing.assert_close(L.skew_kl(s, t, alpha=0.0), L.forward_kl(s, t))
    torch.testing.assert_close(L.skew_reverse_kl(s, t, alpha=0.0), L.reverse_kl(s, t))
    # p / (a p + (1-a) q) <= 1/a: the skewed losses never exceed -log(alpha), even where the
    # student has (almost) no mass on a teacher mode and plain forward KL explodes
    student = torch.tensor([[-1e4, 0.0, 1.0]])
    teacher = torch.tensor([[5.0, 0.0, 0.0]])
    assert L.forward_kl(student, teacher).item() > 1e3
    for fn in (L.skew_kl, L.skew_reverse_kl):
        assert 0 <= fn(student, teacher, alpha=0.1).item() <= -math.log(0.1) + 1e-6
        nearly_dead = torch.tensor([[-20.0, 0.0, 1.0]], requires_grad=True)
        fn(nearly_dead, teacher, alpha=0.1).backward()
        assert torch.isfinite(nearly_dead.grad).all() and nearly_dead.grad.abs().sum() > 0


@pytest.mark.parametrize("divergence", L.ALL_DIVERGENCES)
def test_all_divergences_topk_k_equal_V_and_gradients(divergence):
    s, t = logits().requires_grad_(), logits(seed=1)
    kw = dict(divergence=divergence, T=1.5, t=0.5, beta=0.3, alpha=0.2)
    topk = TopKTeacher.from_logits(t, t.shape[1], T=1.5)
    dense = L.distill_loss(s, t, **kw)
    torch.testing.assert_close(L.distill_loss(s, topk, **kw), dense)
    dense.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(2, 12), st.integers(0, 10_000), st.floats(0.0, 0.95))
def test_skew_divergences_nonnegative_and_zero_on_equal(n, v, seed, alpha):
    s, t = logits(n, v, seed), logits(n, v, seed + 1)
    for divergence in ("skew_kl", "skew_rkl"):
        assert L.distill_loss(s, t, divergence=divergence, alpha=alpha).item() >= -1e-6
        assert L.distill_loss(s, s.clone(), divergence=divergence, alpha=alpha).item() == \
            pytest.approx(0.0, abs=1e-5)


def test_kernel_divergence_list_is_unchanged():
    # the kernels validate with the default list: the skew divergences stay reference-only
    assert L.DIVERGENCES == ("forward_kl", "reverse_kl", "jsd", "taid")
    with pytest.raises(ValueError, match="unknown divergence"):
        L.check_divergence("skew_kl", 0.5, None)
    L.check_divergence("skew_kl", 0.5, None, 0.1, allowed=L.ALL_DIVERGENCES)


# ----------------------------------------------------------------------------- SinKD


def exact_ot(cost):
    """Exact OT cost between uniform measures, by linear programming (epsilon = 0)."""
    from scipy.optimize import linprog
    m = cost.shape[0]
    rows = [[1.0 if k // m == i else 0.0 for k in range(m * m)] for i in range(m)]
    cols = [[1.0 if k % m == j else 0.0 for k in range(m * m)] for j in range(m)]
    res = linprog(cost.reshape(-1), A_eq=rows + cols, b_eq=[1.0 / m] * (2 * m), bounds=(0, None))
    return res.fun


def sinkhorn_numpy(cost, eps, n_iter):
    """Textbook Sinkhorn (Cuturi 2013) in float64, uniform marginals: the <P, C> it reaches."""
    import numpy as np
    m = cost.shape[0]
    k = np.exp(-cost / eps)
    v = np.ones(m)
    for _ in range(n_iter):
        u = (1 / m) / (k @ v)
        v = (1 / m) / (k.T @ u)
    return float((u[:, None] * k * v[None, :] * cost).sum())


def test_sinkhorn_matches_exact_ot_as_epsilon_vanishes():
    s, t = logits(4, 6, seed=3).double(), logits(4, 6, seed=4).double()
    cost = torch.cdist(F.softmax(s, -1), F.softmax(t, -1), p=1).numpy()
    got = L.sinkhorn_loss(s, t, epsilon=1e-3, n_iter=3000).item()
    assert got == pytest.approx(exact_ot(cost), abs=5e-3)
    # and it is a batch-wise transport, not the sample-wise (diagonal) pairing
    assert exact_ot(cost) < cost.trace() / 4


def test_sinkhorn_matches_textbook_float64_reference():
    s, t = logits(7, 9, seed=5).double(), logits(7, 9, seed=6).double()
    cost = torch.cdist(F.softmax(s / 2, -1), F.softmax(t / 2, -1), p=1).numpy()
    got = L.sinkhorn_loss(s, t, T=2.0, epsilon=0.2, n_iter=50).item()
    assert got == pytest.approx(sinkhorn_numpy(cost, 0.2, 50), rel=1e-9)


def test_sinkhorn_invariants():
    s, t = logits(6, 11, seed=7), logits(6, 11, seed=8)
    # student == teacher: only the entropic bias, vanishing with epsilon
    same_small = L.sinkhorn_loss(s, s.clone(), epsilon=1e-3, n_iter=500).item()
    assert 0 <= same_small < 1e-4
    assert L.sinkhorn_loss(s, s.clone()).item() < L.sinkhorn_loss(s, t).item()
    # batch-wise: the teacher rows may come in any order
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(L.sinkhorn_loss(s, t[perm], n_iter=200),
                               L.sinkhorn_loss(s, t, n_iter=200), atol=1e-6, rtol=1e-5)
    # symmetric L1 cost: swapping student and teacher transposes the problem
    torch.testing.assert_close(L.sinkhorn_loss(t, s, n_iter=500), L.sinkhorn_loss(s, t, n_iter=500),
                               atol=1e-5, rtol=1e-4)


def test_sinkhorn_masks_reductions_and_gradients():
    s, t = logits(8, 11, seed=9).requires_grad_(), logits(8, 11, seed=10)
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool)
    sub = L.sinkhorn_loss(s[mask], t[mask])
    torch.testing.assert_close(L.sinkhorn_loss(s, t, mask=mask), sub)
    torch.testing.assert_close(L.sinkhorn_loss(s, t, labels=torch.where(mask, 1, -100)), sub)
    torch.testing.assert_close(L.sinkhorn_loss(s, t, mask=mask, reduction="sum"), sub * 5)
    per_token = L.sinkhorn_loss(s, t, mask=mask, reduction="none")
    assert per_token.shape == (8,) and (per_token[~mask] == 0).all()
    torch.testing.assert_close(per_token[mask].mean(), sub)
    L.sinkhorn_loss(s, t, mask=mask).backward()
    assert torch.isfinite(s.grad).all() and (s.grad[~mask] == 0).all() and s.grad[mask].abs().sum() > 0


# ----------------------------------------------------------------------------- DAC-KL


def test_dac_kl_without_clipping_is_forward_kl():
    s, t = logits(), logits(seed=1)
    labels = torch.tensor([0, 3, -100, 5, 10, 2])
    torch.testing.assert_close(L.dac_kl_loss(s, t, lower=0.0, upper=1.0, labels=labels),
                               L.forward_kl(s, t, labels=labels))


def test_dac_kl_by_hand_and_target_token_is_kept():
    student = torch.zeros(1, 4)
    teacher = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # quantile 2/3 of the 4 probabilities -> rank 2 of (0.05, 0.15, 0.3, 0.5): keep {0.5, 0.3}
    p = torch.tensor([0.5, 0.3]) / 0.8
    expected = (p * (p / 0.5).log()).sum().item()
    assert L.dac_kl_loss(student, teacher, lower=2 / 3).item() == pytest.approx(expected, rel=1e-6)
    # the target token (id 3, p = 0.05) is always kept
    p = torch.tensor([0.5, 0.3, 0.05]) / 0.85
    expected = (p * (p / (1 / 3)).log()).sum().item()
    got = L.dac_kl_loss(student, teacher, lower=2 / 3, labels=torch.tensor([3])).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_dac_kl_invariants_and_gradients():
    s, t = logits(6, 40).requires_grad_(), logits(6, 40, seed=1)
    assert L.dac_kl_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    loss = L.dac_kl_loss(s, t, lower=0.8)
    assert loss.item() >= 0
    loss.backward()
    kept = L.dac_kl_keep(F.softmax(t, -1), 0.8, 1.0)
    assert torch.isfinite(s.grad).all() and (s.grad[~kept] == 0).all() and s.grad[kept].abs().sum() > 0
    assert (kept.sum(-1) == 8).all()  # ranks 32..39 of 40
    # per-token bounds, e.g. from a predictor, act row by row
    lower = torch.tensor([0.0, 0.5, 0.8, 0.9, 0.95, 1.0])
    rows = torch.stack([L.dac_kl_loss(s[i:i + 1], t[i:i + 1], lower=float(lower[i])) for i in range(6)])
    torch.testing.assert_close(L.dac_kl_loss(s, t, lower=lower, reduction="none"), rows.view(-1))


# ----------------------------------------------------------------------------- bad input, new losses


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s, t: L.skew_kl(s, t, alpha=1.0), "alpha"),
        (lambda s, t: L.skew_reverse_kl(s, t, alpha=-0.1), "alpha"),
        (lambda s, t: L.skew_kl(s, t[:, :-1]), "vocabularies"),
        (lambda s, t: L.sinkhorn_loss(s, t, epsilon=0.0), "epsilon"),
        (lambda s, t: L.sinkhorn_loss(s, t, n_iter=0), "n_iter"),
        (lambda s, t: L.sinkhorn_loss(s, t[:, :-1]), "vocabularies"),
        (lambda s, t: L.sinkhorn_loss(s, t * float("nan")), "NaN"),
        (lambda s, t: L.sinkhorn_loss(s, t, mask=torch.zeros(6, dtype=torch.bool)), "masked"),
        (lambda s, t: L.sinkhorn_loss(s, t, reduction="batchmean"), "reduction"),
        (lambda s, t: L.dac_kl_loss(s, t, lower=0.9, upper=0.5), "lower <= upper"),
        (lambda s, t: L.dac_kl_loss(s, t, upper=1.5), "lower <= upper"),
        (lambda s, t: L.dac_kl_loss(s, t, lower=float("nan")), "lower <= upper"),
        (lambda s, t: L.dac_kl_loss(s, t, labels=torch.full((6,), 11)), r"\[0, V=11\)"),
        (lambda s, t: L.dac_kl_loss(s[None], t[None]), "2-D"),
        (lambda s, t: L.dac_kl_loss(s, t, T=0.0), "temperature"),
        (lambda s, t: L.dac_kl_loss(s, t, lower=torch.zeros(5)), r"\(N,\)"),
        (lambda s, t: L.dac_kl_loss(s[:, :2], TopKTeacher.from_logits(t, 3)), "vocabulary"),
        (lambda s, t: L.sinkhorn_loss(s, TopKTeacher.from_logits(t, 3)), "dense"),
    ],
)
def test_new_losses_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(logits(), logits(seed=1))


# ----------------------------------------------------------------------------- exercises


def test_llm_exercise_checks_pass_references_and_fail_mistakes(capsys):
    from cookbook.exercises import llm as exercises

    def rkl(lq, lp):
        return (lq.exp() * (lq - lp)).sum(-1)

    assert exercises.check_reverse_kl_from_logprobs(rkl) is True
    assert exercises.check_reverse_kl_from_logprobs(lambda lq, lp: rkl(lp, lq)) is False  # forward KL

    def taid(s, te, t):
        return F.softmax((1 - t) * F.log_softmax(s, -1) + t * F.log_softmax(te, -1), -1)

    assert exercises.check_taid_target(taid) is True
    assert exercises.check_taid_target(lambda s, te, t: taid(s, te, 1 - t)) is False  # t flipped

    def tail(s, idx, lp):
        logq = F.log_softmax(s, -1)
        q_top, p_top = logq.gather(1, idx).exp(), lp.exp()
        q_tail, p_tail = 1 - q_top.sum(-1), (1 - p_top.sum(-1)).clamp_min(0)
        kl = (p_top * (p_top.log() - q_top.log())).sum(-1)
        kl = kl + torch.where(p_tail > 1e-6, p_tail * (p_tail.log() - q_tail.clamp_min(1e-30).log()), 0)
        return kl.mean()

    def renormalised(s, idx, lp):  # the classic mistake: drop the tail and renormalise
        logq = F.log_softmax(s.gather(1, idx), -1)
        p = F.softmax(lp, -1)
        return (p * (p.log() - logq)).sum(-1).mean()

    assert exercises.check_topk_tail_loss(tail) is True
    assert exercises.check_topk_tail_loss(renormalised) is False
    capsys.readouterr()

    def stub(*args):
        raise NotImplementedError

    for checker in (exercises.check_reverse_kl_from_logprobs, exercises.check_taid_target,
                    exercises.check_topk_tail_loss):
        assert checker(stub) is None
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_topk_to_dense_keeps_the_top_k_and_spreads_the_tail():
    logits = torch.randn(5, 12, generator=torch.Generator().manual_seed(0))
    top = L.TopKTeacher.from_logits(logits, 4)
    dense = top.to_dense(12)
    torch.testing.assert_close(dense.exp().sum(-1), torch.ones(5))
    torch.testing.assert_close(dense.gather(1, top.indices), top.logprobs)
    others = dense.scatter(1, top.indices, float("nan"))
    rest = others[~others.isnan()].view(5, 8)
    torch.testing.assert_close(rest, rest[:, :1].expand(5, 8))          # even tail
    torch.testing.assert_close(L.TopKTeacher.from_logits(logits, 12).to_dense(12),
                               torch.log_softmax(logits, -1))
    with pytest.raises(ValueError, match="smaller than k"):
        top.to_dense(3)


def test_dac_kl_topk_equals_the_dense_clip_of_the_same_set():
    gen = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(6, 40, generator=gen), 3 * torch.randn(6, 40, generator=gen)
    labels = torch.tensor([0, 5, 9, 39, -100, 17])
    top = L.TopKTeacher.from_logits(teacher, 5)
    got = L.dac_kl_loss(student, top, labels=labels)
    # by hand: S = top-5 ids + target, teacher = to_dense completion, both renormalised over S
    dense = top.to_dense(40)
    want = []
    for i in range(6):
        if labels[i] == -100:
            continue
        S = sorted(set(top.indices[i].tolist()) | {int(labels[i])})
        p = torch.log_softmax(dense[i, S], -1)
        q = torch.log_softmax(student[i, S], -1)
        want.append((p.exp() * (p - q)).sum())
    torch.testing.assert_close(got, torch.stack(want).mean())
    assert L.dac_kl_loss(student, top).item() >= 0          # no labels: S = the top-5


def test_reverse_kl_stays_finite_when_float16_topk_sums_to_one():
    # a peaked teacher whose float16-rounded top-2 log-probs sum to 1: no tail mass is left
    top = L.TopKTeacher(torch.tensor([[0, 1]]), torch.tensor([[0.0, -30.0]]))
    loss = L.reverse_kl(torch.zeros(1, 4), top)             # the student puts 1/2 on the tail
    assert torch.isfinite(loss) and loss < 20
