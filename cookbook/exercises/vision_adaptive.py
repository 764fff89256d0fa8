"""Exercise checks of notebook 01c (ACM and Hybrid Distill on a small ViT)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cookbook.exercises import check


def check_acm_prefix(fn: Callable) -> bool | None:
    """Exercise: ``fn(x, w1, b1, w2)`` -> the ACM's outputs after 0..N learners, (..., N + 1, d).

    w1 (d, N * b), b1 (N * b,), w2 (N, b, d); learner i is GELU(x w1[:, i b:(i+1) b] + b1[...]) w2[i].
    """
    from cookbook.models import AdaptiveComputationModule

    cases = []
    for seed, (d, b, n, shape) in enumerate(((8, 4, 3, (5,)), (6, 2, 1, (2, 3)), (4, 5, 4, (1,)))):
        torch.manual_seed(seed)
        acm = AdaptiveComputationModule(d, b, n)
        cases.append((torch.randn(*shape, d), acm.w1.detach(), acm.b1.detach(), acm.w2.detach()))

    def reference(x, w1, b1, w2):
        n, b, d = w2.shape
        acm = AdaptiveComputationModule(d, b, n)
        acm.w1.data, acm.b1.data, acm.w2.data = w1, b1, w2
        return acm.all_outputs(x).detach()

    return check("acm_prefix", fn, reference, cases)


def check_gate_targets(fn: Callable) -> bool | None:
    """Exercise: ``fn(prefix_outputs, target, factor)`` -> int64 (...,) labels in 1..N (ACM phase II)."""
    from cookbook.losses import acm_gate_targets

    g = torch.Generator().manual_seed(3)
    cases = [(torch.randn(7, n + 1, 5, generator=g).cumsum(-2), torch.randn(7, 5, generator=g), f)
             for n, f in ((4, 1.2), (2, 1.05), (6, 2.0))]
    return check("gate_targets", fn, acm_gate_targets, cases)


def check_budget_term(fn: Callable) -> bool | None:
    """Exercise: ``fn(choices, num_learners, target_budget)`` -> | mean(choices) / N - target | (a float).

    choices: int64 (B, T) numbers of learners chosen per token in one ACM."""
    from cookbook.losses import acm_gate_losses

    g = torch.Generator().manual_seed(4)
    cases = [(torch.randint(0, n + 1, (3, 5), generator=g), n, b) for n, b in ((4, 0.5), (4, 0.25), (2, 0.9))]
    return check("budget_term", lambda c, n, b: torch.as_tensor(float(fn(c, n, b))),
                 lambda c, n, b: acm_gate_losses([F.one_hot(c, n + 1).float()], b)["budget"], cases)


def check_restrict_attention(fn: Callable) -> bool | None:
    """Exercise: ``fn(attn, keep)`` -> attention over CLS + kept patches, rows renormalised (Hybrid Distill)."""
    from cookbook.losses import restrict_attention

    g = torch.Generator().manual_seed(5)
    cases = []
    for B, H, N, K in ((2, 3, 6, 3), (1, 4, 16, 8), (3, 1, 4, 1)):
        attn = torch.softmax(torch.randn(B, H, N + 1, N + 1, generator=g), -1)
        keep = torch.stack([torch.randperm(N, generator=g)[:K].sort().values for _ in range(B)])
        cases.append((attn, keep))
    return check("restrict_attention", fn, restrict_attention, cases)


def check_attention_distance(fn: Callable) -> bool | None:
    """Exercise: ``fn(attn, grid)`` -> (H,) mean attention distance in patches (CLS first, then grid^2 patches)."""
    from cookbook.metrics import attention_distance

    g = torch.Generator().manual_seed(6)
    cases = [(torch.softmax(torch.randn(2, h, 1 + n * n, 1 + n * n, generator=g) * s, -1), n)
             for h, n, s in ((4, 4, 1.0), (2, 3, 5.0), (1, 2, 0.1))]
    return check("attention_distance", fn, attention_distance, cases)
