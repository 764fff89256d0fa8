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


def check_edge_index(edge_index: torch.Tensor, num_nodes: int, rows: str) -> None:
    """edge_index must be int64 (2, E) with ids in 0..num_nodes-1; ``rows`` says what they index."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise ValueError(f"edge_index must be int64 (torch.long), got {edge_index.dtype}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index refers to nodes [{int(edge_index.min())}, {int(edge_index.max())}] "
                         f"but {rows}")
