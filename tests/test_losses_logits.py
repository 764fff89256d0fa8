import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses import hard_distillation_loss, kd_loss, ofa_loss, soft_targets


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


# --- OFA-KD (arXiv 2310.19444) and DeiT hard distillation (arXiv 2012.12877, 2404.02900) ---------

def test_ofa_hand_computed_value():
    # teacher probabilities (0.5, 0.25, 0.25), student uniform, label 0, gamma 2:
    # target weight (1.5^2 - 1) = 1.25, non-target weights 0.25^2 = 0.0625; each times log 3.
    t = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    s = torch.zeros(1, 3)
    want = (1.25 + 2 * 0.0625) * math.log(3.0)
    assert ofa_loss(s, t, torch.tensor([0]), gamma=2.0).item() == pytest.approx(want, rel=1e-6)


def test_ofa_gamma_one_is_soft_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    soft_ce = -(F.softmax(t, -1) * F.log_softmax(s, -1)).sum(-1).mean()
    assert torch.allclose(ofa_loss(s, t, y, gamma=1.0), soft_ce, atol=1e-6)


def test_ofa_larger_gamma_pulls_harder_on_the_target():
    # gradient on the target logit gets more negative (pushes it up more) as gamma grows
    t = torch.tensor([[0.0, 1.0, 0.5]])                  # teacher unsure of the label 0
    grads = []
    for gamma in (1.0, 1.5, 3.0):
        s = torch.zeros(1, 3, requires_grad=True)
        ofa_loss(s, t, torch.tensor([0]), gamma=gamma).backward()
        grads.append(s.grad[0, 0].item())
    assert grads[0] > grads[1] > grads[2]


def test_ofa_gradient_flows_to_student_only():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    ofa_loss(s, t, torch.tensor([0, 1, 2, 3]), gamma=1.5).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None
    assert ofa_loss(s, t, torch.tensor([0, 1, 2, 3]), reduction="none").shape == (4,)


@pytest.mark.parametrize("kwargs, match", [({"gamma": 0.0}, "gamma"), ({"gamma": -1.0}, "gamma"),
                                           ({"T": 0.0}, "temperature")])
def test_ofa_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


def test_ofa_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ofa_loss(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        ofa_loss(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1, 2]))


def test_hard_distillation_is_cross_entropy_on_teacher_argmax():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert torch.allclose(hard_distillation_loss(s, t), F.cross_entropy(s, t.argmax(-1)))
    # class weights: a weighted mean over the teacher's labels; uniform weights change nothing
    w = torch.ones(5) * 3.0
    assert torch.allclose(hard_distillation_loss(s, t, class_weights=w), hard_distillation_loss(s, t))
    w = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    keep = t.argmax(-1) == 4
    if keep.any():
        assert torch.allclose(hard_distillation_loss(s, t, class_weights=w), F.cross_entropy(s[keep], t[keep].argmax(-1)))


def test_hard_distillation_bad_input():
    with pytest.raises(ValueError, match="class_weights"):
        hard_distillation_loss(torch.randn(2, 3), torch.randn(2, 3), class_weights=torch.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        hard_distillation_loss(torch.randn(2, 3), torch.randn(3, 3))
