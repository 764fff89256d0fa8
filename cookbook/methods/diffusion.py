"""Few-step diffusion distillation (notebooks 07a/07b): toy data, samplers and distillation loops.

Everything is written once for TrigFlow nets (``cookbook.models.diffusion``), so the same loop
distils the 2-D ring toy (seconds) and the 16 x 16 Fashion-MNIST UNet (minutes):

- data built here: ``ring_sample`` (a ring of Gaussians, exact density ``ring_log_density``),
  ``stream_sample`` (points moving along the ring: short "videos" of 2-D frames);
- ``train_trigflow``: a teacher by v-prediction (uniform angle = the cosine schedule);
- ``generator_sample``: a one- or few-step generator's sampler (x_0 = G(x_t, t), re-noise);
- ``distill_cd`` (consistency distillation, baseline), ``distill_scm`` (sCM + optional LADD, P35),
  ``distill_sid`` (SiD / few-step SiD, P25), ``distill_swiftbrush`` (VSD, P66);
- StreamDiT (P45): ``train_stream_teacher``, ``stream_generate``, ``distill_stream``;
- P56: ``train_ar``, ``distill_quantized`` (CE / forward KL / TopKLD into a fake-quantised copy).

Every loop uses ``cookbook.train.Stepper`` (the package's one optimisation step).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
from cookbook.losses.llm import forward_kl
from cookbook.models.diffusion import HALF_PI, ARGridModel, TrigFlowNet, noise, v_target
from cookbook.train import Stepper

Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]   # n, gen -> (x0, labels)


# ----------------------------------------------------------------------------- toy data (built here)

def ring_centres(modes: int = 8, radius: float = 1.0) -> Tensor:
    """(modes, 2) centres evenly spaced on a circle."""
    a = torch.arange(modes) * (2 * math.pi / modes)
    return radius * torch.stack([a.cos(), a.sin()], 1)


def ring_sample(n: int, generator: torch.Generator | None = None, *, modes: int = 8, radius: float = 1.0,
                std: float = 0.1) -> tuple[Tensor, Tensor]:
    """n points of an equal-weight mixture of ``modes`` isotropic Gaussians on a ring; (x (n, 2), mode (n,))."""
    k = torch.randint(0, modes, (n,), generator=generator)
    return ring_centres(modes, radius)[k] + std * torch.randn(n, 2, generator=generator), k


def ring_log_density(x: Tensor, *, modes: int = 8, radius: float = 1.0, std: float = 0.1) -> Tensor:
    """Exact log p(x) of ``ring_sample``'s mixture: (n, 2) -> (n,)."""
    d2 = torch.cdist(x.double(), ring_centres(modes, radius).double()) ** 2
    log_comp = -d2 / (2 * std ** 2) - math.log(2 * math.pi * std ** 2)
    return (torch.logsumexp(log_comp, 1) - math.log(modes)).float()


def mode_stats(x: Tensor, *, modes: int = 8, radius: float = 1.0, std: float = 0.1) -> dict[str, float]:
    """Mode coverage on the ring toy: ``on_mode`` = share of samples within 3 std of a centre
    (quality), ``modes_hit`` = modes holding at least 25% of a fair share of samples (coverage),
    ``mode_kl`` = KL(uniform || sample mode histogram) over on-mode samples (balance; 0 = perfect),
    ``log_density`` = mean exact log p_data(sample) (clipped at -50 per sample)."""
    d = torch.cdist(x.float(), ring_centres(modes, radius))
    near, k = d.min(1)
    on = near <= 3 * std
    counts = torch.bincount(k[on], minlength=modes).double()
    share = counts / counts.sum().clamp_min(1)
    kl = (torch.full((modes,), 1 / modes, dtype=torch.float64) * (math.log(1 / modes) - share.clamp_min(1e-6).log())).sum()
    return {"on_mode": on.float().mean().item(), "modes_hit": int((counts >= 0.25 * len(x) / modes).sum()),
            "mode_kl": kl.item(), "log_density": ring_log_density(x, modes=modes, radius=radius, std=std).clamp_min(-50).mean().item()}


