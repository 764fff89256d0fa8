"""Losses of fair representation learning and of its distillation (notebook 03b, paper P16).

P16 (Sikder, Ramachandranpillai, de Leng, Heintz, *Generating Synthetic Fair Syntax-agnostic
Data by Learning and Distilling Fair Representation*, 2024, arXiv 2408.10755) first learns a fair
latent z with a VAE whose loss adds a distance-covariance-type penalty between z and the
sensitive attribute s (FairDisCo, Liu et al., ICLR 2023, the code the FLDGM / P16 authors reuse),
then distils that latent into a smaller encoder with a *quality* loss and a KL *utility* loss.

Symbols: mu, logvar (B, D) the Gaussian posterior q(z|x, s) = N(mu, diag exp(logvar)); s (B,)
group ids in 0..G-1; teacher_z / student_z (B, D) latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_finite_param, check_labels, check_pair, check_tensor, check_values


def _check_posterior(mu: Tensor, logvar: Tensor) -> None:
    check_tensor("mu", mu, ndim=2)
    check_tensor("logvar", logvar, ndim=2)
    if mu.shape != logvar.shape or mu.numel() == 0:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same non-empty shape (B, D)")
    check_values("mu", mu)
    check_values("logvar", logvar)


def gaussian_overlap_matrix(mu: Tensor, var: Tensor) -> Tensor:
    """K[i, j] = int q_i(z) q_j(z) dz = N(mu_i - mu_j; 0, diag(var_i + var_j)) for diagonal Gaussians (B, B)."""
    v = var[:, None] + var[None]                                             # (B, B, D)
    expo = -0.5 * ((mu[:, None] - mu[None]) ** 2 / v).sum(-1)                # (B, B)
    log_norm = 0.5 * torch.log(2 * math.pi * v).sum(-1)                      # (B, B)
    return torch.exp(expo - log_norm)


def distance_covariance_loss(mu: Tensor, logvar: Tensor, s: Tensor, num_groups: int) -> Tensor:
    """FairDisCo's dependence penalty V^2(p(z, s), p(z) p(s)) between the latent and s (scalar).

    With p(z) the batch mixture of the posteriors and p(z|g) the mixture over group g, and
    k(i, j) = int q_i(z) q_j(z) dz = N(mu_i - mu_j; 0, Sigma_i + Sigma_j) (closed form),

        V^2 = sum_g p(g)^2 * ( <p(z), p(z)> + <p(z|g), p(z|g)> - 2 <p(z|g), p(z)> )
            = sum_g p(g)^2 * || p(z|g) - p(z) ||^2_{L2}

    which is 0 exactly when every group has the same latent distribution (z independent of s).
    Groups absent from the batch, or making up all of it, add nothing (as in the official code).
    Shapes: mu, logvar (B, D), s (B,) int64. Cost O(B^2 D).

    Paper: Liu et al., *Fair Disentanglement ... via Distance Covariance* (FairDisCo), ICLR 2023;
    used as the fair representation of P16 (arXiv 2408.10755) and FLDGM (ECAI 2023).
    """
    _check_posterior(mu, logvar)
    check_labels(s, num_groups, shape=(len(mu),), name="s")
    K = gaussian_overlap_matrix(mu, logvar.exp())                          # (B, B), computed once
    total = K.mean()
    loss = mu.new_zeros(())
    for g in range(num_groups):
        m = s == g
        n_g = int(m.sum())
        if 0 < n_g < len(s):
            loss = loss + (n_g / len(s)) ** 2 * (total + K[m][:, m].mean() - 2 * K[m].mean())
    return loss


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over D, mean over the batch (scalar).

    KL = -1/2 sum_d (1 + logvar_d - mu_d^2 - exp(logvar_d)). The VAE prior term (Kingma and
    Welling 2014) of the FairDisCo / P16 teacher.
    """
    _check_posterior(mu, logvar)
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()


def categorical_reconstruction_loss(logits: Tensor, codes: Tensor, cards: list[int]) -> Tensor:
    """Sum over features f of CE(logits block f, codes[:, f]), each a mean over the batch (scalar).

    logits (B, sum(cards)): one block of cards[f] logits per feature; codes (B, F) int64.
    The reconstruction term of FairDisCo's tabular VAE (``calculate_re``), used by P16: every
    column, numeric ones binned, is a categorical variable ("syntax-agnostic" tabular data).
    """
    check_tensor("logits", logits, ndim=2)
    check_tensor("codes", codes, ndim=2)
    if logits.shape[1] != sum(cards) or codes.shape[1] != len(cards) or len(codes) != len(logits):
        raise ValueError(f"logits {tuple(logits.shape)} / codes {tuple(codes.shape)} do not fit cards (sum {sum(cards)}, {len(cards)} features)")
    loss, start = logits.new_zeros(()), 0
    for f, k in enumerate(cards):
        loss = loss + F.cross_entropy(logits[:, start:start + k], codes[:, f])
        start += k
    return loss


def latent_quality_loss(student_z: Tensor, teacher_z: Tensor) -> Tensor:
    """P16's quality loss: mean squared error between the student's and the teacher's fair latent.

    L_Q = 1/(B D) sum_i ||z_S,i - z_T,i||^2 (mean over batch and dimensions). It carries the
    fairness of the teacher's latent into the student ("for fair distillation").
    Paper: P16, arXiv 2408.10755 (the squared-error form is our reading; no code is published).
    """
    check_pair(student_z, teacher_z, "latents")
    return F.mse_loss(student_z, teacher_z)


def latent_utility_loss(student_z: Tensor, teacher_z: Tensor, T: float = 1.0) -> Tensor:
    """P16's utility loss: KL(softmax(z_T / T) || softmax(z_S / T)) over latent dims, batch mean.

    Matches the *shape* of each latent (which dimensions dominate) rather than its values, the
    KL-based term P16 adds "for data utility". Invariant to adding a constant to a latent.
    Paper: P16, arXiv 2408.10755 (softmax over the latent dimensions is our reading).
    """
    check_pair(student_z, teacher_z, "latents")
    check_finite_param("temperature T", T, low=0.0, low_open=True)
    log_p_t = F.log_softmax(teacher_z / T, dim=-1)
    log_p_s = F.log_softmax(student_z / T, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
