import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses import (
    dho_loss,
    dkd_loss,
    dual_head_probs,
    ensemble_soft_targets,
    hard_distillation_loss,
    kd_loss,
    meal_v2_loss,
    ofa_loss,
    pld_loss,
    soft_targets,
)


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


# --- DKD (arXiv 2203.08679) --------------------------------------------------------------------

def _batch(seed=0, b=6, c=10, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=dtype)
    t = torch.randn(b, c, generator=g, dtype=dtype) * scale
    return s, t, torch.randint(0, c, (b,), generator=g)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_decomposes_kd(T):
    # the paper's Eq. 1: KD = TCKD + (1 - p_y^t) NCKD, per sample
    s, t, y = _batch(0, dtype=torch.float64)
    tckd = dkd_loss(s, t, y, alpha=1.0, beta=0.0, T=T, reduction="none")
    nckd = dkd_loss(s, t, y, alpha=0.0, beta=1.0, T=T, reduction="none")
    p_y = F.softmax(t / T, -1).gather(1, y[:, None])[:, 0]
    assert torch.allclose(tckd + (1 - p_y) * nckd, kd_loss(s, t, T=T, reduction="none"), atol=1e-10)


def test_dkd_hand_computed_value():
    # 3 classes, label 0, T = 1. Teacher p = [1/2, 1/4, 1/4]; student uniform.
    t = torch.log(torch.tensor([[2.0, 1.0, 1.0]]))
    s, y = torch.zeros(1, 3), torch.tensor([0])
    tckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    nckd = 0.0                                     # non-target parts are both uniform over 2 classes
    got = dkd_loss(s, t, y, alpha=2.0, beta=8.0, T=1.0)
    assert got.item() == pytest.approx(2.0 * tckd + 8.0 * nckd, abs=1e-6)
    t2 = torch.log(torch.tensor([[2.0, 3.0, 1.0]]))          # non-target teacher [3/4, 1/4]
    want_nckd = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert dkd_loss(s, t2, y, alpha=0.0, beta=1.0, T=1.0).item() == pytest.approx(want_nckd, abs=1e-6)


def test_dkd_zero_on_itself_and_gradient():
    s, t, y = _batch(1, dtype=torch.float64)
    assert dkd_loss(t, t, y).abs().item() < 1e-10
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: dkd_loss(z, t, y, alpha=1.0, beta=8.0, T=4.0), (s,))
    t.requires_grad_(True)
    dkd_loss(s, t, y).backward()
    assert t.grad is None


def test_dkd_bad_input():
    s, t, y = _batch(2)
    with pytest.raises(ValueError, match="labels must lie"):
        dkd_loss(s, t, torch.full_like(y, 10))
    with pytest.raises(ValueError, match="int64"):
        dkd_loss(s, t, y.float())
    with pytest.raises(ValueError, match="at least 3 classes"):
        dkd_loss(s[:, :2], t[:, :2], y % 2)
    with pytest.raises(ValueError, match=">= 0"):
        dkd_loss(s, t, y, beta=-1.0)
    with pytest.raises(ValueError, match="T must be > 0"):
        dkd_loss(s, t, y, T=0.0)


# --- PLD (arXiv 2506.12542) --------------------------------------------------------------------

def _pld_loop(s, t, y, T=1.0):
    """The definition, one position at a time."""
    out = []
    for b in range(len(s)):
        order = [int(y[b])] + [c for c in t[b].argsort(descending=True).tolist() if c != y[b]]
        w = F.softmax(t[b] / T, -1)
        out.append(sum(w[order[k]] * (torch.logsumexp(s[b, order[k:]], 0) - s[b, order[k]]) for k in range(len(order))))
    return torch.stack(out)


@pytest.mark.parametrize("b, c, T", [(5, 10, 1.0), (3, 3, 2.0), (7, 26, 0.5)])
def test_pld_matches_loop_reference(b, c, T):
    s, t, y = _batch(3, b, c, dtype=torch.float64)
    assert torch.allclose(pld_loss(s, t, y, T=T, reduction="none"), _pld_loop(s, t, y, T), atol=1e-10)


def test_pld_two_class_hand_value_and_first_term_is_weighted_ce():
    # 2 classes: only the first choice costs anything: w_y * CE(s, y)
    s, t, y = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0])
    assert pld_loss(s, t, y).item() == pytest.approx(0.25 * F.cross_entropy(s, y).item(), rel=1e-6)


def test_pld_minimised_by_the_teacher_ranking_and_translation_invariant():
    s, t, y = _batch(4, 8, 10)
    aligned = t.clone().scatter_(1, y[:, None], float(t.max()) + 5.0) * 10      # ranks exactly like pi, sharply
    base = pld_loss(aligned, t, y)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert pld_loss(aligned[:, torch.randperm(10, generator=g)], t, y) > base
    assert torch.allclose(pld_loss(s + 7.0, t, y), pld_loss(s, t, y), atol=1e-5)


def test_pld_gradient_and_bad_input():
    s, t, y = _batch(5, dtype=torch.float64)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: pld_loss(z, t, y), (s,))
    with pytest.raises(ValueError, match="same shape"):
        pld_loss(s, t[:, :5], y)
    with pytest.raises(ValueError, match="labels must"):
        pld_loss(s, t, y[:3])
    with pytest.raises(ValueError, match="reduction"):
        pld_loss(s, t, y, reduction="sum")


