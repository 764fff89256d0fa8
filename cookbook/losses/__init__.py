"""Distillation losses: pure functions, one module per family (logits, features, graph, llm, ...)."""

from cookbook.losses.features import (
    contextual_loss,
    masked_reconstruction_loss,
    token_node_loss,
    token_relation_loss,
    visible_feature_loss,
)
from cookbook.losses.logits import (
    dho_loss,
    dkd_loss,
    dual_head_probs,
    ensemble_soft_targets,
    hard_distillation_loss,
    kd_loss,
    meal_v2_loss,
    ofa_loss,
    pld_loss,
    soft_targets,
)

__all__ = ["contextual_loss", "dho_loss", "dkd_loss", "dual_head_probs", "ensemble_soft_targets",
           "hard_distillation_loss", "kd_loss", "masked_reconstruction_loss", "meal_v2_loss",
           "ofa_loss", "pld_loss", "soft_targets", "token_node_loss", "token_relation_loss",
           "visible_feature_loss"]
