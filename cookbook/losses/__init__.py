"""Distillation losses: pure functions, one module per family (logits, features, graph, llm, ...)."""

from cookbook.losses.logits import kd_loss, soft_targets

__all__ = ["kd_loss", "soft_targets"]
