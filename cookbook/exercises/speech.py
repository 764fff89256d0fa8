"""Exercise checks of notebook 09 (speech tokenizers: SpeechTokenizer / DM-Codec / LM-SPT)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _feature_pairs(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student_feats, teacher_feats) pairs (B, T, D): random, correlated, odd sizes."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for b, t, d in ((2, 10, 6), (1, 37, 3), (3, 5, 11)):
        teacher = torch.randn(b, t, d, generator=g)
        cases.append((torch.randn(b, t, d, generator=g), teacher))
        cases.append((teacher + 0.3 * torch.randn(b, t, d, generator=g), teacher))
    return cases


def check_d_axis_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_feats, teacher_feats)`` -> SpeechTokenizer's D-axis loss (scalar)."""
    from cookbook.losses.speech import d_axis_distill_loss
    return check("d_axis_distill_loss", fn, d_axis_distill_loss, _feature_pairs())


def check_si_sdr(fn: Callable) -> bool | None:
    """Exercise: ``fn(estimate, reference)`` -> SI-SDR in dB per row of (N, S) waveforms."""
    from cookbook.metrics import si_sdr
    g = torch.Generator().manual_seed(1)
    cases = []
    for n, s in ((2, 400), (3, 1001)):
        ref = torch.randn(n, s, generator=g)
        cases.append((ref + 0.5 * torch.randn(n, s, generator=g), ref))
        cases.append((0.2 * ref + 1.0 + 0.1 * torch.randn(n, s, generator=g), ref))  # scale and offset
    return check("si_sdr", lambda e, r: fn(e, r).double(), si_sdr, cases, atol=1e-4)


def check_codebook_perplexity(fn: Callable) -> bool | None:
    """Exercise: ``fn(codes, codebook_size)`` -> exp(entropy) of the code histogram (a float)."""
    from cookbook.metrics import codebook_usage
    g = torch.Generator().manual_seed(2)
    cases = [(torch.randint(0, 16, (200,), generator=g), 16), (torch.zeros(50, dtype=torch.long), 8),
             (torch.randint(0, 4, (3, 40), generator=g), 256)]
    return check("codebook perplexity", lambda c, k: torch.tensor(float(fn(c, k))),
                 lambda c, k: torch.tensor(codebook_usage(c, k)["perplexity"]), cases, atol=1e-4)
