"""Exercise checks of notebook 05b (DAC-KL on a kept set, AdaSPEC's token filter, DDK's update)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cookbook.exercises import check


def _dac_kl_reference(student_logits, teacher_logprobs, keep):
    from cookbook.losses.llm import NEG, row_divergence

    logq = F.log_softmax(student_logits.float().masked_fill(~keep, NEG), dim=-1)
    logp = F.log_softmax(teacher_logprobs.float().masked_fill(~keep, NEG), dim=-1)
    return row_divergence(logq, logp, divergence="forward_kl")


def check_dac_kl_on_kept_set(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logprobs, keep)`` -> per-token KL(p~ || q~) (N,), both
    renormalised over the kept tokens (``keep`` (N, V) bool, at least one per row)."""
    g = torch.Generator().manual_seed(11)
    cases = []
    for n, v, k in ((5, 12, 3), (3, 40, 10), (2, 6, 6)):
        s, t = torch.randn(n, v, generator=g) * 2, torch.randn(n, v, generator=g).log_softmax(-1)
        keep = torch.zeros(n, v, dtype=torch.bool).scatter(1, t.topk(k, -1).indices, True)
        cases.append((s, t, keep))
    return check("dac_kl_on_kept_set", fn, _dac_kl_reference, cases)


def check_adaspec_select(fn: Callable) -> bool | None:
    """Exercise: ``fn(draft_loss, reference_loss, k)`` -> bool (N,) keeping the ceil(k N) tokens with the
    largest draft - reference gap (ties: the earlier token first)."""
    from cookbook.losses.selection import adaspec_select

    g = torch.Generator().manual_seed(12)
    cases = [(torch.rand(10, generator=g), torch.rand(10, generator=g), 0.4),
             (torch.tensor([1.0, 2.0, 2.0, 0.5]), torch.tensor([0.0, 1.0, 1.0, 0.0]), 0.5),   # a tie
             (torch.rand(7, generator=g), torch.zeros(7), 1.0)]
    return check("adaspec_select", lambda d, r, k: fn(d, r, k).float(),
                 lambda d, r, k: adaspec_select(d, r, k).float(), cases)


def check_ddk_update(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_ce, teacher_ce, previous, alpha=0.5)`` -> DDK's new domain weights (N,)."""
    from cookbook.losses.selection import ddk_domain_weights

    cases = [(torch.tensor([2.0, 3.0, 2.5, 4.0]), torch.tensor([1.5, 2.0, 2.4, 2.0]), torch.full((4,), 0.25)),
             (torch.tensor([1.0, 1.2]), torch.tensor([0.9, 0.4]), torch.tensor([0.7, 0.3])),
             (torch.tensor([3.0, 3.0, 3.0]), torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.2, 0.3, 0.5]))]
    return check("ddk_update", lambda s, t, p: fn(s, t, p, alpha=0.5),
                 lambda s, t, p: ddk_domain_weights(s, t, previous=p, smoothing=0.5), cases, atol=1e-6)


__all__ = ["check_adaspec_select", "check_dac_kl_on_kept_set", "check_ddk_update"]
