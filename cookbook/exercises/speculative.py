"""Exercise checks of notebook 06a (the rejection rule's residual, acceptance metrics from a trace,
the greedy trace from teacher forcing, Token Recycling's matrix update)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _residual_reference(p, q):
    r = (p - q).clamp_min(0)
    return r / r.sum() if r.sum() > 0 else p


def check_residual(fn: Callable) -> bool | None:
    """Exercise: ``fn(p, q)`` -> the distribution (V,) speculative sampling draws from after it
    rejects a draft token: max(0, p - q) renormalised (p itself when p == q)."""
    g = torch.Generator().manual_seed(21)
    cases = [(torch.tensor([0.5, 0.1, 0.3, 0.1]), torch.tensor([0.1, 0.6, 0.2, 0.1])),
             (torch.rand(9, generator=g).softmax(-1), torch.rand(9, generator=g).softmax(-1)),
             (torch.tensor([0.2, 0.8]), torch.tensor([0.2, 0.8]))]
    return check("residual", fn, _residual_reference, cases, atol=1e-6)


def check_acceptance_metrics(fn: Callable) -> bool | None:
    """Exercise: ``fn(accepted, drafted)`` -> (acceptance rate, mean accepted without the bonus,
    mean accepted length with the bonus) of a trace (lists, one entry per target call)."""
    from cookbook.metrics import acceptance_stats

    def reference(accepted, drafted):
        s = acceptance_stats(accepted, drafted)
        return torch.tensor([s["acceptance_rate"], s["mean_accepted"], s["mean_accepted_length"]])

    cases = [([4, 0, 2, 1], [4, 4, 4, 2]), ([5, 5, 5], [5, 5, 5]), ([0, 1, 0, 0, 3], [3, 3, 3, 3, 3])]
    return check("acceptance_metrics", lambda a, d: torch.tensor([float(x) for x in fn(a, d)]), reference, cases)


def check_greedy_trace(fn: Callable) -> bool | None:
    """Exercise: ``fn(matches, gamma)`` -> accepted drafts per target call (list) of greedy
    speculative decoding, from the draft's teacher-forced matches (bool (n,)), blocks shortened at
    the end so that exactly n tokens come out."""
    from cookbook.methods.speculative import greedy_trace

    cases = [(torch.tensor([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], dtype=torch.bool), 3),
             (torch.ones(9, dtype=torch.bool), 4), (torch.zeros(5, dtype=torch.bool), 2),
             (torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool), 5)]
    as_tensor = lambda trace: torch.tensor(list(trace), dtype=torch.float64)   # noqa: E731
    return check("greedy_trace", lambda m, g: as_tensor(fn(m, g)), lambda m, g: as_tensor(greedy_trace(m, g)), cases)


def check_recycling_update(fn: Callable) -> bool | None:
    """Exercise: ``fn(matrix, tokens, target_logits)`` -> Token Recycling's adjacency matrix after one
    target call: the row of each fed token (n,) replaced by the top-k (k = matrix.shape[1]) of its
    target logits (n, V), best first; a token fed twice keeps its later position's candidates."""
    from cookbook.methods.speculative import TokenRecyclingDrafter

    def reference(matrix, tokens, logits):
        tr = TokenRecyclingDrafter(matrix.shape[0], k=matrix.shape[1])
        tr.matrix = matrix.clone().to(torch.int32)
        tr.observe(tokens, logits)
        return tr.matrix

    g = torch.Generator().manual_seed(31)
    cases = [(torch.full((7, 2), -1), torch.tensor([3, 1, 5]), torch.randn(3, 7, generator=g)),
             (torch.randint(7, (7, 3), generator=g), torch.tensor([2, 4, 2]), torch.randn(3, 7, generator=g)),  # 2 twice
             (torch.full((5, 1), -1), torch.tensor([0]), torch.randn(1, 5, generator=g))]
    return check("recycling_update", lambda m, t, lg: fn(m.clone(), t, lg), reference, cases)


__all__ = ["check_acceptance_metrics", "check_greedy_trace", "check_recycling_update", "check_residual"]
