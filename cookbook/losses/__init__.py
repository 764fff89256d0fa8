"""Distillation losses: pure functions, one module per family (logits, features, graph, llm, ...)."""

from cookbook.losses.logits import (
    dho_loss,
    dkd_loss,
    dual_head_probs,
    ensemble_soft_targets,
    kd_loss,
    meal_v2_loss,
    pld_loss,
    soft_targets,
)

__all__ = ["dho_loss", "dkd_loss", "dual_head_probs", "ensemble_soft_targets", "kd_loss", "meal_v2_loss", "pld_loss", "soft_targets"]
