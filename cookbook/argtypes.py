"""argparse types the command-line tools share, so a bad value is one argparse line, not a traceback.

Kept apart from ``utils`` so that ``cookbook --version`` and ``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An integer >= 1: counts, sizes, seconds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a positive integer (1 or more)")
    return value


def finite_float(text: str) -> float:
    """A number that is neither nan nor infinite (float() accepts both)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0: rates, temperatures, sizes."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number above 0")
    return value


def comma_list(item: Callable[[str], object]) -> Callable[[str], list]:
    """A type for ``a,b,c`` whose every item is checked by ``item``, e.g. ``comma_list(positive_int)``."""
    def parse(text: str) -> list:
        values = [item(x.strip()) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value (a comma list)")
        return values

    return parse


def device_choice(text: str) -> str:
    """``cpu`` or ``cuda``; ``cuda`` only where torch sees a GPU (else the run would silently use the CPU)."""
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: choose cpu or cuda")
    if text == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("CUDA is not available here: use --device cpu")
    return text
