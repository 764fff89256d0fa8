"""Exercise checks of notebook 05a (LLM divergences: reverse KL, TAID, top-k tail)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _llm_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student_logits, teacher_logits) (N, V), including a peaked teacher and a single token."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, v, generator=g) * s, torch.randn(n, v, generator=g) * s)
            for n, v, s in ((6, 11, 1.0), (4, 50, 6.0), (1, 7, 0.3))]


def check_reverse_kl_from_logprobs(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logprobs, teacher_logprobs)`` -> per-token reverse KL(q || p) (N,)
    from log-probabilities (N, V)."""
    from cookbook.losses.llm import reverse_kl
    cases = [(s.log_softmax(-1), t.log_softmax(-1)) for s, t in _llm_cases(5)]
    return check("reverse_kl_from_logprobs", fn,
                 lambda lq, lp: reverse_kl(lq, lp, reduction="none"), cases)


def check_taid_target(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, t)`` -> TAID's interpolated target (N, V):
    softmax((1 - t) log q + t log p) of the detached student and the teacher."""
    from cookbook.losses.llm import taid_target
    cases = [(s, te, t) for (s, te), t in zip(_llm_cases(6), (0.4, 0.0, 1.0))]
    return check("taid_target", fn, lambda s, te, t: taid_target(s, te, t=t), cases)


def check_topk_tail_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, topk_indices, topk_logprobs)`` -> mean over tokens of the
    forward KL over the k + 1 outcomes (the teacher's top-k tokens plus one tail bin)."""
    from cookbook.losses.llm import TopKTeacher, forward_kl
    cases = []
    for (s, t), k in zip(_llm_cases(7), (3, 10, 7)):
        top = TopKTeacher.from_logits(t, k)
        cases.append((s, top.indices, top.logprobs))
    return check("topk_tail_loss", fn,
                 lambda s, idx, lp: forward_kl(s, TopKTeacher(idx, lp)), cases)
