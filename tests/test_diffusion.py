"""Few-step diffusion family (notebooks 07a/07b): losses, TrigFlow nets, samplers, metrics, loops."""

import copy
import math

import pytest
import torch

from cookbook.losses.diffusion import (
    consistency_loss,
    denoising_loss,
    hinge_d_loss,
    hinge_g_loss,
    scm_loss,
    sid_generator_loss,
    topk_kld,
    vsd_loss,
)
from cookbook.losses.llm import forward_kl, reverse_kl
from cookbook.methods import diffusion as D
from cookbook.metrics import frechet_distance, precision_recall
from cookbook.models.diffusion import (
    HALF_PI,
    ARGridModel,
    FrameDenoiser,
    ToyDenoiser,
    TrigFlowNet,
    fake_quantize,
    model_bits,
    noise,
    quantize_linears,
    scheduler_sample,
    v_target,
)


def gauss_denoiser(x_t, t, mu, s):
    """Exact E[x0 | x_t] for x0 ~ N(mu, s^2) under x_t = cos t x0 + sin t z."""
    c, n = torch.cos(t), torch.sin(t)
    return mu + c * s ** 2 / (c ** 2 * s ** 2 + n ** 2) * (x_t - c * mu)


# ----------------------------------------------------------------------------- losses

def test_sid_loss_zero_when_fake_matches_teacher_and_hand_value():
    x = torch.randn(4, 3)
    d = torch.randn(4, 3)
    assert sid_generator_loss(d, d.clone(), x).item() == 0.0
    teacher, fake, xg = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 1.0]]), torch.tensor([[0.0, 0.0]])
    diff = teacher - fake
    want = (diff * ((teacher - xg) - 1.2 * diff)).sum() / (xg - teacher).abs().mean()
    assert torch.isclose(sid_generator_loss(teacher, fake, xg, alpha=1.2), want)


@pytest.mark.parametrize("loss_name", ["sid", "vsd"])
def test_data_free_losses_pull_the_generator_to_the_data_gaussian(loss_name):
    """1-D Gaussians with closed-form scores: the gradient on the generator mean points to the data mean."""
    g = torch.Generator().manual_seed(0)
    mu_d, mu_g, s = 1.0, -0.5, 0.7
    mu = torch.tensor(mu_g, requires_grad=True)
    x_g = mu + s * torch.randn(4096, 1, generator=g)
    t = 0.2 + 1.2 * torch.rand(4096, 1, generator=g)
    x_t = torch.cos(t) * x_g + torch.sin(t) * torch.randn(4096, 1, generator=g)
    d_data, d_gen = gauss_denoiser(x_t, t, mu_d, s), gauss_denoiser(x_t, t, mu_g, s)   # psi = the generator's own score
    loss = sid_generator_loss(d_data, d_gen, x_g) if loss_name == "sid" else vsd_loss(x_g, d_data.detach(), d_gen.detach(), t.squeeze(1))
    loss.backward()
    assert mu.grad.item() < 0          # descending raises mu_g towards mu_d = 1


def test_vsd_gradient_is_the_weighted_score_difference():
    x = torch.randn(3, 2, requires_grad=True)
    dt, df, t = torch.randn(3, 2), torch.randn(3, 2), torch.rand(3)
    vsd_loss(x, dt, df, t).backward()
    want = -(torch.sin(t) * torch.cos(t))[:, None] * (dt - df) / 3       # batch mean
    assert torch.allclose(x.grad, want, atol=1e-6)


def test_scm_tangent_vanishes_for_the_exact_consistency_function():
    """Data N(0, I): the teacher's PF-ODE is dx/dt = 0 and F(x, t) = (cos t - 1)/sin t x is exact."""
    x, t = torch.randn(6, 3), 0.1 + 1.3 * torch.rand(6)
    exact = lambda x_, s: ((torch.cos(s) - 1) / torch.sin(s))[:, None] * x_
    dxdt = torch.zeros_like(x)
    tt = t[:, None]
    F_minus, jvp = torch.func.jvp(exact, (x, t), (torch.cos(tt) * torch.sin(tt) * dxdt, torch.cos(t) * torch.sin(t)))
    F_theta = F_minus.clone().requires_grad_(True)
    loss = scm_loss(F_theta, F_minus, jvp, dxdt, x, t)
    assert loss.item() < 1e-10
    loss.backward()
    assert F_theta.grad.abs().max().item() < 1e-6


