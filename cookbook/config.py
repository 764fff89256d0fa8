"""Run mode (FAST/FULL) and the project's paths.

``COOKBOOK_FAST=1`` (set by the tests and ``make run``) selects tiny subsets and few steps; a
person's default is FULL, the real experiment. Every notebook knob is written ``pick(full=, fast=)``
so both values are visible in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
ASSETS = ROOT / "assets"
NOTEBOOKS = ROOT / "notebooks"


def is_fast() -> bool:
    """True when ``COOKBOOK_FAST`` is set to 1/true/yes (read at call time)."""
    return os.environ.get("COOKBOOK_FAST", "").strip().lower() in ("1", "true", "yes", "on")


def mode() -> str:
    """``"FAST"`` or ``"FULL"``: the label every reported number carries."""
    return "FAST" if is_fast() else "FULL"


def pick(*, full: T, fast: T) -> T:
    """Return ``fast`` in FAST mode, else ``full``: ``EPOCHS = pick(full=10, fast=1)``."""
    return fast if is_fast() else full


def data_dir() -> Path | None:
    """``$COOKBOOK_DATA`` if set: the first place every loader looks."""
    d = os.environ.get("COOKBOOK_DATA")
    return Path(d).expanduser() if d else None


def cache_dir() -> Path:
    """Where built data, converted models and teacher-output caches go (never git)."""
    d = os.environ.get("COOKBOOK_CACHE")
    base = Path(d).expanduser() if d else Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "distill-cookbook"
    base.mkdir(parents=True, exist_ok=True)
    return base


def results_dir() -> Path:
    """``results/`` at the repo root (``$COOKBOOK_RESULTS`` overrides)."""
    d = os.environ.get("COOKBOOK_RESULTS")
    out = Path(d).expanduser() if d else ROOT / "results"
    out.mkdir(parents=True, exist_ok=True)
    return out
