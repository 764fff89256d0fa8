"""Exercise checks of notebook 08b (bits per byte by hand, StochasTok's splits, one LP constraint)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cookbook.exercises import check


def check_bits_per_byte(fn: Callable) -> bool | None:
    """Exercise: ``fn(token_nlls, text)`` -> bits per UTF-8 byte of ``text`` from its per-token NLLs (nats)."""
    from cookbook.metrics import bits_per_byte

    cases = [([1.0, 2.0, 0.5], "abc"), ([0.7] * 4, "héllo wörld"), ([3.2, 0.1], "数据 mix")]
    return check("bits_per_byte", lambda nll, t: torch.tensor(fn(list(nll), t)),
                 lambda nll, t: torch.tensor(bits_per_byte(sum(nll), len(t.encode("utf-8")))), cases)


def check_stochastok_splits(fn: Callable) -> bool | None:
    """Exercise: ``fn(token, vocab)`` -> sorted list of (left, right) strings, both in ``vocab``, left + right == token."""
    vocab_a = {"s", "t", "r", "a", "w", "st", "ra", "raw", "straw", "traw", "aw", "tra"}
    vocab_b = {"1", "2", "3", "12", "23", "123"}
    cases = [("straw", vocab_a), ("raw", vocab_a), ("123", vocab_b), ("12", vocab_b), ("1", vocab_b)]

    def reference(token, vocab):
        return sorted((token[:j], token[j:]) for j in range(1, len(token))
                      if token[:j] in vocab and token[j:] in vocab)

    def as_tensor(pairs):  # compare lists of string pairs through a stable numeric encoding
        return torch.tensor([[hash(a) % 9973, hash(b) % 9973] for a, b in pairs] or [[-1, -1]], dtype=torch.float64)

    return check("stochastok_splits", lambda t, v: as_tensor(sorted(fn(t, set(v)))),
                 lambda t, v: as_tensor(reference(t, v)), cases, atol=0)


def check_alpha_interval(fn: Callable) -> bool | None:
    """Exercise: ``fn(merge_counts, rival_counts)`` -> (lo, hi): the alpha of category A (B gets 1 - alpha)
    for which the merged pair is at least as frequent as the rival in the mixture; counts are
    per byte, (A, B) pairs; (nan, nan) when no alpha in [0, 1] satisfies it."""

    def reference(m, r):
        d_a, d_b = m[0] - r[0], m[1] - r[1]  # need alpha d_a + (1 - alpha) d_b >= 0
        if d_a >= 0 and d_b >= 0:
            out = [0.0, 1.0]
        elif d_a < 0 and d_b < 0:
            out = [math.nan, math.nan]
        else:
            cut = d_b / (d_b - d_a)
            out = [cut, 1.0] if d_a >= 0 else [0.0, cut]
        return torch.tensor(out, dtype=torch.float64)

    cases = [((0.30, 0.10), (0.20, 0.25)), ((0.10, 0.30), (0.25, 0.20)), ((0.5, 0.5), (0.1, 0.2)),
             ((0.1, 0.1), (0.2, 0.3))]
    return check("alpha_interval", lambda m, r: torch.nan_to_num(torch.tensor(fn(m, r), dtype=torch.float64), nan=-1.0),
                 lambda m, r: torch.nan_to_num(reference(m, r), nan=-1.0), cases, atol=1e-9)


__all__ = ["check_alpha_interval", "check_bits_per_byte", "check_stochastok_splits"]
