"""Exercise checks of notebook 04 (ranking distillation: Margin-MSE, RankNet, PLD, MRR)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _score_lists(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student_scores, teacher_scores) (B, 1+K), positive first, on three scales."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, n, generator=g) * s, torch.randn(b, n, generator=g) * s + off)
            for b, n, s, off in ((4, 2, 1.0, 0.0), (6, 5, 10.0, 3.0), (1, 9, 0.3, -20.0))]


def check_margin_mse(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_scores, teacher_scores)`` -> Margin-MSE, the mean over queries and
    negatives of ((s_0 - s_k) - (t_0 - t_k))^2 (the positive at index 0)."""
    from cookbook.losses.ranking import margin_mse_loss
    return check("margin_mse", fn, margin_mse_loss, _score_lists())


def check_ranknet(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_scores, target_scores)`` -> RankNet with hard targets: mean over pairs
    i < j of BCE-with-logits(s_i - s_j, P_ij), P_ij = 1 if r_i > r_j, 0 if r_i < r_j, 1/2 if equal."""
    from cookbook.losses.ranking import ranknet_loss
    cases = [(s, torch.round(t)) for s, t in _score_lists(1)]          # rounding makes ties happen
    return check("ranknet", fn, lambda s, r: ranknet_loss(s, r, soft=False), cases)


def check_mrr_at_10(fn: Callable) -> bool | None:
    """Exercise: ``fn(scores, relevant)`` -> MRR@10 (a float): the mean over queries of 1 / rank of
    the relevant document, 0 when it ranks below 10th. Compared with ranx (``cookbook.metrics``)."""
    from cookbook.metrics import ranking_metrics
    g = torch.Generator().manual_seed(4)
    cases = []
    for q, d in ((5, 12), (30, 40), (3, 3)):
        scores = torch.randn(q, d, generator=g)
        cases.append((scores, torch.randint(0, d, (q,), generator=g)))
    return check("mrr@10", fn, lambda s, r: torch.tensor(ranking_metrics(s, r, ("mrr@10",))["mrr@10"]),
                 [(s, r) for s, r in cases], atol=1e-6)