# --- MEAL V2 (arXiv 2009.08453) ----------------------------------------------------------------

def test_ensemble_soft_targets():
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    p = ensemble_soft_targets([a, b])
    assert torch.allclose(p, (F.softmax(a, -1) + F.softmax(b, -1)) / 2)
    assert torch.allclose(p.sum(-1), torch.ones(4))
    with pytest.raises(ValueError, match="at least one"):
        ensemble_soft_targets([])
    with pytest.raises(ValueError, match="same shape"):
        ensemble_soft_targets([a, b[:, :3]])


def test_meal_v2_each_player_gets_only_its_own_gradient():
    torch.manual_seed(0)
    disc = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    s, t = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5)
    p = ensemble_soft_targets([t])
    # the discriminator's gradient equals that of the official 2-way BCE on logits alone:
    # student logits labelled [1, 0], teacher logits [0, 1], mean over all 2B x 2 entries
    meal_v2_loss(s, p, disc, target_logits=t, adv_weight=0.7).backward()
    got = [q.grad.clone() for q in disc.parameters()]
    disc.zero_grad()
    targets = torch.tensor([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6)
    F.binary_cross_entropy_with_logits(disc(torch.cat([s.detach(), t])), targets).backward()
    assert all(torch.allclose(a, b.grad, atol=1e-6) for a, b in zip(got, disc.parameters()))
    # the student's gradient is soft CE's plus the adversarial term's (zero at adv_weight = 0)
    s.grad = None
    meal_v2_loss(s, p, disc, target_logits=t, adv_weight=0.0).backward()
    assert torch.allclose(s.grad, (F.softmax(s.detach(), -1) - p) / 6, atol=1e-6)
    # the adversarial term pushes the student's logits toward what D calls "teacher"
    s.grad = None
    meal_v2_loss(s, p, disc, target_logits=t, adv_weight=1.0).backward()
    fool = F.binary_cross_entropy_with_logits(disc(s), torch.tensor([[0.0, 1.0]]).expand(6, 2))
    (adv_grad,) = torch.autograd.grad(fool, s)
    assert torch.allclose(s.grad, (F.softmax(s.detach(), -1) - p) / 6 + adv_grad, atol=1e-6)


def test_meal_v2_bad_input():
    disc = torch.nn.Linear(3, 2)
    t = torch.randn(2, 3)
    with pytest.raises(ValueError, match="probabilities"):
        meal_v2_loss(torch.randn(2, 3), torch.randn(2, 3), disc, target_logits=t)
    with pytest.raises(ValueError, match="adv_weight"):
        meal_v2_loss(torch.randn(2, 3), torch.full((2, 3), 1 / 3), disc, target_logits=t, adv_weight=-1.0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        meal_v2_loss(torch.randn(2, 3), torch.full((2, 3), 1 / 3), torch.nn.Linear(3, 1), target_logits=t)


# --- DHO (arXiv 2505.07675) --------------------------------------------------------------------

def test_dho_loss_and_dual_head_probs():
    s, t, y = _batch(6)
    ce_l, kd_l = s[:3], s[3:] * 2
    want = 0.3 * F.cross_entropy(ce_l, y[:3]) + 0.7 * kd_loss(kd_l, t[3:], T=2.0)
    assert torch.allclose(dho_loss(ce_l, y[:3], kd_l, t[3:], T=2.0, lam=0.3), want)
    assert torch.allclose(dual_head_probs(s, t, alpha=0.0), F.softmax(s, -1))
    assert torch.allclose(dual_head_probs(s, t, alpha=1.0, beta=2.0), F.softmax(t / 2, -1))
    assert torch.allclose(dual_head_probs(s, t, alpha=0.4, beta=1.5).sum(-1), torch.ones(len(s)))
    with pytest.raises(ValueError, match="alpha"):
        dual_head_probs(s, t, alpha=1.2)
    with pytest.raises(ValueError, match="lam"):
        dho_loss(ce_l, y[:3], kd_l, t[3:], lam=-0.1)


def test_dho_loss_is_the_official_whole_loss():
    # erjui/DHO train_others.py: 0.5 * CE + 0.5 * (KD on labelled + KD on unlabelled), T = 2
    s, t, y = _batch(b=8)
    ce_l, kd_l, kd_u = s[:3], s[:3] * 0.5 + 1, s[3:]
    T = 2.0
    kl = lambda a, b: F.kl_div(F.log_softmax(a / T, 1), F.softmax(b / T, 1), reduction="batchmean") * T * T
    want = 0.5 * F.cross_entropy(ce_l, y[:3]) + 0.5 * (kl(kd_l, t[:3]) + kl(kd_u, t[3:]))
    got = dho_loss(ce_l, y[:3], kd_u, t[3:], kd_logits_labelled=kd_l, teacher_logits_labelled=t[:3])
    assert torch.allclose(got, want, atol=1e-6)
    x = kd_l.clone().requires_grad_()
    dho_loss(ce_l, y[:3], kd_u, t[3:], kd_logits_labelled=x, teacher_logits_labelled=t[:3]).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the labelled KD term reaches the KD head
    with pytest.raises(ValueError, match="both"):
        dho_loss(ce_l, y[:3], kd_u, t[3:], kd_logits_labelled=kd_l)
    with pytest.raises(ValueError, match="labelled images"):
        dho_loss(ce_l, y[:3], kd_u, t[3:], kd_logits_labelled=kd_u, teacher_logits_labelled=t[3:])


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

