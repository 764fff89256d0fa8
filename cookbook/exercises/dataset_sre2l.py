"""Exercise checks of notebook 03c (SRe2L-style dataset distillation: CV-DD, INFER)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def check_bn_matching_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(bn_inputs, running_means, running_vars, first_multiplier)`` -> SRe2L's R_BN, a
    scalar: over the layers l (in order), a_l * (||mean_l - running_mean_l||_2 + ||var_l - running_var_l||_2)
    with the batch's per-channel mean and *biased* variance over (batch, height, width), plain
    (not squared) L2 norms, a_1 = first_multiplier and a_l = 1 after."""
    from cookbook.losses.dataset import bn_matching_loss

    g = torch.Generator().manual_seed(0)
    cases = []
    for shapes, mult in ((((4, 3, 5, 5),), 10.0), (((6, 2, 4, 4), (6, 5, 2, 2)), 1.0), (((3, 4, 1, 1), (3, 4, 3, 3), (3, 2, 2, 2)), 10.0)):
        feats = [torch.randn(s, generator=g, dtype=torch.float64) * 2 + 1 for s in shapes]
        means = [torch.randn(s[1], generator=g, dtype=torch.float64) for s in shapes]
        var = [torch.rand(s[1], generator=g, dtype=torch.float64) * 3 for s in shapes]
        cases.append((feats, means, var, mult))
    return check("bn_matching_loss", fn, lambda f, m, v, a: bn_matching_loss(f, m, v, first_multiplier=a), cases, atol=1e-8)


def _committee_reference(member_logits, priors, temperature):
    from cookbook.losses.dataset import vote_logits, vote_weights

    return vote_logits(member_logits, vote_weights(priors, temperature))


def check_committee_soft_label(fn: Callable) -> bool | None:
    """Exercise: ``fn(member_logits, priors, temperature)`` -> CV-DD's committee soft label (B, C):
    votes w = softmax(priors / temperature), then sum_k w_k * member_logits[k] (logits, not probabilities)."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for k, b, c, tau in ((2, 4, 10, 5.0), (4, 3, 6, 10.0), (3, 1, 2, 0.5)):
        logits = [torch.randn(b, c, generator=g, dtype=torch.float64) * 3 for _ in range(k)]
        cases.append((logits, torch.rand(k, generator=g, dtype=torch.float64) * 10 + 60, tau))
    return check("committee_soft_label", fn, _committee_reference, cases, atol=1e-8)


def check_infer_budget(fn: Callable) -> bool | None:
    """Exercise: ``fn(ipc, num_classes, num_members)`` -> INFER's (K, stored images, training images):
    K = floor(ipc / (1 + M / C)) real images per class; stored = K * C + K * M; training = K * C * (M + 1)."""
    from cookbook.methods.dataset import infer_budget

    cases = [(10, 10, 4), (10, 100, 4), (50, 10, 4), (1, 10, 4), (2, 4, 4), (2, 3, 4), (1, 1000, 1)]
    return check("infer_budget", lambda *a: torch.tensor(fn(*a)), lambda *a: torch.tensor(infer_budget(*a)), cases, atol=0)
