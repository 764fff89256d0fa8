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


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
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
