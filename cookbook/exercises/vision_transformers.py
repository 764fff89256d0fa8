"""Exercise checks of notebook 01b (vision KD into transformers: TRG, OFA, DeiT-LT, DMAE)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check, logit_cases

EDGE_CHANGES = ("rotate", "scale_each_token", "add_constant", "project_to_128")


def _edge_term_unchanged() -> dict[str, bool]:
    """The truth for exercise 1: does each change of the student's tokens leave TRG's edge term as it was?"""
    from cookbook.losses import token_relation_loss

    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 16, 64, generator=g), torch.randn(4, 16, 32, generator=g)
    rotation = torch.linalg.qr(torch.randn(64, 64, generator=g))[0]
    changed = {"rotate": s @ rotation,
               "scale_each_token": s * torch.rand(4, 16, 1, generator=g).add(0.1) * 10,
               "add_constant": s + torch.randn(64, generator=g),
               "project_to_128": s @ torch.randn(64, 128, generator=g)}
    base = token_relation_loss(s, t)
    return {k: bool(torch.allclose(token_relation_loss(v, t), base, atol=1e-4)) for k, v in changed.items()}


def check_edge_invariances(fn: Callable) -> bool | None:
    """Exercise: ``fn()`` -> {change: True if TRG's edge term stays the same} for the four EDGE_CHANGES."""
    try:
        got = fn()
    except NotImplementedError:
        print("edge_invariances: not attempted yet")
        return None
    want = _edge_term_unchanged()
    if not isinstance(got, dict) or set(got) != set(want):
        print(f"edge_invariances: FAIL (return a dict with the keys {list(want)})")
        return False
    wrong = [k for k in want if bool(got[k]) != want[k]]
    print("edge_invariances: " + ("pass" if not wrong else f"FAIL (wrong for: {', '.join(wrong)})"))
    return not wrong


def check_ofa_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(student_logits, teacher_logits, labels, gamma)`` -> OFA loss (T = 1, batch mean)."""
    from cookbook.losses import ofa_loss

    g = torch.Generator().manual_seed(1)
    cases = [(s, t, torch.randint(0, s.shape[1], (s.shape[0],), generator=g), gamma)
             for (s, t), gamma in zip(logit_cases(), (1.0, 1.5, 3.0))]
    return check("ofa_loss", fn, lambda s, t, y, gamma: ofa_loss(s, t, y, gamma=gamma), cases)


def check_lt_weights(fn: Callable) -> bool | None:
    """Exercise: ``fn(n_max, imbalance, beta)`` -> (counts, class-balanced weights with mean 1)."""
    from cookbook.data import class_balanced_weights, long_tailed_counts

    def reference(n_max, imbalance, beta):
        counts = long_tailed_counts(n_max, imbalance)
        return counts, class_balanced_weights(counts, beta)

    def flat(f):
        return lambda *a: torch.cat([torch.as_tensor(a_, dtype=torch.float32) for a_ in f(*a)])
    return check("lt_weights", flat(fn), flat(reference), [(1000, 100, 0.999), (500, 10, 0.99), (5000, 50, 0.9999)])


def check_dmae_target(fn: Callable) -> bool | None:
    """Exercise: ``fn(teacher_tokens, x, keep)`` -> the teacher's (B, K, D) target at the visible patches,
    computed from the visible patches only (a changed hidden patch must not move it)."""
    from cookbook.models import CNNTokens, SmallCNN, gather_patches, mask_patches, random_keep

    torch.manual_seed(4)
    teacher = CNNTokens(SmallCNN(width=8).eval(), grid=4, stages=2)
    x, keep = torch.randn(3, 1, 28, 28), random_keep(3, 16, 0.75)
    try:
        with torch.no_grad():
            got = fn(teacher, x, keep)
            x2 = x.clone()
            x2[:, :, :, :] += 3.0 * (mask_patches(torch.ones_like(x), keep, 7) == 0)   # change every hidden patch
            moved = (fn(teacher, x2, keep) - got).abs().max().item() if got is not None else 0.0
    except NotImplementedError:
        print("dmae_target: not attempted yet")
        return None
    if got is not None and moved > 1e-5:
        print(f"dmae_target: FAIL (the target moves by {moved:.2e} when only hidden patches change: the leak)")
        return False
    return check("dmae_target", lambda *a: fn(*a).detach(),
                 lambda f, xb, k: gather_patches(f(mask_patches(xb, k, 7)), k).detach(), [(teacher, x, keep)])
