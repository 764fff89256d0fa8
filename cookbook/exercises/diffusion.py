"""Exercise checks of notebooks 07a/07b (few-step diffusion distillation)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cookbook.exercises import check


def _cases(seed: int, shapes=((4, 2), (3, 1, 4, 4), (1, 5))) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [tuple(torch.randn(s, generator=g) for _ in range(4)) + (0.05 + 1.5 * torch.rand(s[0], generator=g),)
            for s in shapes]


def check_trigflow_x0(fn: Callable) -> bool | None:
    """Exercise: ``fn(x_t, v, t)`` -> the x_0 a v-prediction implies, cos(t) x_t - sin(t) v (t: (B,))."""
    def reference(x_t, v, t):
        tt = t.reshape(-1, *([1] * (x_t.dim() - 1)))
        return torch.cos(tt) * x_t - torch.sin(tt) * v
    return check("trigflow_x0", fn, reference, [(a, b, t) for a, b, _, _, t in _cases(0)])


def check_sid_loss(fn: Callable) -> bool | None:
    """Exercise: ``fn(teacher_x0, fake_x0, x_g, alpha)`` -> SiD's generator loss (per-sample sum,
    normalised by the detached mean |x_g - teacher_x0|, batch mean)."""
    from cookbook.losses.diffusion import sid_generator_loss
    cases = [dict(teacher_x0=a, fake_x0=b, x_g=c, alpha=al) for (a, b, c, _, _), al in zip(_cases(1), (1.2, 1.0, 0.5))]
    return check("sid_generator_loss", lambda **kw: fn(kw["teacher_x0"], kw["fake_x0"], kw["x_g"], kw["alpha"]),
                 lambda **kw: sid_generator_loss(kw["teacher_x0"], kw["fake_x0"], kw["x_g"], alpha=kw["alpha"]), cases)


def check_scm_tangent(fn: Callable) -> bool | None:
    """Exercise: ``fn(F_minus, F_minus_jvp, dxt_dt, x_t, t)`` -> sCM's normalised tangent (r = 1, c = 0.1)."""
    from cookbook.losses.diffusion import scm_tangent
    return check("scm_tangent", fn, lambda *a: scm_tangent(*a), _cases(2))
