"""P16 pieces: distance covariance, VAE terms, distillation losses, fairness gaps, the pipeline."""

import math

import numpy as np
import pytest
import torch

from cookbook.losses import fairness as L
from cookbook.methods import fair_data as M
from cookbook.metrics import demographic_parity_gap, equalized_odds_gap

torch.manual_seed(0)


# ----------------------------------------------------------------------------- fairness gaps


def test_dp_gap_hand_computed():
    pred = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert demographic_parity_gap(pred, groups) == pytest.approx(0.5 - 0.25)


def test_eo_gap_hand_computed():
    # group 0: TPR 2/2, FPR 1/2; group 1: TPR 1/2, FPR 0/2 -> max(0.5, 0.5)
    pred = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0])
    labels = torch.tensor([1, 1, 0, 0, 1, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert equalized_odds_gap(pred, labels, groups) == pytest.approx(0.5)
    pred2 = torch.tensor([1, 1, 0, 0, 1, 1, 0, 1])               # TPR equal, FPR 0 vs 1/2
    assert equalized_odds_gap(pred2, labels, groups) == pytest.approx(0.5)
    assert equalized_odds_gap(labels, labels, groups) == 0.0      # a perfect classifier


def test_gaps_are_zero_for_group_blind_predictions():
    groups = torch.arange(100) % 2
    pred = (torch.arange(100) // 2) % 2                           # same rate in both groups
    assert demographic_parity_gap(pred, groups) == 0.0


def test_gaps_match_fairlearn_if_installed():
    fl = pytest.importorskip("fairlearn.metrics")
    g = torch.Generator().manual_seed(1)
    pred, labels = torch.randint(0, 2, (200,), generator=g), torch.randint(0, 2, (200,), generator=g)
    groups = torch.randint(0, 3, (200,), generator=g)
    assert demographic_parity_gap(pred, groups) == pytest.approx(
        fl.demographic_parity_difference(labels.numpy(), pred.numpy(), sensitive_features=groups.numpy()))
    assert equalized_odds_gap(pred, labels, groups) == pytest.approx(
        fl.equalized_odds_difference(labels.numpy(), pred.numpy(), sensitive_features=groups.numpy()))


@pytest.mark.parametrize("call, match", [
    (lambda: demographic_parity_gap(torch.tensor([0.3, 1.0]), torch.tensor([0, 1])), "binary"),
    (lambda: demographic_parity_gap(torch.tensor([0, 1]), torch.tensor([0, 0])), "two groups"),
    (lambda: demographic_parity_gap(torch.tensor([0, 1, 1]), torch.tensor([0, 1])), "align"),
    (lambda: demographic_parity_gap(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)), "empty"),
    (lambda: equalized_odds_gap(torch.tensor([0, 1]), torch.tensor([2, 1]), torch.tensor([0, 1])), "binary"),
])
def test_gaps_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- distance covariance


def _direct_v2(mu, logvar, s, k):
    """V^2 by the definition: sum_g p(g)^2 ||p(z|g) - p(z)||^2, each inner product a double loop."""
    var = logvar.exp().double()
    mu = mu.double()

    def overlap(i, j):
        v = var[i] + var[j]
        return torch.exp(-0.5 * ((mu[i] - mu[j]) ** 2 / v).sum()) / torch.sqrt((2 * math.pi * v).prod())

    def inner(a, b):
        return sum(overlap(i, j) for i in a for j in b) / (len(a) * len(b))

    everyone = list(range(len(mu)))
    total = 0.0
    for g in range(k):
        members = [i for i in everyone if s[i] == g]
        if 0 < len(members) < len(everyone):
            total += (len(members) / len(everyone)) ** 2 * (inner(everyone, everyone) + inner(members, members)
                                                             - 2 * inner(members, everyone))
    return float(total)


@pytest.mark.parametrize("b, d, k", [(7, 2, 2), (9, 3, 3), (6, 1, 2)])
def test_distance_covariance_equals_the_direct_sum(b, d, k):
    mu, logvar = torch.randn(b, d), torch.randn(b, d) * 0.3 - 0.5
    s = torch.arange(b) % k
    assert L.distance_covariance_loss(mu, logvar, s, k).item() == pytest.approx(_direct_v2(mu, logvar, s, k), rel=1e-4)


def test_distance_covariance_zero_when_groups_are_identical_and_positive_when_shifted():
    mu, logvar = torch.randn(10, 3), torch.zeros(10, 3) - 1.0
    same = L.distance_covariance_loss(torch.cat([mu, mu]), torch.cat([logvar, logvar]),
                                      torch.cat([torch.zeros(10), torch.ones(10)]).long(), 2)
    assert abs(same.item()) < 1e-7
    shifted = L.distance_covariance_loss(torch.cat([mu, mu + 2]), torch.cat([logvar, logvar]),
                                         torch.cat([torch.zeros(10), torch.ones(10)]).long(), 2)
    assert shifted.item() > 1e-3


def test_distance_covariance_single_group_batch_is_zero_and_gradient_flows():
    mu = torch.randn(8, 2, requires_grad=True)
    logvar = torch.zeros(8, 2, requires_grad=True)
    assert L.distance_covariance_loss(mu, logvar, torch.zeros(8, dtype=torch.long), 2).item() == 0.0
    loss = L.distance_covariance_loss(mu, logvar, torch.arange(8) % 2, 2)
    loss.backward()
    assert mu.grad.abs().sum() > 0 and torch.isfinite(logvar.grad).all()


def test_distance_covariance_gradcheck():
    mu = torch.randn(6, 2, dtype=torch.double, requires_grad=True)
    logvar = (torch.randn(6, 2, dtype=torch.double) * 0.2).requires_grad_()
    s = torch.tensor([0, 1, 0, 1, 1, 0])
    assert torch.autograd.gradcheck(lambda m, lv: L.distance_covariance_loss(m, lv, s, 2), (mu, logvar))


@pytest.mark.parametrize("call, error, match", [
    (lambda: L.distance_covariance_loss(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4).long(), 2), ValueError, "same non-empty shape"),
    (lambda: L.distance_covariance_loss(torch.zeros(4, 2), torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]), 2), ValueError, "s must lie"),
    (lambda: L.distance_covariance_loss(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3).long(), 2), ValueError, "shape"),
    (lambda: L.distance_covariance_loss(torch.full((4, 2), float("nan")), torch.zeros(4, 2), torch.zeros(4).long(), 2), ValueError, "NaN"),
    (lambda: L.distance_covariance_loss(np.zeros((4, 2)), torch.zeros(4, 2), torch.zeros(4).long(), 2), TypeError, "torch.Tensor"),
    (lambda: L.latent_utility_loss(torch.zeros(2, 3), torch.zeros(2, 3), T=0.0), ValueError, "temperature"),
    (lambda: L.latent_quality_loss(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "same shape"),
    (lambda: L.categorical_reconstruction_loss(torch.zeros(2, 5), torch.zeros(2, 2).long(), [2, 2]), ValueError, "do not fit"),
])
def test_bad_input_raises(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- VAE and distillation terms


def test_gaussian_kl_reference_values():
    assert L.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # 0.5 * (mu^2 + var - 1 - log var) summed: 0.5 * 1 + 0.5 * (2 - 1 - log 2)
    assert L.gaussian_kl(mu, logvar).item() == pytest.approx(0.5 + 0.5 * (1 - math.log(2)))


def test_categorical_reconstruction_is_sum_of_per_feature_ce():
    logits = torch.randn(5, 7, requires_grad=True)
    codes = torch.stack([torch.randint(0, 3, (5,)), torch.randint(0, 4, (5,))], 1)
    want = (torch.nn.functional.cross_entropy(logits[:, :3], codes[:, 0])
            + torch.nn.functional.cross_entropy(logits[:, 3:], codes[:, 1]))
    got = L.categorical_reconstruction_loss(logits, codes, [3, 4])
    assert torch.allclose(got, want)
    got.backward()
    assert logits.grad.abs().sum() > 0


def test_quality_and_utility_losses():
    z = torch.randn(6, 8)
    assert L.latent_quality_loss(z, z).item() == 0.0
    assert L.latent_quality_loss(z + 1, z).item() == pytest.approx(1.0)
    assert L.latent_utility_loss(z + 3.0, z).item() == pytest.approx(0.0, abs=1e-6)   # shift invariant
    assert L.latent_utility_loss(2 * z, z).item() > 0
    student = z.clone().requires_grad_()
    (L.latent_quality_loss(student * 1.5, z) + L.latent_utility_loss(student * 1.5, z)).backward()
    assert student.grad.abs().sum() > 0


def test_utility_loss_reference_value():
    t, s = torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2)   # p_t = (1/4, 3/4), p_s = (1/2, 1/2)
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert L.latent_utility_loss(s, t).item() == pytest.approx(want, rel=1e-6)


