"""Input checks shared by the losses: one clear ValueError for each mistake a user can make."""

from __future__ import annotations

import torch


def check_temperature(T: float) -> None:
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")


def check_pair(student: torch.Tensor, teacher: torch.Tensor, name: str = "logits") -> None:
    """Student and teacher outputs must match in shape, be non-empty and finite."""
    if student.shape != teacher.shape:
        raise ValueError(f"student_{name} {tuple(student.shape)} and teacher_{name} {tuple(teacher.shape)} "
                         "must have the same shape (same batch and number of classes)")
    if student.numel() == 0:
        raise ValueError(f"empty batch: student_{name} has shape {tuple(student.shape)}")
    for who, t in (("student", student), ("teacher", teacher)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{who}_{name} contains NaN or inf")


def check_unit_interval(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def check_reduction(reduction: str, allowed: tuple[str, ...] = ("mean", "none")) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
