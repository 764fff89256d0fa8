"""Few-step diffusion distillation losses (notebooks 07a/07b), in TrigFlow symbols.

x_t = cos(t) x_0 + sin(t) z (sigma_d = 1); D(x_t, t) is a denoiser (an x_0 prediction), F a
v-prediction; x_g = G_theta(z) is a generator's output. Every loss is a pure function of tensors
the caller computed (network outputs keep their autograd paths) and returns a scalar: a sum over
the non-batch dimensions, averaged over the batch, unless the docstring says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_finite_param, check_pair, check_tensor, check_values


def _bcast(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() > 0 else t


def _per_sample_sum(x: Tensor) -> Tensor:
    return x.flatten(1).sum(1) if x.dim() > 1 else x


def _same_shape(**tensors: Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    for name, v in tensors.items():
        check_tensor(name, v)
        check_values(name, v)
    if len(set(shapes.values())) != 1:
        raise ValueError(f"shapes must match: {shapes}")
    if next(iter(tensors.values())).numel() == 0:
        raise ValueError("empty batch")


def sid_generator_loss(teacher_x0: Tensor, fake_x0: Tensor, x_g: Tensor, *, alpha: float = 1.2) -> Tensor:
    r"""Score identity Distillation generator loss (SiD; few-step SiD is P25).

    .. math:: L_\theta = \frac{(D_\phi - D_\psi)^\top\,[(D_\phi - x_g) - \alpha (D_\phi - D_\psi)]}
              {\operatorname{sg}(\operatorname{mean}|x_g - D_\phi|)}

    with D_phi the frozen teacher's and D_psi the fake-score network's denoisers at
    x_t = cos t x_g + sin t z, gradients flowing through x_g and x_t into the generator (the two
    networks' weights are not updated by this loss). alpha = 1.2 is the paper's default; the
    normaliser is the DMD-style per-sample mean absolute error of the official code.
    Shapes: all (B, ...) -> scalar (per-sample sum, batch mean).
    Papers: Zhou et al., "Score identity Distillation" (ICML 2024, arXiv 2404.04057); Zhou et al.,
    "Few-Step Diffusion via Score identity Distillation" (2025, arXiv 2505.12674).
    """
    _same_shape(teacher_x0=teacher_x0, fake_x0=fake_x0, x_g=x_g)
    check_finite_param("alpha", alpha)
    with torch.no_grad():
        weight = (x_g - teacher_x0).abs().flatten(1).mean(1).clamp_min(1e-5)    # (B,)
    diff = teacher_x0 - fake_x0
    per = _per_sample_sum(diff * ((teacher_x0 - x_g) - alpha * diff))
    return (per / weight).mean()


def vsd_loss(x_g: Tensor, teacher_x0: Tensor, fake_x0: Tensor, t: Tensor) -> Tensor:
    r"""Variational score distillation (SwiftBrush, P66; ProlificDreamer's VSD) as a surrogate loss.

    The VSD gradient with respect to the student image, with the weight w(t) = sigma_t^2, is
    w(t) (eps_phi - eps_psi) = -sin t cos t (D_phi - D_psi) in x_0 terms (eps = (x_t - cos t D)/sin t).
    It is applied through 0.5 ||x_g - sg(x_g - grad)||^2, whose gradient in x_g is exactly ``grad``;
    the teacher (phi) and the student-score (psi, SwiftBrush's LoRA teacher) predictions are treated
    as constants. Shapes: x_g, teacher_x0, fake_x0 (B, ...); t (B,) -> scalar (per-sample sum, batch mean).
    Papers: Nguyen & Tran, "SwiftBrush" (CVPR 2024, arXiv 2312.05239); Wang et al., "ProlificDreamer"
    (NeurIPS 2023, arXiv 2305.16213).
    """
    _same_shape(x_g=x_g, teacher_x0=teacher_x0, fake_x0=fake_x0)
    tt = _bcast(t.to(x_g.dtype), x_g)
    grad = (-torch.sin(tt) * torch.cos(tt) * (teacher_x0 - fake_x0)).detach()
    return 0.5 * _per_sample_sum((x_g - (x_g - grad).detach()) ** 2).mean()


def denoising_loss(pred_x0: Tensor, x0: Tensor) -> Tensor:
    """Denoising score matching in x_0 form, ||D(x_t, t) - x_0||^2: trains the fake-score network on
    the generator's samples (SiD, SwiftBrush, DMD). Shapes (B, ...) -> scalar (per-sample sum, batch mean)."""
    _same_shape(pred_x0=pred_x0, x0=x0)
    return _per_sample_sum((pred_x0 - x0.detach()) ** 2).mean()


def consistency_loss(student_x0: Tensor, target_x0: Tensor) -> Tensor:
    r"""Consistency distillation: ||f_theta(x_{t_{n+1}}, t_{n+1}) - sg(f_{theta^-}(\hat x_{t_n}, t_n))||^2,
    the squared-L2 metric of Song et al., "Consistency Models" (ICML 2023, arXiv 2303.01469), with
    \hat x_{t_n} one teacher DDIM step from x_{t_{n+1}}. Also StreamDiT's per-segment distillation
    loss (student jump vs the teacher's multi-step segment). Shapes (B, ...) -> scalar."""
    _same_shape(student_x0=student_x0, target_x0=target_x0)
    return _per_sample_sum((student_x0 - target_x0.detach()) ** 2).mean()


def scm_tangent(F_minus: Tensor, F_minus_jvp: Tensor, dxt_dt: Tensor, x_t: Tensor, t: Tensor, *,
                r: float = 1.0, c: float = 0.1) -> Tensor:
    r"""sCM's normalised tangent g / (||g|| + c), g = -cos^2 t (F^- - dx_t/dt) - r (cos t sin t x_t + J)
    (see ``scm_loss``); per-sample norm over the non-batch dims. Shapes (B, ...) and t (B,) -> (B, ...)."""
    _same_shape(F_minus=F_minus, F_minus_jvp=F_minus_jvp, dxt_dt=dxt_dt, x_t=x_t)
    check_finite_param("r", r, 0.0, 1.0)
    check_finite_param("c", c, 0.0)
    tt = _bcast(t.to(x_t.dtype), x_t)
    cos, sin = torch.cos(tt), torch.sin(tt)
    g = -cos * cos * (F_minus - dxt_dt) - r * (cos * sin * x_t + F_minus_jvp)
    norm = g.flatten(1).norm(dim=1).reshape_as(tt) if g.dim() > 1 else g.abs()
    return g / (norm + c)


def scm_loss(F_theta: Tensor, F_minus: Tensor, F_minus_jvp: Tensor, dxt_dt: Tensor, x_t: Tensor, t: Tensor, *,
             r: float = 1.0, c: float = 0.1, logvar: Tensor | None = None) -> Tensor:
    r"""Continuous-time consistency distillation loss, sCM (as used by SANA-Sprint, P35), sigma_d = 1.

    .. math::
        g = -\cos^2 t\,(F_{\theta^-} - \tfrac{dx_t}{dt}) - r\,(\cos t \sin t\, x_t + J),\quad
        g \leftarrow g / (\|g\| + c),\quad
        L = \frac{w(t)}{e^{u(t)}} \|F_\theta - F_{\theta^-} - g\|^2 + u(t),\quad w(t) = 1/\tan t

    J = ``F_minus_jvp`` is the JVP of F_{theta^-} along (cos t sin t dx_t/dt, cos t sin t), i.e.
    cos t sin t dF/dt along the teacher's probability-flow ODE; dx_t/dt = F_teacher(x_t, t);
    r is the tangent warm-up (0 -> 1), c the tangent normalisation constant (0.1 in the paper),
    u = ``logvar`` the optional adaptive weight (B,). Returns the mean over all elements (as the
    official code). Papers: Lu & Song, "Simplifying, Stabilizing and Scaling Continuous-Time
    Consistency Models" (ICLR 2025, arXiv 2410.11081); Chen et al., "SANA-Sprint" (2025, arXiv 2503.09641).
    """
    _same_shape(F_theta=F_theta, F_minus=F_minus)
    g = scm_tangent(F_minus, F_minus_jvp, dxt_dt, x_t, t, r=r, c=c).detach()
    tt = _bcast(t.to(x_t.dtype), x_t)
    weight = 1.0 / torch.tan(tt).clamp_min(1e-4)
    sq = (F_theta - F_minus.detach() - g) ** 2
    if logvar is None:
        return (weight * sq).mean()
    u = _bcast(logvar, x_t)
    return (weight / torch.exp(u) * sq + u).mean()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """LADD / SANA-Sprint discriminator hinge loss, 0.5 (mean relu(1 - D(real)) + mean relu(1 + D(fake))).
    Sauer et al., "Fast High-Resolution Image Synthesis with Latent Adversarial Diffusion Distillation"
    (2024, arXiv 2403.12015)."""
    check_tensor("real_logits", real_logits)
    check_tensor("fake_logits", fake_logits)
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """The generator side of the hinge GAN: -mean D(fake) (LADD, SANA-Sprint)."""
    check_tensor("fake_logits", fake_logits)
    return -fake_logits.mean()


def topk_kld(student_logits: Tensor, teacher_logits: Tensor, *, k: int, T: float = 1.0) -> Tensor:
    r"""TopKLD (P56), as we read it: the forward KL split into the teacher's top-k tokens K
    ("explicit knowledge") and the tail ("implicit knowledge"), with the head's part reversed.

    .. math:: L = \mathrm{KL}(b_p \| b_q) + P_K\,\mathrm{KL}(\hat q_K \| \hat p_K)
              + (1 - P_K)\,\mathrm{KL}(\hat p_{\bar K} \| \hat q_{\bar K})

    p = softmax(teacher / T), q = softmax(student / T); b = (P(K), 1 - P(K)) the head/tail masses;
    hats are the distributions renormalised inside K or its complement. Mode-seeking on the few
    tokens the teacher is sure of, mode-covering on the rest; L = 0 iff q = p. k = 0 gives the
    forward KL (the decomposition of Chen et al.'s DKD), k = V the reverse KL. The exact form and
    weights of the paper were not checked (its full text was not available offline): this is our
    reading of its abstract. A plain "reverse KL on the top-k entries + forward KL on the rest"
    without renormalising is not a divergence (the student lowers it by moving mass off the head;
    it failed on our toy), hence the renormalised parts.
    Shape: (N, V) logits -> scalar (mean over rows).
    Paper: Ding et al., "Dissecting Bit-Level Scaling Laws in Quantizing Vision Generative Models"
    (2025, arXiv 2501.06218).
    """
    check_pair(student_logits, teacher_logits)
    check_finite_param("T", T, 0.0, low_open=True)
    V = teacher_logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= V:
        raise ValueError(f"k must be an int in [0, V={V}], got {k!r}")
    logq = F.log_softmax(student_logits / T, -1)
    logp = F.log_softmax(teacher_logits.detach() / T, -1)
    head = torch.zeros_like(logp, dtype=torch.bool)
    if k > 0:
        head.scatter_(-1, logp.topk(k, dim=-1).indices, True)
    neg = torch.finfo(logp.dtype).min

    def part(logx: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(log mass of the part (N,), log of the renormalised distribution inside it (N, V))."""
        lse = torch.logsumexp(torch.where(mask, logx, torch.full_like(logx, neg)), -1)
        return lse, logx - lse[:, None]

    lp_h, lph = part(logp, head)
    lq_h, lqh = part(logq, head)
    lp_t, lpt = part(logp, ~head)
    lq_t, lqt = part(logq, ~head)
    zero = torch.zeros_like(logp)
    P_h, P_t = lp_h.exp(), lp_t.exp()
    binary = torch.where(P_h > 0, P_h * (lp_h - lq_h), 0 * P_h) + torch.where(P_t > 0, P_t * (lp_t - lq_t), 0 * P_t)
    head_rkl = torch.where(head, lqh.exp() * (lqh - lph), zero).sum(-1)
    tail_fkl = torch.where(~head, lpt.exp() * (lpt - lqt), zero).sum(-1)
    return (binary + P_h * head_rkl + P_t * tail_fkl).mean()
