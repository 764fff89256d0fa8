"""Exercise checks of notebook 03a (dataset distillation: DC, DM, KRR-ST)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def check_gradient_match_distance(fn: Callable) -> bool | None:
    """Exercise: ``fn(grads_syn, grads_real)`` -> DC's distance, a scalar: over every gradient with
    2+ dimensions, viewed as (out, rest), the sum over rows of 1 - cos(g_syn_row, g_real_row)
    (eps 1e-6 in the denominator); 1-d gradients (biases, norm scales) add nothing."""
    from cookbook.losses.dataset import gradient_match_distance

    g = torch.Generator().manual_seed(0)
    cases = []
    for shapes in (((4, 2, 3, 3), (4,)), ((10, 16), (10,), (3, 1, 3, 3)), ((1, 5),)):
        gs = [torch.randn(s, generator=g) for s in shapes]
        gr = [torch.randn(s, generator=g) for s in shapes]
        cases.append((gs, gr))
    same = [torch.randn(3, 4, generator=g)]
    cases.append((same, [2 * same[0]]))                      # parallel rows: distance 0
    return check("gradient_match_distance", fn, gradient_match_distance, cases, atol=1e-4)


def _dm_reference(real_feats, real_labels, syn_feats, syn_labels):
    from cookbook.losses.dataset import mean_embedding_loss

    classes = sorted(set(syn_labels.tolist()))
    return sum(mean_embedding_loss(real_feats[real_labels == c], syn_feats[syn_labels == c]) for c in classes)


def check_dm_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(real_feats, real_labels, syn_feats, syn_labels)`` -> DM's loss over classes,
    sum_c || mean of the real features of class c - mean of the synthetic features of class c ||^2."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for n_r, n_s, d, c in ((20, 3, 4, 2), (50, 10, 8, 5), (30, 30, 2, 3)):
        real_labels = torch.arange(c).repeat(n_r // c + 1)[:n_r]
        syn_labels = torch.arange(c).repeat(n_s // c + 1)[:n_s]
        cases.append((torch.randn(n_r, d, generator=g), real_labels, torch.randn(n_s, d, generator=g), syn_labels))
    return check("dm_loss", fn, _dm_reference, cases, atol=1e-4)


def check_krr_predict(fn: Callable) -> bool | None:
    """Exercise: ``fn(syn_feats, syn_targets, real_feats, ridge)`` -> KRR-ST's predictions on the
    real features: append a constant-1 feature, K_SS = F_S F_S^T, K_RS = F_R F_S^T,
    lam = ridge * trace(K_SS), return K_RS (K_SS + lam I)^-1 Y_S."""
    from cookbook.losses.dataset import krr_predict

    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(n_s, d, generator=g, dtype=torch.float64), torch.randn(n_s, k, generator=g, dtype=torch.float64),
              torch.randn(n_r, d, generator=g, dtype=torch.float64), ridge)
             for n_s, n_r, d, k, ridge in ((5, 7, 3, 2, 1e-6), (10, 4, 20, 6, 1e-2), (3, 3, 1, 1, 0.5))]
    return check("krr_predict", fn, lambda a, b, c, r: krr_predict(a, b, c, ridge=r), cases, atol=1e-6)