def test_scm_gradient_is_the_normalised_tangent():
    x, t = torch.randn(4, 5), 0.3 + torch.rand(4)
    F_minus, jvp, dxdt = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    F_theta = F_minus.clone().requires_grad_(True)
    scm_loss(F_theta, F_minus, jvp, dxdt, x, t, c=0.1).backward()
    tt = t[:, None]
    g = -torch.cos(tt) ** 2 * (F_minus - dxdt) - (torch.cos(tt) * torch.sin(tt) * x + jvp)
    g = g / (g.norm(dim=1, keepdim=True) + 0.1)
    assert torch.allclose(F_theta.grad, -2 * g / torch.tan(tt) / F_minus.numel(), atol=1e-6)
    with pytest.raises(ValueError):
        scm_loss(F_theta, F_minus, jvp, dxdt, x, t, r=1.5)


def test_simple_losses_values_and_bad_input():
    a, b = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert consistency_loss(a, b).item() == pytest.approx((5 + 2) / 2)
    assert denoising_loss(a, b).item() == pytest.approx(3.5)
    assert hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.0])).item() == pytest.approx(0.5)
    assert hinge_g_loss(torch.tensor([1.0, 3.0])).item() == -2.0
    with pytest.raises(ValueError):
        consistency_loss(a, b[:1])
    with pytest.raises(ValueError):
        denoising_loss(a, torch.full_like(a, float("nan")))
    with pytest.raises(TypeError):
        sid_generator_loss(a.numpy(), b, a)


def test_topk_kld_endpoints_zero_and_bad_k():
    s, t = torch.randn(5, 12), torch.randn(5, 12)
    assert torch.isclose(topk_kld(s, t, k=0), forward_kl(s, t), atol=1e-5)
    assert torch.isclose(topk_kld(s, t, k=12), reverse_kl(s, t), atol=1e-5)
    assert abs(topk_kld(t, t, k=4).item()) < 1e-6
    for k in (1, 4, 11):
        assert topk_kld(s, t, k=k).item() > 0
    s.requires_grad_(True)
    topk_kld(s, t, k=4).backward()
    assert torch.isfinite(s.grad).all()
    with pytest.raises(ValueError):
        topk_kld(s, t, k=13)


# ----------------------------------------------------------------------------- models, samplers, metrics

def test_trigflow_parametrisation_and_one_step_ddim():
    net = TrigFlowNet(ToyDenoiser(hidden=16))
    x0, t = torch.randn(7, 2), torch.rand(7) * HALF_PI
    x_t, z = noise(x0, t)
    v = v_target(x0, z, t)
    ct, st = torch.cos(t)[:, None], torch.sin(t)[:, None]
    assert torch.allclose(ct * x_t - st * v, x0, atol=1e-6)       # x0 = cos t x_t - sin t v
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    one = scheduler_sample(net, (5, 2), 1, kind="ddim", generator=g1)
    z = torch.randn(5, 2, generator=g2)
    assert torch.allclose(one, net.x0(z, torch.full((5,), HALF_PI)), atol=1e-3)


def test_fake_quantize_levels_and_bits():
    w = torch.randn(4, 9)
    q = fake_quantize(w, 3)
    for qr in q:
        assert qr.unique().numel() <= 7                          # 2^(3-1)-1 = 3 levels each side + 0
    w.requires_grad_(True)
    fake_quantize(w, 3).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))                # straight-through
    m = quantize_linears(ARGridModel(grid=8, hidden=16), 4)
    n_lin = sum(p.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear) for n_, p in mod.named_parameters() if n_ == "weight")
    n_all = sum(p.numel() for p in m.parameters())
    assert model_bits(m) == 4 * n_lin + 32 * (n_all - n_lin)
    with pytest.raises(ValueError):
        fake_quantize(w, 1)


