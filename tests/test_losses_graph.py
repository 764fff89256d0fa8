import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses import kd_loss
from cookbook.losses.graph import (
    ffg2m_loss,
    high_frequency_loss,
    low_frequency_loss,
    soft_code_assignments,
    soft_code_loss,
)

PATH = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0 - 1 - 2, both directions


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(v):
    e = [math.exp(a) for a in v]
    return [a / sum(e) for a in e]


def _logits(n=7, c=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * scale, torch.randn(n, c, generator=g) * scale


# ----------------------------------------------------------------------------- low frequency

def test_low_frequency_hand_value():
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ei = torch.tensor([[0, 1], [1, 0]])
    ps = [_softmax(r) for r in s.tolist()]
    pt = [_softmax(r) for r in t.tolist()]
    # pairs (i, j): student i matches teacher j; edges 0->1, 1->0, then self loops 0->0, 1->1
    want = (_kl(pt[1], ps[0]) + _kl(pt[0], ps[1]) + _kl(pt[0], ps[0]) + _kl(pt[1], ps[1])) / 4
    assert low_frequency_loss(s, t, ei).item() == pytest.approx(want, rel=1e-6)
    no_loops = (_kl(pt[1], ps[0]) + _kl(pt[0], ps[1])) / 2
    assert low_frequency_loss(s, t, ei, self_loops=False).item() == pytest.approx(no_loops, rel=1e-6)


def test_low_frequency_without_edges_is_plain_kd():
    # isolated nodes keep their self loop: the loss falls back to node-wise KD at T = 1 (GLNN)
    s, t = _logits()
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert torch.allclose(low_frequency_loss(s, t, empty), kd_loss(s, t, T=1.0), atol=1e-6)


def test_low_frequency_does_not_double_existing_self_loops():
    s, t = _logits(3)
    with_loop = torch.cat([PATH, torch.tensor([[1], [1]])], 1)
    assert torch.allclose(low_frequency_loss(s, t, with_loop), low_frequency_loss(s, t, PATH))


# ----------------------------------------------------------------------------- high frequency

def test_high_frequency_hand_value():
    s = torch.tensor([[0.0, 0.0], [1.0, 0.5]])
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ei = torch.tensor([[0, 1], [1, 0]])
    tau = 0.5
    pt = _softmax([2.0 / tau, 1.0 / tau])       # |z_0 - z_1| / tau
    ps = _softmax([1.0 / tau, 0.5 / tau])       # |s_0 - s_1| / tau
    assert high_frequency_loss(s, t, ei, tau=tau).item() == pytest.approx(_kl(pt, ps), rel=1e-5)  # float32


def test_high_frequency_ignores_a_common_shift_and_self_loops():
    # only differences across edges matter: adding the same vector to every node changes nothing
    s, t = _logits(3)
    assert high_frequency_loss(t + torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0]), t, PATH).item() == pytest.approx(0, abs=1e-6)
    with_loop = torch.cat([PATH, torch.tensor([[2], [2]])], 1)
    assert torch.allclose(high_frequency_loss(s, t, with_loop), high_frequency_loss(s, t, PATH))


def test_high_frequency_edge_direction_does_not_matter():
    s, t = _logits(3)
    assert torch.allclose(high_frequency_loss(s, t, PATH), high_frequency_loss(s, t, PATH[:, ::2]))


def test_matches_torch_kl_div_batchmean():
    # the released FF-G2M code: KLDivLoss(reduction="batchmean", log_target=True) over edges
    s, t = _logits(3, seed=5)
    src, dst = PATH
    tau = 1.5
    ref = F.kl_div(F.log_softmax((s[src] - s[dst]).abs() / tau, -1), F.log_softmax((t[src] - t[dst]).abs() / tau, -1),
                   reduction="batchmean", log_target=True)
    assert torch.allclose(high_frequency_loss(s, t, PATH, tau=tau), ref, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 9), st.integers(2, 6), st.integers(0, 10_000), st.floats(0.2, 5.0))
def test_graph_losses_are_nonnegative_and_zero_at_the_teacher(n, c, seed, tau):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(n, c, generator=g) * 3, torch.randn(n, c, generator=g) * 3
    src, dst = torch.randint(0, n, (2, 2 * n), generator=g)
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    ei = torch.cat([ei, torch.tensor([[0], [1]])], 1)  # at least one non-loop edge
    assert high_frequency_loss(s, t, ei, tau=tau).item() >= -1e-6
    assert low_frequency_loss(s, t, ei).item() >= -1e-6
    assert high_frequency_loss(t, t, ei, tau=tau).item() == pytest.approx(0, abs=1e-5)


def test_gradients_reach_the_student_only():
    s, t = _logits(3)
    s.requires_grad_(True)
    t.requires_grad_(True)
    (low_frequency_loss(s, t, PATH) + high_frequency_loss(s, t, PATH)).backward()
    assert t.grad is None and s.grad is not None and torch.isfinite(s.grad).all()


