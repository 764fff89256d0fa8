"""Exercise checks of notebook 03b (fair synthetic tabular data, P16)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _binary_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(pred, labels, groups) binary triples: balanced, skewed, and three groups."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for n, k, p in ((40, 2, 0.5), (97, 2, 0.2), (60, 3, 0.7)):
        groups = torch.arange(n) % k                     # every group present
        labels = (torch.rand(n, generator=g) < p).long()
        labels[:2 * k] = torch.arange(2 * k) // k        # every group sees both labels
        pred = ((torch.rand(n, generator=g) < 0.4 + 0.2 * groups / k) ^ (labels == 1)).long()
        cases.append((pred, labels, groups))
    return cases


def check_demographic_parity_gap(fn: Callable) -> bool | None:
    """Exercise: ``fn(pred, groups)`` -> max_g P(pred=1 | g) - min_g P(pred=1 | g) (a float)."""
    from cookbook.metrics import demographic_parity_gap
    cases = [(p, gr) for p, _, gr in _binary_cases()]
    return check("demographic_parity_gap", fn, demographic_parity_gap, cases)


def check_equalized_odds_gap(fn: Callable) -> bool | None:
    """Exercise: ``fn(pred, labels, groups)`` -> the larger of the TPR gap and the FPR gap."""
    from cookbook.metrics import equalized_odds_gap
    return check("equalized_odds_gap", fn, equalized_odds_gap, _binary_cases(1))


def check_distance_covariance(fn: Callable) -> bool | None:
    """Exercise: ``fn(mu, logvar, s, num_groups)`` -> FairDisCo's V^2(p(z, s), p(z)p(s))."""
    from cookbook.losses.fairness import distance_covariance_loss
    g = torch.Generator().manual_seed(3)
    cases = []
    for b, d, k, shift in ((12, 2, 2, 0.0), (20, 3, 2, 1.5), (15, 2, 3, 0.5)):
        s = torch.arange(b) % k
        mu = torch.randn(b, d, generator=g) + shift * s[:, None]
        cases.append((mu, torch.randn(b, d, generator=g) * 0.3 - 1.0, s, k))
    return check("distance_covariance_loss", fn, distance_covariance_loss, cases, atol=1e-6)