def test_generative_metrics():
    class Identity(torch.nn.Module):
        num_features = 4

        def forward(self, x):
            return x.flatten(1)

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 1, 2, 2, generator=g), torch.randn(400, 1, 2, 2, generator=g)
    same, shifted = frechet_distance(a, b, Identity()), frechet_distance(a, b + 2, Identity())
    assert same < 0.2 and shifted == pytest.approx(16, rel=0.15)   # ||mean shift||^2 = 4 dims x 2^2
    p, r = precision_recall(a.flatten(1), a.flatten(1))
    assert p == 1.0 and r == 1.0
    p, r = precision_recall(a.flatten(1), a.flatten(1) + 100)
    assert p == 0.0 and r == 0.0


def test_ring_toy_density_and_stats():
    x, _ = D.ring_sample(4000, torch.Generator().manual_seed(0))
    st = D.mode_stats(x)
    assert st["modes_hit"] == 8 and st["on_mode"] > 0.97 and st["mode_kl"] < 0.01
    grid = torch.linspace(-1.6, 1.6, 321)
    xx = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    mass = D.ring_log_density(xx).exp().sum().item() * (grid[1] - grid[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.01)


def test_stream_buffer_and_generation_shapes():
    t = D.buffer_times(8, 4, torch.tensor([0.0, 1.0]))
    assert t.shape == (2, 8) and torch.all(t[:, 1:] >= t[:, :-1])
    assert t[1, -1].item() == pytest.approx(HALF_PI)
    net = TrigFlowNet(FrameDenoiser(width=16, depth=1, heads=2))
    frames, nfe = D.stream_generate(net, 3, 10, steps_per_chunk=2, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (3, 10, 2) and nfe == pytest.approx(1.0)     # 2 passes per chunk of 2 frames


def test_distillation_loops_run_on_the_toy():
    sample = lambda n, g: (D.ring_sample(n, g)[0], None)
    teacher = D.train_trigflow(TrigFlowNet(ToyDenoiser(hidden=32)), sample, steps=30, batch_size=64).model
    fresh = lambda: copy.deepcopy(teacher).requires_grad_(True)
    labels = lambda n, g: None
    runs = [D.distill_cd(teacher, fresh(), sample, steps=3, batch_size=16),
            D.distill_scm(teacher, fresh(), sample, steps=3, batch_size=16),
            D.distill_scm(teacher, fresh(), sample, steps=3, batch_size=16,
                          disc=D.TeacherDiscriminator(copy.deepcopy(teacher), None, 32)),
            D.distill_sid(teacher, fresh(), labels, (2,), steps=3, batch_size=16, times=(HALF_PI, 0.7)),
            D.distill_swiftbrush(teacher, fresh(), labels, (2,), steps=3, batch_size=16)]
    for run in runs:
        assert all(math.isfinite(v) for vals in run.losses.values() for v in vals)
        x = D.generator_sample(run.model, torch.randn(8, 2))
        assert x.shape == (8, 2) and torch.isfinite(x).all()


def test_stream_distillation_and_quantised_ar_distillation_run():
    teacher = TrigFlowNet(FrameDenoiser(width=16, depth=1, heads=2)).eval()
    run = D.distill_stream(teacher, copy.deepcopy(teacher).requires_grad_(True), steps=2, batch_size=8)
    assert all(math.isfinite(v) for v in run.losses["loss"])
    tokens = D.to_grid(D.ring_sample(256, torch.Generator().manual_seed(0))[0], grid=8)
    ar = D.train_ar(ARGridModel(grid=8, hidden=16), tokens, steps=5, batch_size=32).model
    assert torch.allclose(ar.log_probs().exp().sum(), torch.tensor(1.0), atol=1e-5)
    for loss in ("forward_kl", "topkld"):
        q = quantize_linears(copy.deepcopy(ar), 3)
        out = D.train_ar(q, tokens, steps=3, batch_size=32, teacher=ar, loss=loss, k=2)
        assert all(math.isfinite(v) for v in out.losses["loss"])
    with pytest.raises(ValueError):
        D.train_ar(copy.deepcopy(ar), tokens, steps=1, loss="topkld")
