"""Exercise checks: compare a reader's function with the package's reference on fixed cases.

``check`` and the shared case generators are here; each notebook's checks are a module of their
own (``quickstart`` for 00, ``vision_logits`` 01a, ``vision_transformers`` 01b, ``graph`` 02,
``llm`` 05a, ``llm_tokens`` 05b, ``speculative`` 06a, ``tokenizer`` 08b), imported in the notebook as ``from cookbook.exercises import llm as exercises``.
Each ``check_*`` prints ``pass`` or ``FAIL`` with the largest absolute difference, or ``not attempted
yet`` when the stub still raises NotImplementedError (so an untouched notebook runs green). It
returns True / False / None accordingly; solutions notebooks assert it is True.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _max_diff(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    return (a - b).abs().max().item() if a.numel() else 0.0


def check(name: str, fn: Callable, reference: Callable, cases: Sequence[tuple | dict], atol: float = 1e-5) -> bool | None:
    """Run ``fn`` and ``reference`` on every case (positional tuple or keyword dict) and compare."""
    worst = 0.0
    for case in cases:
        args, kwargs = (case, {}) if isinstance(case, tuple) else ((), case)
        try:
            got = fn(*args, **kwargs)
        except NotImplementedError:
            print(f"{name}: not attempted yet")
            return None
        want = reference(*args, **kwargs)
        if got is None:
            print(f"{name}: FAIL (returned None)")
            return False
        if torch.as_tensor(got).shape != torch.as_tensor(want).shape:
            print(f"{name}: FAIL (shape {tuple(torch.as_tensor(got).shape)}, expected {tuple(torch.as_tensor(want).shape)})")
            return False
        worst = max(worst, _max_diff(got, want))
    ok = worst <= atol
    print(f"{name}: {'pass' if ok else 'FAIL'} (max |difference| = {worst:.2e}, tolerance {atol:.0e})")
    return ok


def logit_cases(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, c, generator=g) * s, torch.randn(b, c, generator=g) * s)
            for b, c, s in ((4, 10, 1.0), (7, 3, 5.0), (1, 26, 0.1))]


def labelled_logit_cases(seed: int = 5) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(s, t, torch.randint(0, s.shape[1], (s.shape[0],), generator=g)) for s, t in logit_cases(seed)]
