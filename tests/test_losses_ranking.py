import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses.logits import pld_loss
from cookbook.losses.ranking import (
    contrastive_loss,
    dear_loss,
    exit_weights,
    margin_mse_loss,
    multi_exit_loss,
    pld_ranking_loss,
    ranknet_loss,
    score_kl_loss,
)


def _lists(b=5, n=4, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, generator=g) * scale, torch.randn(b, n, generator=g) * scale


# ----------------------------------------------------------------------------- Margin-MSE

def test_margin_mse_hand_value_and_official_triple_form():
    s = torch.tensor([[3.0, 1.0]])   # student margin 2
    t = torch.tensor([[0.5, 0.0]])   # teacher margin 0.5
    assert margin_mse_loss(s, t).item() == pytest.approx((2.0 - 0.5) ** 2)
    # K negatives = mean over the K margins; equals the official triple loss on each (pos, neg_k)
    s, t = _lists(4, 4)
    official = torch.stack([torch.mean(((s[:, 0] - s[:, k]) - (t[:, 0] - t[:, k])) ** 2) for k in (1, 2, 3)]).mean()
    assert torch.allclose(margin_mse_loss(s, t), official, atol=1e-6)


def test_margin_mse_sign_offset_and_scale():
    s, t = _lists()
    # only margins matter: shifting either side's scores per query changes nothing
    shift = torch.randn(5, 1)
    assert torch.allclose(margin_mse_loss(s + shift, t - 2 * shift), margin_mse_loss(s, t), atol=1e-5)
    # zero when the student's margins equal the teacher's, whatever the offset
    assert margin_mse_loss(t + 10.0, t).item() == pytest.approx(0.0, abs=1e-9)
    # sign: a student that ranks the negatives above the positive by the teacher's margin pays 4 m^2
    t2 = torch.tensor([[1.0, 0.0]])
    assert margin_mse_loss(torch.tensor([[0.0, 1.0]]), t2).item() == pytest.approx(4.0)
    # scale: multiplying the teacher by c multiplies the margins the student must reach by c
    assert margin_mse_loss(2 * t, 2 * t).item() == pytest.approx(0.0, abs=1e-9)
    assert margin_mse_loss(t, 2 * t) > 0


def test_margin_mse_gradient_and_teacher_detached():
    s = torch.tensor([[2.0, 0.0, 1.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    margin_mse_loss(s, t).backward()
    # d/ds0 = 2/K * sum_k (m_s,k - m_t,k) = 2/2 * ((2-1) + (1-1)) = 1; d/ds1 = -2/2*(1) = -1; d/ds2 = 0
    assert torch.allclose(s.grad, torch.tensor([[1.0, -1.0, 0.0]]))
    assert t.grad is None


# ----------------------------------------------------------------------------- KL, RankNet, DeAR

def test_score_kl_is_hinton_kd_over_candidates():
    s, t = _lists()
    T = 2.0
    ref = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    assert torch.allclose(score_kl_loss(s, t, T=T), ref, atol=1e-6)
    assert score_kl_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)
    assert torch.allclose(score_kl_loss(s + 5.0, t), score_kl_loss(s, t), atol=1e-5)


def test_ranknet_on_a_known_pair():
    s = torch.tensor([[2.0, 0.0]])
    # hard target (Burges): positive above negative -> log(1 + exp(-2))
    assert ranknet_loss(s, torch.tensor([[1.0, 0.0]]), soft=False).item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    # soft target sigmoid(1 - 0) = 0.731 (DeAR's code): BCE(2, p) = softplus(2) - 2 p
    p = 1 / (1 + math.exp(-1.0))
    assert ranknet_loss(s, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log1p(math.exp(2.0)) - 2 * p, rel=1e-6)
    # a tie in the target gives P = 1/2 in both forms
    assert ranknet_loss(s, torch.zeros(1, 2), soft=False).item() == pytest.approx(math.log1p(math.exp(2.0)) - 1.0, rel=1e-6)


def test_ranknet_counts_each_pair_once_and_has_the_right_gradient():
    s = torch.tensor([[1.0, 0.5, -1.0]], requires_grad=True)
    r = torch.tensor([[2.0, 0.0, 1.0]])
    pairs = [(0, 1), (0, 2), (1, 2)]
    ref = sum(F.binary_cross_entropy_with_logits(s[0, i] - s[0, j], torch.sigmoid(r[0, i] - r[0, j])) for i, j in pairs) / 3
    loss = ranknet_loss(s, r)
    assert torch.allclose(loss, ref)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # pairs are symmetric: reversing the list gives the same loss
    assert torch.allclose(ranknet_loss(s.detach().flip(1), r.flip(1)), loss.detach())


def test_dear_is_the_official_weighted_sum():
    s, t = _lists(6, 5)
    y = torch.zeros_like(s)
    y[:, 0] = 1
    ce = F.cross_entropy(s, torch.zeros(6, dtype=torch.long))
    main = 0.5 * ranknet_loss(s, y) + 0.5 * ce
    want = 0.9 * main + 0.1 * score_kl_loss(s, t, T=2.0)
    assert torch.allclose(dear_loss(s, t), want, atol=1e-6)
    # alpha = 0: labels only; alpha = 1: KL only
    assert torch.allclose(dear_loss(s, t, alpha=0.0), main, atol=1e-6)
    assert torch.allclose(dear_loss(s, t, alpha=1.0, T=3.0), score_kl_loss(s, t, T=3.0), atol=1e-6)


# ----------------------------------------------------------------------------- PLD, list-wise invariants

def test_pld_ranking_is_pld_with_the_positive_as_label():
    s, t = _lists(7, 6)
    assert torch.allclose(pld_ranking_loss(s, t, T=1.5), pld_loss(s, t, torch.zeros(7, dtype=torch.long), T=1.5))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(-50, 50), st.floats(0.2, 5.0))
def test_listwise_invariants(seed, shift, T):
    s, t = _lists(4, 5, seed)
    # translation invariance in the student's and the teacher's scores
    for loss in (lambda a, b: pld_ranking_loss(a, b, T=T), lambda a, b: score_kl_loss(a, b, T=T),
                 margin_mse_loss, lambda a, b: dear_loss(a, b, T=T)):
        assert torch.allclose(loss(s + shift, t), loss(s, t), atol=1e-4)
        assert torch.allclose(loss(s, t + shift), loss(s, t), atol=1e-4)
    # permuting the negatives (teacher and student together) changes no list-wise loss
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(4, generator=torch.Generator().manual_seed(seed))])
    for loss in (pld_ranking_loss, score_kl_loss, margin_mse_loss, dear_loss):
        assert torch.allclose(loss(s[:, perm], t[:, perm]), loss(s, t), atol=1e-5)
    assert pld_ranking_loss(s, t, T=T) >= 0 and score_kl_loss(s, t, T=T) >= -1e-6