# ----------------------------------------------------------------------------- pipeline pieces


def _toy(n=400, seed=0):
    """A table where feature 0 copies s (a proxy) and the label depends on s and feature 1."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    f0 = np.where(rng.random(n) < 0.9, s, 1 - s)
    f1 = rng.integers(0, 3, n)
    y = ((f1 == 2) | ((s == 1) & (rng.random(n) < 0.8))).astype(int)
    from cookbook.data.tabular import TabularData
    split = np.where(np.arange(n) < n // 2, 0, np.where(np.arange(n) < 3 * n // 4, 1, 2))
    return TabularData(np.stack([f0, f1, y], 1), [2, 3, 2], ["proxy", "f1", "y"], s, split, "sex", ["a", "b"])


def test_sample_table_shapes_greedy_and_ranges():
    vae = M.FairVAE([2, 3, 2], z_dim=2, hidden=8)
    z, s = torch.randn(50, 2), torch.randint(0, 2, (50,))
    table = M.sample_table(vae, z, s, torch.Generator().manual_seed(0))
    assert table.shape == (50, 3) and (table.max(0).values < torch.tensor([2, 3, 2])).all()
    greedy = M.sample_table(vae, z, s, greedy=True)
    assert torch.equal(greedy[:, 1], vae.decode(z, s)[:, 2:5].argmax(1))


def test_decoder_groups():
    s = torch.tensor([0, 0, 0, 1])
    assert torch.equal(M.decoder_groups(s, 4, "real"), s)
    assert torch.equal(M.decoder_groups(s, 3, "fixed1"), torch.ones(3, dtype=torch.long))
    draw = M.decoder_groups(s, 4000, "marginal", torch.Generator().manual_seed(0))
    assert abs(draw.float().mean().item() - 0.25) < 0.03
    with pytest.raises(ValueError, match="decoder groups"):
        M.decoder_groups(s, 4, "swap")
    with pytest.raises(ValueError, match="one s per row"):
        M.decoder_groups(s, 5, "real")


def test_fidelity_and_detection():
    real = np.random.default_rng(0).integers(0, 3, (600, 2))
    assert M.marginal_fidelity(real, real, [3, 3]) == 1.0
    other = np.zeros_like(real)
    assert M.marginal_fidelity(real, other, [3, 3]) == pytest.approx(1 - np.mean(
        [0.5 * (abs((real[:, f] == 0).mean() - 1) + (real[:, f] != 0).mean()) for f in range(2)]))
    assert M.detection_auc(real, real[::-1].copy(), [3, 3]) < 0.6
    assert M.detection_auc(real, other, [3, 3]) > 0.9


def test_utility_and_fairness_sees_the_proxy():
    d = _toy(2000)
    tr, te = d.part("train"), d.part("test")
    out = M.utility_and_fairness(d.codes[tr], d.codes[te], d.s[te], d.cards, d.label)
    assert out["acc"] > 0.7 and out["dp_gap"] > 0.2            # the proxy carries s into predictions
    blind = d.codes[tr].copy()
    blind[:, 0] = 0                                              # the proxy removed from training rows
    assert M.utility_and_fairness(blind, d.codes[te], d.s[te], d.cards, d.label)["dp_gap"] < out["dp_gap"]


def test_pipeline_runs_loss_falls_and_penalty_reduces_dependence():
    d = _toy(800)
    cfg = M.FairConfig(hidden=16, z_dim=2, student_hidden=8, epochs=25, student_epochs=10, batch_size=128, penalty_rows=64)
    plain = M.run_pipeline(d, 0.0, 0, cfg, decode=("real", "fixed0"), conditional=False)
    assert plain.losses["teacher"][-1] < plain.losses["teacher"][0]
    assert plain.losses["student"][-1] < plain.losses["student"][0]
    assert set(plain.synthetic) == {"teacher/real", "teacher/fixed0", "student/real", "student/fixed0"}
    assert all(t.shape == (len(d.part("train")), 3) for t in plain.synthetic.values())
    x, _, s = M.tensors(d, d.part("train"))
    mu, logvar = plain.teacher.encode(x, s)
    fair = M.run_pipeline(d, 50.0, 0, cfg, distill=False, conditional=False)
    mu_f, logvar_f = fair.teacher.encode(x, s)
    v_plain = L.distance_covariance_loss(mu, logvar, s, 2).item()
    v_fair = L.distance_covariance_loss(mu_f, logvar_f, s, 2).item()
    assert v_fair < v_plain                                      # the penalty does what it says
    assert fair.student is None and set(fair.synthetic) == {"teacher/real"}


def test_student_is_smaller_than_the_teacher_encoder():
    vae = M.FairVAE([8, 9, 16, 2], hidden=64, z_dim=8)
    student = M.LatentStudent(35, hidden=16, z_dim=8)
    assert M.parameter_count(student) < M.parameter_count(vae.encoder) / 3


def test_pipeline_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        M.run_pipeline(_toy(), -1.0, 0, M.FairConfig())
