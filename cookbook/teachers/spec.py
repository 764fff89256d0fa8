"""``TeacherSpec``: what the registry knows of a teacher (its own module, so the committed teachers'
recipes can declare their specs without importing the registry that reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    architecture: Callable[[], nn.Module]              # untrained model of the right shape
    recipe: Callable[[int], tuple[nn.Module, dict]]    # seed -> (trained model, measured metrics)
    metric: str                                        # headline metric name in the metrics dict
    description: str
    labels: str | None = None                          # which labels it was trained on (None: no labels, e.g. self-supervised)
    storage_dtype: torch.dtype | None = None           # e.g. torch.float16 halves the asset; None keeps it

    @property
    def asset(self) -> str:
        return f"teachers/{self.name}.safetensors"

    @property
    def card(self) -> str:
        return f"teachers/{self.name}.json"


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: a teacher never trains (and BatchNorm statistics never move)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