def test_pld_prefers_the_teacher_order_with_the_positive_first():
    t = torch.tensor([[3.0, 0.0, 2.0, 1.0]])          # positive best, then negatives 2, 3, 1
    good = torch.tensor([[4.0, 1.0, 3.0, 2.0]])        # the student ranks exactly that way
    for bad in ([[3.0, 1.0, 4.0, 2.0]], [[4.0, 3.0, 1.0, 2.0]], [[1.0, 2.0, 3.0, 4.0]]):
        assert pld_ranking_loss(good, t) < pld_ranking_loss(torch.tensor(bad), t)
    # each choice is weighted by the teacher's confidence: a positive the teacher rates low weighs little
    low = torch.tensor([[0.0, 3.0, 2.0, 1.0]])
    w0 = torch.softmax(low, -1)[0, 0]
    first_term = w0 * F.cross_entropy(good, torch.zeros(1, dtype=torch.long))
    assert pld_ranking_loss(good, low) > first_term


# ----------------------------------------------------------------------------- contrastive, multi-exit

def test_contrastive_is_in_batch_cross_entropy():
    g = torch.Generator().manual_seed(2)
    q, d = F.normalize(torch.randn(3, 8, generator=g), dim=-1), F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    pos = torch.tensor([0, 2, 4])
    logits = 20.0 * q @ d.T
    want = -sum(F.log_softmax(logits[i], -1)[pos[i]] for i in range(3)) / 3
    assert torch.allclose(contrastive_loss(q, d, pos), want, atol=1e-5)


def test_multi_exit_weights_follow_depth():
    assert exit_weights([4, 9, 18, 27, 36], 36) == pytest.approx([4 / 36, 0.25, 0.5, 0.75, 1.0])
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(4.0, requires_grad=True)
    total = multi_exit_loss([a, b], [1, 2], 2)
    assert total.item() == pytest.approx(0.5 * 2 + 1.0 * 4)
    total.backward()
    assert (a.grad.item(), b.grad.item()) == (0.5, 1.0)     # the early exit's loss counts half
    assert multi_exit_loss([a, b], [1, 2], 2, reduction="mean").item() == pytest.approx(5.0 / 1.5)
    # one exit at the top = the plain loss
    assert multi_exit_loss([b], [2], 2).item() == pytest.approx(4.0)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_clear_errors():
    s, t = _lists()
    with pytest.raises(ValueError, match="shape"):
        margin_mse_loss(s, t[:, :3])
    with pytest.raises(ValueError, match="at least one negative"):
        pld_ranking_loss(s[:, :1], t[:, :1])
    with pytest.raises(ValueError, match="empty batch"):
        score_kl_loss(s[:0], t[:0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        ranknet_loss(s.numpy(), t)
    with pytest.raises(ValueError, match="NaN"):
        margin_mse_loss(torch.full_like(s, float("nan")), t)
    with pytest.raises(ValueError, match="temperature"):
        score_kl_loss(s, t, T=0.0)
    with pytest.raises(ValueError, match="alpha"):
        dear_loss(s, t, alpha=1.5)
    with pytest.raises(ValueError, match="exit_layers"):
        multi_exit_loss([torch.tensor(1.0)], [3], 2)
    with pytest.raises(ValueError, match="2 exit losses for 1 exits"):
        multi_exit_loss([torch.tensor(1.0), torch.tensor(2.0)], [2], 2)
    with pytest.raises(ValueError, match="positives"):
        contrastive_loss(torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0, 5]))
