import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses import kd_loss, soft_targets


def test_kd_hand_computed_value():
    # teacher probabilities at T: softmax([ln 3, 0] / T); student uniform.
    s, t = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    for T in (1.0, 2.0):
        a = 3 ** (1 / T)
        p = [a / (a + 1), 1 / (a + 1)]
        kl = sum(pi * math.log(pi / 0.5) for pi in p)
        assert kd_loss(s, t, T=T).item() == pytest.approx(T**2 * kl, rel=1e-6)
    assert kd_loss(s, t, T=1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


@pytest.mark.filterwarnings("ignore:reduction")
def test_kd_matches_torch_kl_div_batchmean():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    T = 3.0
    ref = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True) * T**2
    assert torch.allclose(kd_loss(s, t, T=T), ref, atol=1e-6)
    # the trap: reduction="mean" in kl_div also divides by the number of classes
    wrong = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="mean", log_target=True) * T**2
    assert not torch.allclose(kd_loss(s, t, T=T), wrong)


def test_kd_gradient_is_T_times_prob_difference():
    # d/dz [T^2 KL(p_t || softmax(z/T))] = T (p_s - p_t): the T^2 factor keeps the gradient O(1/T), not O(1/T^2)
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 7, generator=g, requires_grad=True)
    t = torch.randn(5, 7, generator=g)
    for T in (1.0, 4.0):
        s.grad = None
        kd_loss(s, t, T=T).backward()
        expected = T * (F.softmax(s.detach() / T, -1) - F.softmax(t / T, -1)) / s.shape[0]
        assert torch.allclose(s.grad, expected, atol=1e-6)


def test_teacher_gets_no_gradient():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_hard_label_mix_and_ignore_index():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, -100, 3, -100, 4])
    got = kd_loss(s, t, T=2.0, labels=y, alpha=0.3)
    lab = y != -100
    want = 0.3 * kd_loss(s, t, T=2.0) + 0.7 * F.cross_entropy(s[lab], y[lab])
    assert torch.allclose(got, want, atol=1e-6)
    # a batch with no labelled image is pure KD (no NaN from an empty CE mean)
    none = torch.full((6,), -100)
    assert torch.allclose(kd_loss(s, t, T=2.0, labels=none, alpha=0.3), 0.3 * kd_loss(s, t, T=2.0))
    per = kd_loss(s, t, T=2.0, labels=y, alpha=0.3, reduction="none")
    assert per.shape == (6,)


def test_alpha_zero_is_cross_entropy():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert torch.allclose(kd_loss(s, t, labels=y, alpha=0.0), F.cross_entropy(s, y), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"T": 0.0}, "T must be > 0"),
    ({"T": -1.0}, "T must be > 0"),
    ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
    ({"alpha": 0.5}, "pass labels="),
    ({"reduction": "sum"}, "reduction must be"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd_loss(torch.randn(2, 3), torch.randn(2, 3), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        kd_loss(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="empty batch"):
        kd_loss(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="batch, classes"):
        kd_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="labels must have shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), labels=torch.zeros(3, dtype=torch.long), alpha=0.5)


def test_soft_targets():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    assert torch.allclose(soft_targets(z, 1.0), F.softmax(z, -1))
    assert soft_targets(z, 10.0).max() < soft_targets(z, 1.0).max()      # higher T is flatter
    with pytest.raises(ValueError):
        soft_targets(z, 0.0)


logits = st.lists(st.floats(-20, 20), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(logits, st.floats(0.5, 8.0), st.integers(0, 2**31 - 1))
def test_kl_nonnegative_and_zero_on_itself(z, T, seed):
    s = torch.tensor([z], dtype=torch.float64)
    t = s + torch.randn(s.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert kd_loss(s, t, T=T).item() >= -1e-9
    assert abs(kd_loss(s, s.clone(), T=T).item()) < 1e-9