def stream_sample(n: int, length: int, generator: torch.Generator | None = None, *, radius: float = 1.0,
                  speed: tuple[float, float] = (0.15, 0.35), std: float = 0.02) -> Tensor:
    """n "videos" of ``length`` 2-D frames: a point moving along the ring at a random constant
    angular speed (random sign and start), plus ``std`` noise. (n, length, 2)."""
    start = torch.rand(n, 1, generator=generator) * 2 * math.pi
    sign = torch.randint(0, 2, (n, 1), generator=generator) * 2 - 1
    omega = sign * (speed[0] + (speed[1] - speed[0]) * torch.rand(n, 1, generator=generator))
    angle = start + omega * torch.arange(length)
    pts = radius * torch.stack([angle.cos(), angle.sin()], -1)
    return pts + std * torch.randn(pts.shape, generator=generator)


def stream_stats(frames: Tensor, *, radius: float = 1.0) -> dict[str, float]:
    """Quality of generated streams (n, L, 2): ``ring_error`` = mean | ||x|| - radius | per frame,
    ``jitter`` = std over time of each stream's angular step, averaged (0 for a constant speed)."""
    ring_error = (frames.norm(dim=-1) - radius).abs().mean().item()
    ang = torch.atan2(frames[..., 1], frames[..., 0])
    step = torch.remainder(ang[:, 1:] - ang[:, :-1] + math.pi, 2 * math.pi) - math.pi
    return {"ring_error": ring_error, "jitter": step.std(1).mean().item()}


# ----------------------------------------------------------------------------- teachers and samplers

@dataclass
class Run:
    """What a distillation loop returns: the trained model, per-step losses, wall seconds."""

    model: nn.Module
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def log(self, **values: float) -> None:
        for k, v in values.items():
            self.losses.setdefault(k, []).append(float(v))