def test_high_frequency_gradient_finite_at_equal_logits():
    # |s_i - s_j| at 0 has a kink; the loss must stay finite and differentiable there
    s = torch.zeros(3, 4, requires_grad=True)
    high_frequency_loss(s, torch.randn(3, 4), PATH).backward()
    assert torch.isfinite(s.grad).all()


# ----------------------------------------------------------------------------- FF-G2M mix

def test_ffg2m_is_the_weighted_sum():
    s, t = _logits(3, seed=2)
    y = torch.tensor([1, -100, 3])
    lab = y != -100
    for lam in (0.0, 0.4, 1.0):
        want = lam * F.cross_entropy(s[lab], y[lab]) + (1 - lam) * (
            low_frequency_loss(s, t, PATH) + high_frequency_loss(s, t, PATH, tau=1.5))
        assert torch.allclose(ffg2m_loss(s, t, PATH, y, lam=lam, tau=1.5), want, atol=1e-6)


def test_ffg2m_without_labels_has_no_nan():
    s, t = _logits(3)
    assert torch.isfinite(ffg2m_loss(s, t, PATH, torch.full((3,), -100)))


# ----------------------------------------------------------------------------- VQGraph

def test_soft_code_assignments_hand_value_and_nearest_code():
    h = torch.tensor([[0.0, 0.0]])
    e = torch.tensor([[3.0, 4.0], [1.0, 0.0]])                 # distances 5 and 1
    want = _softmax([-5.0 / 2, -1.0 / 2])
    assert soft_code_assignments(h, e, T=2.0)[0].tolist() == pytest.approx(want, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    h, e = torch.randn(50, 8, generator=g), torch.randn(16, 8, generator=g)
    r = soft_code_assignments(h, e, T=0.5)
    assert torch.allclose(r.sum(-1), torch.ones(50))
    assert torch.equal(r.argmax(-1), torch.cdist(h, e).argmin(-1))
    assert torch.allclose(r, F.softmax(-torch.cdist(h, e) / 0.5, -1), atol=1e-5)


def test_soft_code_assignments_sharpen_with_lower_T():
    g = torch.Generator().manual_seed(1)
    h, e = torch.randn(20, 4, generator=g), torch.randn(10, 4, generator=g)
    assert (soft_code_assignments(h, e, T=0.1).max(-1).values >= soft_code_assignments(h, e, T=1.0).max(-1).values).all()


def test_soft_code_loss_value_zero_and_gradient():
    g = torch.Generator().manual_seed(2)
    e = torch.randn(12, 6, generator=g)
    t, s = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g, requires_grad=True)
    T = 4.0
    r_t = soft_code_assignments(t, e, T=T)
    ref = F.kl_div(soft_code_assignments(s, e, T=T).log(), r_t, reduction="batchmean") * T**2
    loss = soft_code_loss(s, r_t, e, T=T)
    assert torch.allclose(loss, ref, atol=1e-5)
    assert soft_code_loss(t, r_t, e, T=T).item() == pytest.approx(0, abs=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_soft_code_loss_finite_when_embedding_sits_on_a_code():
    e = torch.randn(5, 3)
    s = e[:2].clone().requires_grad_(True)
    soft_code_loss(s, soft_code_assignments(e[:2], e, T=1.0), e, T=1.0).backward()
    assert torch.isfinite(s.grad).all()


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_clear_errors():
    s, t = _logits(3)
    with pytest.raises(ValueError, match="edge_index refers to nodes"):
        high_frequency_loss(s, t, torch.tensor([[0, 3], [3, 0]]))
    with pytest.raises(ValueError, match="shape \\(2, E\\)"):
        low_frequency_loss(s, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="int64"):
        high_frequency_loss(s, t, PATH.float())
    with pytest.raises(ValueError, match="same shape"):
        low_frequency_loss(s, t[:2], PATH)
    with pytest.raises(ValueError, match="T must be > 0"):
        high_frequency_loss(s, t, PATH, tau=0.0)
    with pytest.raises(ValueError, match="at least one edge"):
        high_frequency_loss(s, t, torch.tensor([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        low_frequency_loss(s * float("nan"), t, PATH)
    with pytest.raises(ValueError, match="labels must have shape"):
        ffg2m_loss(s, t, PATH, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="lam"):
        ffg2m_loss(s, t, PATH, torch.zeros(3, dtype=torch.long), lam=1.5)
    e = torch.randn(4, 5)
    with pytest.raises(ValueError, match="share D"):
        soft_code_assignments(torch.randn(3, 4), e)
    with pytest.raises(ValueError, match="teacher_assignments must be"):
        soft_code_loss(torch.randn(3, 5), torch.rand(3, 5), e)
    with pytest.raises(ValueError, match="empty codebook"):
        soft_code_assignments(torch.randn(3, 5), torch.randn(0, 5))
