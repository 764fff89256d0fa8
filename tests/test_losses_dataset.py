"""Dataset-distillation losses (cookbook/losses/dataset.py): reference values, gradients, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cookbook.losses.dataset import (
    balanced_inner_weight,
    barlow_twins_loss,
    bn_matching_loss,
    expert_loss_scale,
    gradient_match_distance,
    input_gradient_penalty,
    interpolated_logits,
    krr_predict,
    krr_st_loss,
    mean_embedding_loss,
    trajectory_matching_loss,
    vote_logits,
    vote_weights,
    voting_recover_loss,
)

# ----------------------------------------------------------------------------- DC gradient distance


def test_gradient_distance_known_rows():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    same, opposite = [a], [-a]
    ortho = [torch.tensor([[0.0, 1.0], [5.0, 0.0], [-4.0, 3.0]])]
    assert gradient_match_distance([a], same).item() == pytest.approx(0.0, abs=1e-5)
    assert gradient_match_distance([a], opposite).item() == pytest.approx(6.0, abs=1e-5)   # 3 rows x (1 - (-1))
    assert gradient_match_distance([a], ortho).item() == pytest.approx(3.0, abs=1e-5)      # 3 rows x (1 - 0)


def test_gradient_distance_hand_value_conv_and_bias_ignored():
    g = torch.Generator().manual_seed(0)
    gs, gr = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    rs, rr = gs.reshape(4, -1), gr.reshape(4, -1)
    want = sum(1 - float(rs[i] @ rr[i]) / (float(rs[i].norm() * rr[i].norm()) + 1e-6) for i in range(4))
    bias_s, bias_r = torch.randn(4, generator=g), torch.randn(4, generator=g)
    got = gradient_match_distance([gs, bias_s], [gr, bias_r])
    assert got.item() == pytest.approx(want, rel=1e-5)           # the 1-d bias adds nothing (official distance_wb)


def test_gradient_distance_scale_invariant_per_row_and_has_gradient():
    g = torch.Generator().manual_seed(1)
    gs = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    gr = torch.randn(5, 7, generator=g, dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, 0.5, 10.0, 3.0], dtype=torch.float64)[:, None]
    assert gradient_match_distance([gs * scale], [gr]).item() == pytest.approx(gradient_match_distance([gs], [gr]).item(), rel=1e-6)
    assert torch.autograd.gradcheck(lambda x: gradient_match_distance([x], [gr]), (gs,))


def test_gradient_distance_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        gradient_match_distance([torch.zeros(2, 3)], [torch.zeros(3, 2)])
    with pytest.raises(ValueError, match="equally long"):
        gradient_match_distance([torch.zeros(2, 3)], [])
    with pytest.raises(TypeError):
        gradient_match_distance([[1.0, 2.0]], [torch.zeros(2)])

# ----------------------------------------------------------------------------- DM


def test_mean_embedding_hand_value_and_gradient():
    real = torch.tensor([[1.0, 0.0], [3.0, 2.0]])          # mean (2, 1)
    syn = torch.tensor([[0.0, 0.0]], requires_grad=True)   # mean (0, 0)
    loss = mean_embedding_loss(real, syn)
    assert loss.item() == pytest.approx(5.0)
    loss.backward()
    assert torch.allclose(syn.grad, torch.tensor([[-4.0, -2.0]]))   # -2 (mu_R - mu_S) / N_S


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(0, 1000))
def test_mean_embedding_permutation_invariant_and_zero_on_equal_means(n_r, n_s, d, seed):
    g = torch.Generator().manual_seed(seed)
    real, syn = torch.randn(n_r, d, generator=g), torch.randn(n_s, d, generator=g)
    perm = torch.randperm(n_r, generator=g)
    assert mean_embedding_loss(real[perm], syn).item() == pytest.approx(mean_embedding_loss(real, syn).item(), rel=1e-5, abs=1e-6)
    assert mean_embedding_loss(real, real.mean(0, keepdim=True)).item() == pytest.approx(0.0, abs=1e-6)
    assert mean_embedding_loss(real, syn).item() >= 0


def test_mean_embedding_bad_input():
    with pytest.raises(ValueError):
        mean_embedding_loss(torch.zeros(3, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError):
        mean_embedding_loss(torch.zeros(0, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        mean_embedding_loss(torch.zeros(3), torch.zeros(3))

# ----------------------------------------------------------------------------- MTT


def test_trajectory_matching_endpoints_and_value():
    start, target = torch.zeros(4), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert trajectory_matching_loss(start, start, target).item() == pytest.approx(1.0)
    assert trajectory_matching_loss(target, start, target).item() == pytest.approx(0.0)
    half = trajectory_matching_loss(target / 2, start, target)
    assert half.item() == pytest.approx(0.25)              # half way there: (1/2)^2


def test_trajectory_matching_gradient_and_bad_input():
    student = torch.tensor([0.5, 0.5], requires_grad=True)
    loss = trajectory_matching_loss(student, torch.zeros(2), torch.ones(2))
    loss.backward()
    assert torch.allclose(student.grad, torch.tensor([-0.5, -0.5]))   # 2 (s - t) / ||start - t||^2 = 2 * -0.5 / 2
    with pytest.raises(ValueError, match="did not move"):
        trajectory_matching_loss(torch.zeros(2), torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="same shape"):
        trajectory_matching_loss(torch.zeros(2), torch.zeros(3), torch.ones(3))

# ----------------------------------------------------------------------------- P67 (AST)


def test_expert_loss_scale_is_the_official_schedule():
    assert [expert_loss_scale(e) for e in range(12)] == pytest.approx(
        [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0])
    with pytest.raises(ValueError):
        expert_loss_scale(-1)


def test_gradient_penalty_of_a_linear_model():
    w = torch.tensor([[2.0, -1.0], [0.5, 0.5]])            # logits = x @ w, x (B, 2): d sum / dx = row sums
    x = torch.randn(3, 2, requires_grad=True)
    gp = input_gradient_penalty(x @ w, x, lam=2.0)
    row = w.sum(1)                                          # (1.0, 1.0): gradient of every sample
    assert gp.item() == pytest.approx(2.0 * (row.norm().item() - 1) ** 2)
    w2 = w.clone().requires_grad_(True)
    input_gradient_penalty(x @ w2, x).backward()            # flows into the weights (create_graph)
    assert w2.grad is not None and torch.isfinite(w2.grad).all()


def test_gradient_penalty_bad_input():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="require grad"):
        input_gradient_penalty(x * 2, x)
    with pytest.raises(ValueError):
        input_gradient_penalty(x, x.requires_grad_(True), lam=-1.0)


def test_balanced_inner_weight():
    T = 20
    assert balanced_inner_weight(10, T) == pytest.approx(math.log(8, 5))
    assert balanced_inner_weight(19, T) == pytest.approx(math.log(17, 5))
    assert balanced_inner_weight(0, T) == pytest.approx(1 / math.log(18, 5))
    weights = [balanced_inner_weight(t, T) for t in range(T)]
    assert all(a < b for a, b in zip(weights, weights[1:]))           # late starts weigh more
    with pytest.raises(ValueError):
        balanced_inner_weight(0, 0)

# ----------------------------------------------------------------------------- KRR-ST


def test_krr_closed_form_equals_direct_ridge_solve():
    g = torch.Generator().manual_seed(0)
    fs, ys, fr = (torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64),
                  torch.randn(9, 4, generator=g, dtype=torch.float64))
    ridge = 1e-3
    # primal: W = (F^T F + lam I)^-1 F^T Y on features with a bias column, lam = ridge * trace(F F^T)
    Fs, Fr = torch.cat([fs, torch.ones(6, 1, dtype=torch.float64)], 1), torch.cat([fr, torch.ones(9, 1, dtype=torch.float64)], 1)
    lam = ridge * torch.trace(Fs @ Fs.T)
    W = torch.linalg.solve(Fs.T @ Fs + lam * torch.eye(5, dtype=torch.float64), Fs.T @ ys)
    assert torch.allclose(krr_predict(fs, ys, fr, ridge=ridge), Fr @ W, atol=1e-10)


def test_krr_interpolates_its_training_points_with_tiny_ridge():
    g = torch.Generator().manual_seed(1)
    fs, ys = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    assert torch.allclose(krr_predict(fs, ys, fs, ridge=1e-12), ys, atol=1e-6)   # more features than points


def test_krr_st_loss_gradients_reach_features_and_targets():
    g = torch.Generator().manual_seed(2)
    fs = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    fr, yr = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
    # exact in the learnable targets (the ridge depends on the features only, detached as in the official code)
    assert torch.autograd.gradcheck(lambda b: krr_st_loss(fs.detach(), b, fr, yr, ridge=1e-2), (ys,))
    krr_st_loss(fs, ys, fr, yr, ridge=1e-2).backward()
    assert fs.grad.abs().sum() > 0 and torch.isfinite(fs.grad).all()


def test_krr_bad_input():
    with pytest.raises(ValueError, match="do not fit"):
        krr_predict(torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError):
        krr_predict(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(2, 3), ridge=0.0)
    with pytest.raises(ValueError, match="same shape"):
        krr_st_loss(torch.randn(4, 3), torch.randn(4, 2), torch.randn(2, 3), torch.randn(2, 5))

# ----------------------------------------------------------------------------- Barlow Twins


def test_barlow_twins_zero_on_identical_decorrelated_views_and_positive_otherwise():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])   # standardised, uncorrelated
    assert barlow_twins_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert barlow_twins_loss(z, -z).item() == pytest.approx(8.0, abs=1e-3)    # C = -I: (1 - -1)^2 x 2
    corr = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(corr, corr, lam=1.0).item() == pytest.approx(2.0, abs=1e-3)   # off-diagonal 1, twice


def test_barlow_twins_bad_input():
    with pytest.raises(ValueError):
        barlow_twins_loss(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        barlow_twins_loss(torch.full((4, 3), float("nan")), torch.zeros(4, 3))


# ----------------------------------------------------------------------------- SRe2L, CV-DD (P34), INFER (P68)


def test_bn_matching_hand_value_and_first_layer_multiplier():
    # one channel, batch of two 1 x 2 maps: values 0, 2 and 4, 6 -> mean 3, biased variance 5
    x = torch.tensor([[[[0.0, 2.0]]], [[[4.0, 6.0]]]])
    rm, rv = torch.tensor([1.0]), torch.tensor([2.0])
    want = abs(3 - 1) + abs(5 - 2)                                   # L2 norms of 1-d differences
    assert bn_matching_loss([x], [rm], [rv], first_multiplier=1.0).item() == pytest.approx(want)
    assert bn_matching_loss([x], [rm], [rv]).item() == pytest.approx(10 * want)     # first layer x 10
    two = bn_matching_loss([x, x], [rm, rm], [rv, rv], first_multiplier=10.0)
    assert two.item() == pytest.approx(11 * want)                    # later layers weigh 1
    # norms are not squared: two channels off by (3, 4) in the mean give 5
    x2 = torch.zeros(4, 2, 3, 3)
    assert bn_matching_loss([x2], [torch.tensor([3.0, 4.0])], [torch.zeros(2)], first_multiplier=1.0).item() == pytest.approx(5.0)


def test_bn_matching_is_zero_on_matching_statistics_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g, requires_grad=True)
    rm, rv = x.detach().mean((0, 2, 3)), x.detach().var((0, 2, 3), unbiased=False)
    assert bn_matching_loss([x], [rm], [rv]).item() == pytest.approx(0.0, abs=1e-5)
    loss = bn_matching_loss([x], [rm + 1], [rv])
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bn_matching_groups_equal_separate_batches():
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, 2, generator=g)]   # conv and flat inputs
    stats = [(torch.randn(4, generator=g), torch.rand(4, generator=g)), (torch.randn(2, generator=g), torch.rand(2, generator=g))]
    rms, rvs = [m for m, _ in stats], [v for _, v in stats]
    per = bn_matching_loss(feats, rms, rvs, groups=3, reduction="none")
    assert per.shape == (3,)
    for k in range(3):
        alone = bn_matching_loss([f[2 * k:2 * k + 2] for f in feats], rms, rvs)
        assert per[k].item() == pytest.approx(alone.item(), rel=1e-5)
    assert bn_matching_loss(feats, rms, rvs, groups=3).item() == pytest.approx(per.sum().item(), rel=1e-6)


def test_bn_matching_bad_input():
    x, rm, rv = torch.randn(4, 3, 2, 2), torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError, match="one running mean"):
        bn_matching_loss([x], [rm], [])
    with pytest.raises(ValueError, match="group"):
        bn_matching_loss([x], [rm], [rv], groups=3)                  # 4 images do not split in 3
    with pytest.raises(ValueError, match="group"):
        bn_matching_loss([x], [torch.zeros(2)], [rv])                # statistics of the wrong width
    with pytest.raises(ValueError, match="reduction"):
        bn_matching_loss([x], [rm], [rv], reduction="mean")


def test_vote_weights_softmax_and_limits():
    p = torch.tensor([63.0, 65.3, 68.5])                            # CV-DD's CIFAR-10 priors (R18, R50, SV2)
    w = vote_weights(p, 5.0)
    assert torch.allclose(w, torch.softmax(p / 5, 0)) and w.sum().item() == pytest.approx(1.0)
    assert int(w.argmax()) == 2
    assert torch.allclose(vote_weights(p, 1e6), torch.full((3,), 1 / 3), atol=1e-4)     # tau -> inf: equal votes
    assert vote_weights(p, 1e-3)[2].item() == pytest.approx(1.0)                      # tau -> 0: the best alone
    with pytest.raises(ValueError):
        vote_weights(p, 0.0)
    with pytest.raises(ValueError):
        vote_weights(torch.tensor([1.0, float("nan")]))


def test_voting_recover_loss_reduces_to_sre2l():
    ce, bn = torch.tensor([2.0]), torch.tensor([30.0])
    assert voting_recover_loss(ce, bn, torch.ones(1), r_bn=0.01).item() == pytest.approx(2.3)   # CE + 0.01 R_BN
    ce2, bn2, w2 = torch.tensor([[1.0, 2.0]]), torch.tensor([[10.0, 20.0]]), torch.tensor([[0.25, 0.75]])
    assert voting_recover_loss(ce2, bn2, w2, r_bn=0.1).item() == pytest.approx(0.25 * 2 + 0.75 * 4)
    with pytest.raises(ValueError):
        voting_recover_loss(ce, torch.ones(2), torch.ones(1))
    with pytest.raises(ValueError):
        voting_recover_loss(ce, bn, torch.ones(1), r_bn=-1.0)


def test_vote_logits_weights_logits_before_the_softmax():
    g = torch.Generator().manual_seed(2)
    zs = [torch.randn(5, 4, generator=g) for _ in range(3)]
    assert torch.allclose(vote_logits(zs, torch.full((3,), 1 / 3)), torch.stack(zs).mean(0), atol=1e-6)
    w = torch.tensor([0.2, 0.3, 0.5])
    assert torch.allclose(vote_logits(zs, w), 0.2 * zs[0] + 0.3 * zs[1] + 0.5 * zs[2], atol=1e-6)
    assert not torch.allclose(torch.softmax(vote_logits(zs, w), -1),
                              sum(wk * torch.softmax(z, -1) for wk, z in zip(w, zs)))     # not a probability average
    with pytest.raises(ValueError, match="weights"):
        vote_logits(zs, torch.ones(2))
    with pytest.raises(ValueError):
        vote_logits([], torch.ones(0))
    with pytest.raises(ValueError):
        vote_logits([zs[0], zs[1][:, :3]], torch.ones(2))


def test_interpolated_logits_end_points_and_bad_input():
    z = torch.arange(12.0).view(4, 3)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.equal(interpolated_logits(z, perm, 1.0), z)
    assert torch.equal(interpolated_logits(z, perm, 0.0), z[perm])
    assert torch.allclose(interpolated_logits(z, perm, 0.25), 0.25 * z + 0.75 * z[perm])
    with pytest.raises(ValueError):
        interpolated_logits(z, perm, 1.5)
    with pytest.raises(ValueError, match="perm"):
        interpolated_logits(z, perm[:3], 0.5)