def _batch(sample: Sampler, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    x0, y = sample(n, gen)
    return x0, y


def train_trigflow(net: TrigFlowNet, sample: Sampler, *, steps: int, batch_size: int = 256, lr: float = 2e-3,
                   seed: int = 0, ema: float | None = None, desc: str = "teacher") -> Run:
    """A diffusion model by v-prediction: t ~ U(0, pi/2), minimise ||F(x_t, t, y) - v||^2.

    (Uniform angles are the cosine schedule with uniform timesteps, Nichol & Dhariwal 2021.)
    ``ema``: keep an exponential moving average of the weights and return it instead."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ema_net = copy.deepcopy(net).requires_grad_(False) if ema else None
    stepper, run, start = Stepper(net.parameters(), total=steps, lr=lr, warmup=min(100, steps // 10), desc=desc), Run(net), time.perf_counter()
    for step in range(steps):
        x0, y = _batch(sample, batch_size, gen)
        t = torch.rand(len(x0), generator=gen) * HALF_PI
        x_t, z = noise(x0, t, torch.randn(x0.shape, generator=gen))
        run.log(loss=stepper.step(F.mse_loss(net(x_t, t, y), v_target(x0, z, t)), f"step {step}"))
        if ema_net is not None:
            with torch.no_grad():
                for pe, p in zip(ema_net.parameters(), net.parameters()):
                    pe.lerp_(p, 1 - ema)
    stepper.close()
    run.model = (ema_net or net).eval()
    run.seconds = time.perf_counter() - start
    return run


@torch.no_grad()
def generator_sample(gen_net: TrigFlowNet, z: Tensor, y: Tensor | None = None, times: tuple[float, ...] = (HALF_PI,),
                     generator: torch.Generator | None = None) -> Tensor:
    """Sample a one- or few-step generator: x = sin(t_1) z; for each t_k: x_0 = G(x, t_k), then
    re-noise x = cos(t_{k+1}) x_0 + sin(t_{k+1}) z' (the consistency-model multistep sampler).
    NFE = len(times)."""
    return _chain(gen_net, z, y, times, generator, len(times))[0]


def _chain(gen_net: TrigFlowNet, z: Tensor, y, times, generator, upto: int, grad_last: bool = False):
    """Run the first ``upto`` generator steps; only the last one keeps its graph when ``grad_last``.
    Returns (x_0 of step ``upto``, its input x, its time)."""
    x = math.sin(times[0]) * z
    for k in range(upto):
        t = torch.full((len(z),), float(times[k]))
        last = k == upto - 1
        with torch.set_grad_enabled(grad_last and last):
            x0 = gen_net.x0(x, t, y)
        if not last:
            x = noise(x0, torch.full((len(z),), float(times[k + 1])),
                      torch.randn(z.shape, generator=generator))[0]
    return x0, x, times[upto - 1]


def karras_angles(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  sigma_data: float = 0.5) -> Tensor:
    """The EDM / consistency-model discretisation (Karras et al. 2022) as TrigFlow angles, ascending:
    t_i = atan(sigma_i / sigma_data), sigma_i on the rho = 7 ramp (CM's N = 18 for CIFAR-10)."""
    ramp = torch.linspace(0, 1, n)
    sig = (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho
    return torch.atan(sig / sigma_data)


def _lognormal_angles(n: int, gen: torch.Generator, p_mean: float, p_std: float, sigma_data: float = 0.5) -> Tensor:
    """t = atan(exp(P_mean + P_std n) / sigma_data): EDM's log-normal noise levels as angles."""
    return torch.atan(torch.exp(p_mean + p_std * torch.randn(n, generator=gen)) / sigma_data)


def _frozen(*nets: nn.Module) -> None:
    for n in nets:
        n.requires_grad_(False).eval()


# ----------------------------------------------------------------------------- baselines: consistency distillation

def distill_cd(teacher: TrigFlowNet, student: TrigFlowNet, sample: Sampler, *, steps: int, batch_size: int = 128,
               lr: float = 1e-4, n_steps: int = 18, ema: float = 0.95, seed: int = 0, desc: str = "CD") -> Run:
    """Plain consistency distillation (Song et al. 2023, arXiv 2303.01469), squared L2 metric.

    n ~ U{0..N-2}; x_{n+1} = noise(x_0, t_{n+1}); x_hat_n = one teacher DDIM step to t_n;
    minimise ||f_theta(x_{n+1}, t_{n+1}) - sg f_{theta^-}(x_hat_n, t_n)||^2, theta^- = EMA(ema) of
    theta. f = the TrigFlow x_0 prediction (f(x, 0) = x holds by construction)."""
    _frozen(teacher)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    target = copy.deepcopy(student).requires_grad_(False)
    grid = karras_angles(n_steps)
    stepper, run, start = Stepper(student.parameters(), total=steps, lr=lr, schedule="constant", desc=desc), Run(student), time.perf_counter()
    student.train()
    for step in range(steps):
        x0, y = _batch(sample, batch_size, gen)
        idx = torch.randint(0, n_steps - 1, (len(x0),), generator=gen)
        t_hi, t_lo = grid[idx + 1], grid[idx]
        x_hi, _ = noise(x0, t_hi, torch.randn(x0.shape, generator=gen))
        with torch.no_grad():
            d = teacher.x0(x_hi, t_hi, y)
            eps = (x_hi - _b(torch.cos(t_hi), x_hi) * d) / _b(torch.sin(t_hi), x_hi)
            x_lo = _b(torch.cos(t_lo), x_hi) * d + _b(torch.sin(t_lo), x_hi) * eps
            tgt = target.x0(x_lo, t_lo, y)
        run.log(loss=stepper.step(consistency_loss(student.x0(x_hi, t_hi, y), tgt), f"step {step}"))
        with torch.no_grad():
            for pt, p in zip(target.parameters(), student.parameters()):
                pt.lerp_(p, 1 - ema)
    stepper.close()
    run.model, run.seconds = student.eval(), time.perf_counter() - start
    return run


def _b(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1)))


# ----------------------------------------------------------------------------- P35: sCM + LADD (SANA-Sprint)

class TeacherDiscriminator(nn.Module):
    """LADD's discriminator: the frozen teacher as the feature network, trainable heads on top.

    A forward hook reads ``layer``'s output while the teacher denoises the (noised) input at t; a
    small head maps the flattened features to one logit, plus a projection term <embed(y), h>
    for class conditioning. The teacher's weights never change; gradients reach the input (so the
    generator learns through it)."""

    def __init__(self, teacher: TrigFlowNet, layer: nn.Module | None, feat_dim: int, num_classes: int = 0,
                 hidden: int = 128):
        super().__init__()
        self.teacher = teacher
        _frozen(teacher)
        if layer is None:      # the UNet's mid block, or the toy MLP's last hidden activation
            layer = teacher.net.mid_block if hasattr(teacher.net, "mid_block") else teacher.net.body[-2]
        self._feat: Tensor | None = None
        layer.register_forward_hook(lambda m, i, o: setattr(self, "_feat", o))
        self.head = nn.Sequential(nn.Linear(feat_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out = nn.Linear(hidden, 1)
        self.embed = nn.Embedding(num_classes, hidden) if num_classes else None

    def forward(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:   # -> (B,)
        self.teacher(x_t, t, y)
        h = self.head(self._feat.flatten(1))
        logit = self.out(F.silu(h)).squeeze(1)
        if self.embed is not None and y is not None:
            logit = logit + (self.embed(y) * h).sum(1) / math.sqrt(h.shape[1])
        return logit

    def trainable(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("teacher.")]


class AdaptiveWeight(nn.Module):
    """sCM's learned loss weight u(t) ("logvar"): Fourier features of t -> MLP -> scalar (B,).

    Minimising e^{-u} w ||.||^2 + u sets e^u to the running loss scale at each t, so every t
    contributes about equally; without it the prior weight 1/tan t starves t -> pi/2, the
    one-step time (our toy: one-step sCM failed completely without it)."""

    def __init__(self, features: int = 16, hidden: int = 64):
        super().__init__()
        self.register_buffer("freqs", torch.arange(1, features // 2 + 1, dtype=torch.float32))
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, t: Tensor) -> Tensor:
        a = t[:, None] * self.freqs
        return self.mlp(torch.cat([a.sin(), a.cos()], 1)).squeeze(1)


def distill_scm(teacher: TrigFlowNet, student: TrigFlowNet, sample: Sampler, *, steps: int, batch_size: int = 128,
                lr: float = 1e-4, p_mean: float = 0.2, p_std: float = 1.6, warmup: int | None = None,
                c: float = 0.1, disc: TeacherDiscriminator | None = None, adv_weight: float = 0.5,
                d_lr: float = 1e-4, d_p_mean: float = -0.6, d_p_std: float = 1.0, adaptive: bool = True,
                seed: int = 0, desc: str = "sCM") -> Run:
    """Continuous-time consistency distillation (sCD) and, with ``disc``, SANA-Sprint's sCM + LADD.

    Per step (``scm_loss``): t ~ atan(exp(N(p_mean, p_std)) / 0.5), x_t from data, dx_t/dt =
    F_teacher(x_t, t); the JVP of the stop-gradient student along (cos t sin t dx_t/dt, cos t sin t)
    gives the tangent; r warms up linearly over ``warmup`` steps (default: half the run);
    ``adaptive``: learn sCM's loss weight u(t) (``AdaptiveWeight``) with the student.
    With ``disc``: the student's x_0 prediction at t is re-noised at t_D (log-normal d_p_mean,
    d_p_std) and the generator adds ``adv_weight`` x hinge loss; the discriminator heads take
    alternate hinge updates on re-noised data vs re-noised predictions (as the official loop).
    """
    _frozen(teacher)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    warmup = max(1, steps // 2) if warmup is None else max(1, warmup)
    weight_net = AdaptiveWeight() if adaptive else None
    params = list(student.parameters()) + (list(weight_net.parameters()) if weight_net else [])
    stepper, run, start = Stepper(params, total=steps, lr=lr, schedule="constant", clip_norm=1.0, desc=desc), Run(student), time.perf_counter()
    d_stepper = Stepper(disc.trainable(), total=steps, lr=d_lr, schedule="constant", progress=False) if disc else None
    for step in range(steps):
        x0, y = _batch(sample, batch_size, gen)
        t = _lognormal_angles(len(x0), gen, p_mean, p_std).clamp(1e-3, HALF_PI - 1e-3)
        x_t, _ = noise(x0, t, torch.randn(x0.shape, generator=gen))
        tt = _b(t, x_t)
        with torch.no_grad():
            dxt_dt = teacher(x_t, t, y)
            student.eval()
            F_minus, jvp = torch.func.jvp(lambda x, s, y=y: student(x, s, y), (x_t, t),
                                          (torch.cos(tt) * torch.sin(tt) * dxt_dt, torch.cos(t) * torch.sin(t)))
        student.train()
        F_theta = student(x_t, t, y)
        loss = scm_loss(F_theta, F_minus, jvp, dxt_dt, x_t, t, r=min(1.0, (step + 1) / warmup), c=c,
                        logvar=weight_net(t) if weight_net else None)
        logs = {"scm": loss.item()}
        if disc is not None:
            pred_x0 = torch.cos(tt) * x_t - torch.sin(tt) * F_theta
            t_d = _lognormal_angles(len(x0), gen, d_p_mean, d_p_std)
            adv = hinge_g_loss(disc(noise(pred_x0, t_d, torch.randn(x0.shape, generator=gen))[0], t_d, y))
            loss = loss + adv_weight * adv
            logs["adv"] = adv.item()
        stepper.step(loss, f"step {step}")
        if disc is not None:
            t_d = _lognormal_angles(len(x0), gen, d_p_mean, d_p_std)
            fake = noise(pred_x0.detach(), t_d, torch.randn(x0.shape, generator=gen))[0]
            real = noise(x0, t_d, torch.randn(x0.shape, generator=gen))[0]
            logs["disc"] = d_stepper.step(hinge_d_loss(disc(real, t_d, y), disc(fake, t_d, y)), f"step {step}")
        run.log(**logs)
    stepper.close()
    run.model, run.seconds = student.eval(), time.perf_counter() - start
    return run


# ----------------------------------------------------------------------------- P25 SiD and P66 SwiftBrush (data-free)

def sid_angles(n: int, gen: torch.Generator, tmax: float = 0.8) -> Tensor:
    """SiD's generator-loss noise levels: u ~ U(0, tmax) on the Karras ramp from sigma_min upwards
    (tmax = 800/1000 in the official code), as TrigFlow angles."""
    u = torch.rand(n, generator=gen) * tmax
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    return torch.atan((lo + u * (hi - lo)) ** 7 / 0.5)


def _fake_step(fake: TrigFlowNet, x_g: Tensor, y, t: Tensor, gen, stepper: Stepper, where: str) -> float:
    x_t, _ = noise(x_g.detach(), t, torch.randn(x_g.shape, generator=gen))
    return stepper.step(denoising_loss(fake.x0(x_t, t, y), x_g.detach()), where)


def distill_sid(teacher: TrigFlowNet, generator_net: TrigFlowNet, labels: Callable[[int, torch.Generator], Tensor | None],
                shape: tuple[int, ...], *, steps: int, batch_size: int = 64, lr: float = 1e-5, fake_lr: float | None = None,
                alpha: float = 1.2, times: tuple[float, ...] = (math.atan(5.0),), seed: int = 0, desc: str = "SiD") -> Run:
    """Score identity Distillation, data-free; with several ``times`` the few-step SiD of P25.

    The generator starts from the teacher (and the fake-score net psi from the teacher too).
    Each step: (1) psi learns denoising on fresh generator samples (EDM log-normal levels);
    (2) the generator minimises ``sid_generator_loss`` at SiD's levels (``sid_angles``). With K
    ``times`` a step k ~ U{1..K} is drawn and only the k-th output carries gradients: the loss is
    applied to the uniform mixture of all steps' outputs (P25). One-step default t_init =
    atan(2.5 / 0.5), the paper's sigma_init = 2.5 at sigma_data = 0.5. No data are read."""
    _frozen(teacher)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fake = copy.deepcopy(teacher).requires_grad_(True).train()
    g_step = Stepper(generator_net.parameters(), total=steps, lr=lr, schedule="constant", desc=desc)
    f_step = Stepper(fake.parameters(), total=steps, lr=fake_lr or lr, schedule="constant", progress=False)
    run, start = Run(generator_net), time.perf_counter()
    for step in range(steps):
        y = labels(batch_size, gen)
        z = torch.randn((batch_size, *shape), generator=gen)
        k = int(torch.randint(1, len(times) + 1, (1,), generator=gen))
        with torch.no_grad():
            x_g = _chain(generator_net, z, y, times, gen, k)[0]
        f = _fake_step(fake, x_g, y, _lognormal_angles(batch_size, gen, -1.2, 1.2), gen, f_step, f"step {step}")
        fake.requires_grad_(False)
        generator_net.train()
        x_g = _chain(generator_net, z, y, times, gen, k, grad_last=True)[0]
        t = sid_angles(batch_size, gen)
        x_t, _ = noise(x_g, t, torch.randn(x_g.shape, generator=gen))
        loss = sid_generator_loss(teacher.x0(x_t, t, y), fake.x0(x_t, t, y), x_g, alpha=alpha)
        run.log(generator=g_step.step(loss, f"step {step}"), fake=f)
        fake.requires_grad_(True)
    g_step.close()
    run.model, run.seconds = generator_net.eval(), time.perf_counter() - start
    return run


def distill_swiftbrush(teacher: TrigFlowNet, generator_net: TrigFlowNet, labels: Callable[[int, torch.Generator], Tensor | None],
                       shape: tuple[int, ...], *, steps: int, batch_size: int = 64, lr: float = 1e-5,
                       fake_lr: float | None = None, t_range: tuple[float, float] = (0.02, 0.98), seed: int = 0,
                       desc: str = "SwiftBrush") -> Run:
    """SwiftBrush: variational score distillation into a one-step student, image-free (P66).

    The student maps pure noise (t = pi/2) to x_0 in one step; a copy of the teacher (psi,
    SwiftBrush's LoRA teacher: here a full copy) learns denoising on the student's samples; the
    student follows ``vsd_loss`` = sigma_t^2 (eps_teacher - eps_psi) at t ~ U(t_range) x pi/2
    (the paper's [0.02, 0.98] T), without back-propagating through either network."""
    _frozen(teacher)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fake = copy.deepcopy(teacher).requires_grad_(True).train()
    g_step = Stepper(generator_net.parameters(), total=steps, lr=lr, schedule="constant", desc=desc)
    f_step = Stepper(fake.parameters(), total=steps, lr=fake_lr or lr, schedule="constant", progress=False)
    run, start = Run(generator_net), time.perf_counter()
    for step in range(steps):
        y = labels(batch_size, gen)
        z = torch.randn((batch_size, *shape), generator=gen)
        generator_net.train()
        x_g = _chain(generator_net, z, y, (HALF_PI,), gen, 1, grad_last=True)[0]
        t = (t_range[0] + (t_range[1] - t_range[0]) * torch.rand(batch_size, generator=gen)) * HALF_PI
        with torch.no_grad():
            x_t, _ = noise(x_g, t, torch.randn(x_g.shape, generator=gen))
            d_teacher, d_fake = teacher.x0(x_t, t, y), fake.x0(x_t, t, y)
        gl = g_step.step(vsd_loss(x_g, d_teacher, d_fake, t), f"step {step}")
        f = _fake_step(fake, x_g, y, t, gen, f_step, f"step {step}")
        run.log(generator=gl, fake=f)
    g_step.close()
    run.model, run.seconds = generator_net.eval(), time.perf_counter() - start
    return run


# ----------------------------------------------------------------------------- P45 StreamDiT (moving buffer)

def buffer_times(n_frames: int, chunks: int, tau: Tensor) -> Tensor:
    """Per-frame angles of a StreamDiT buffer: frame f in chunk c = f // (n_frames / chunks) has
    t = pi/2 (c + tau) / chunks, so noise grows along the buffer (oldest = cleanest). tau (B,) in [0, 1]."""
    chunk = torch.arange(n_frames) // (n_frames // chunks)
    return HALF_PI * (chunk[None].float() + tau[:, None]) / chunks                   # (B, n_frames)


def train_stream_teacher(net: TrigFlowNet, *, buffer: int = 8, chunk_options: tuple[int, ...] = (1, 2, 4, 8),
                         steps: int, batch_size: int = 128, lr: float = 2e-3, seed: int = 0, desc: str = "StreamDiT") -> Run:
    """StreamDiT training (P45): flow matching on a buffer of frames with per-frame noise levels.

    Each batch draws a partitioning (number of chunks K from ``chunk_options``: StreamDiT's mixed
    training, K = 1 is uniform noise, K = buffer is diagonal/per-frame) and a phase tau ~ U(0, 1);
    frame times follow ``buffer_times``; loss = ||F(x_t, t) - v||^2 per frame."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    stepper, run, start = Stepper(net.parameters(), total=steps, lr=lr, warmup=min(100, steps // 10), desc=desc), Run(net), time.perf_counter()
    for step in range(steps):
        x0 = stream_sample(batch_size, buffer, gen)
        K = chunk_options[int(torch.randint(0, len(chunk_options), (1,), generator=gen))]
        t = buffer_times(buffer, K, torch.rand(batch_size, generator=gen))              # (B, L)
        z = torch.randn(x0.shape, generator=gen)
        x_t = torch.cos(t)[..., None] * x0 + torch.sin(t)[..., None] * z
        v = torch.cos(t)[..., None] * z - torch.sin(t)[..., None] * x0
        run.log(loss=stepper.step(F.mse_loss(net(x_t, t), v), f"step {step}"))
    stepper.close()
    run.model, run.seconds = net.eval(), time.perf_counter() - start
    return run


def _stream_x0(net: TrigFlowNet, x: Tensor, t: Tensor) -> Tensor:
    return torch.cos(t)[..., None] * x - torch.sin(t)[..., None] * net(x, t)


def _ddim_to(x: Tensor, x0: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
    """Deterministic DDIM move of every frame from t to t_next given its x_0 prediction."""
    eps = (x - torch.cos(t)[..., None] * x0) / torch.sin(t).clamp_min(1e-6)[..., None]
    return torch.cos(t_next)[..., None] * x0 + torch.sin(t_next)[..., None] * eps


@torch.no_grad()
def stream_generate(net: TrigFlowNet, n: int, frames: int, *, buffer: int = 8, chunks: int = 4,
                    steps_per_chunk: int = 8, generator: torch.Generator | None = None,
                    burn_in: int | None = None) -> tuple[Tensor, float]:
    """Stream ``frames`` frames for n streams with a moving buffer (StreamDiT inference).

    The buffer holds ``chunks`` chunks at staggered noise levels; each pass denoises all frames
    by (pi/2)/(chunks x steps_per_chunk); after ``steps_per_chunk`` passes the cleanest chunk
    reaches t = 0, leaves the buffer and a fresh noise chunk enters. Returns (frames (n, F, 2),
    network evaluations per emitted frame). The buffer starts as pure noise at its staggered
    levels, so the first ``burn_in`` chunks (default: one buffer) are generated and dropped."""
    per = buffer // chunks
    dt = HALF_PI / (chunks * steps_per_chunk)
    t = buffer_times(buffer, chunks, torch.ones(n))                                     # (n, L): chunk c at (c+1)/K
    x = torch.randn((n, buffer, 2), generator=generator)
    out, passes = [], 0
    burn_in = chunks if burn_in is None else burn_in
    while sum(o.shape[1] for o in out) < frames + burn_in * per:
        for _ in range(steps_per_chunk):
            t_next = (t - dt).clamp_min(0.0)
            x = _ddim_to(x, _stream_x0(net, x, t), t, t_next)
            t, passes = t_next, passes + 1
        out.append(x[:, :per])
        x = torch.cat([x[:, per:], torch.randn((n, per, 2), generator=generator)], 1)
        t = torch.cat([t[:, per:], torch.full((n, per), HALF_PI)], 1)
    return torch.cat(out, 1)[:, burn_in * per:burn_in * per + frames], round(passes / (len(out) * per), 3)


def distill_stream(teacher: TrigFlowNet, student: TrigFlowNet, *, buffer: int = 8, chunks: int = 4,
                   teacher_steps: int = 8, steps: int, batch_size: int = 128, lr: float = 5e-4, seed: int = 0,
                   desc: str = "StreamDiT distill") -> Run:
    """StreamDiT's multistep distillation (P45): in each segment of the chosen partitioning, one
    student pass replaces ``teacher_steps`` teacher passes.

    Buffer states at segment starts (frame times at (c+1)/K, c = chunk) are made by noising data;
    the teacher runs ``teacher_steps`` DDIM passes to the segment end (times c/K); the student's
    one pass must land there: its x_0 prediction is regressed onto the x_0 that makes one DDIM
    step from the start reach the teacher's end state (``consistency_loss``)."""
    _frozen(teacher)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    stepper, run, start = Stepper(student.parameters(), total=steps, lr=lr, schedule="constant", desc=desc), Run(student), time.perf_counter()
    dt = HALF_PI / (chunks * teacher_steps)
    for step in range(steps):
        x0 = stream_sample(batch_size, buffer, gen)
        t0 = buffer_times(buffer, chunks, torch.ones(batch_size))
        x = torch.cos(t0)[..., None] * x0 + torch.sin(t0)[..., None] * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            xs, t = x, t0
            for _ in range(teacher_steps):
                t_next = (t - dt).clamp_min(0.0)
                xs = _ddim_to(xs, _stream_x0(teacher, xs, t), t, t_next)
                t = t_next
            # the x_0 that carries x (at t0) to xs (at t) in one DDIM step
            ratio = torch.sin(t) / torch.sin(t0)
            target = (xs - ratio[..., None] * x) / (torch.cos(t) - ratio * torch.cos(t0))[..., None]
        run.log(loss=stepper.step(consistency_loss(_stream_x0(student, x, t0), target), f"step {step}"))
    stepper.close()
    run.model, run.seconds = student.eval(), time.perf_counter() - start
    return run


# ----------------------------------------------------------------------------- P56 language-style model and TopKLD

def to_grid(x: Tensor, grid: int = 32, lim: float = 1.25) -> Tensor:
    """2-D points in [-lim, lim]^2 -> (n, 2) integer bins on a grid x grid lattice (clamped)."""
    return ((x + lim) / (2 * lim) * grid).long().clamp(0, grid - 1)


def from_grid(tokens: Tensor, grid: int = 32, lim: float = 1.25) -> Tensor:
    """Bin centres of (n, 2) grid tokens."""
    return (tokens.float() + 0.5) / grid * (2 * lim) - lim


def ring_grid_log_probs(grid: int = 32, lim: float = 1.25, n: int = 400_000, seed: int = 0) -> Tensor:
    """log P(bin) of the ring toy on the grid, (grid, grid), from ``n`` exact samples (+1e-9 floor)."""
    tok = to_grid(ring_sample(n, torch.Generator().manual_seed(seed))[0], grid, lim)
    counts = torch.bincount(tok[:, 0] * grid + tok[:, 1], minlength=grid * grid).double() + 1e-9
    return (counts / counts.sum()).log().reshape(grid, grid).float()


def grid_kl(true_log_probs: Tensor, model_log_probs: Tensor) -> float:
    """KL(P_true || P_model) over the grid, in nats: exact for an AR model's full table."""
    p = true_log_probs.double().exp()
    return (p * (true_log_probs.double() - model_log_probs.double())).sum().item()


def train_ar(model: ARGridModel, tokens: Tensor, *, steps: int, batch_size: int = 256, lr: float = 2e-3,
             seed: int = 0, teacher: ARGridModel | None = None, loss: str = "ce", k: int = 4,
             desc: str = "AR") -> Run:
    """Train a grid AR model by next-token cross-entropy (``loss="ce"``), or distil ``teacher`` into
    it on the same token sequences: ``"forward_kl"`` or ``"topkld"`` (``topk_kld`` with ``k``)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if loss != "ce" and teacher is None:
        raise ValueError(f"loss {loss!r} needs a teacher")
    stepper, run, start = Stepper(model.parameters(), total=steps, lr=lr, desc=desc), Run(model), time.perf_counter()
    for step in range(steps):
        tok = tokens[torch.randint(0, len(tokens), (batch_size,), generator=gen)]
        logits = model(tok).reshape(-1, model.grid)                                          # (2B, G)
        if loss == "ce":
            value = F.cross_entropy(logits, tok.reshape(-1))
        else:
            with torch.no_grad():
                t_logits = teacher(tok).reshape(-1, model.grid)
            value = forward_kl(logits, t_logits) if loss == "forward_kl" else topk_kld(logits, t_logits, k=k)
        run.log(loss=stepper.step(value, f"step {step}"))
    stepper.close()
    run.model, run.seconds = model.eval(), time.perf_counter() - start
    return run
