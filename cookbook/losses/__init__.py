"""Distillation losses: pure functions, one module per family (logits, features, graph, llm, ...)."""

from cookbook.losses.features import (
    contextual_loss,
    masked_reconstruction_loss,
    token_node_loss,
    token_relation_loss,
    visible_feature_loss,
)
from cookbook.losses.logits import hard_distillation_loss, kd_loss, ofa_loss, soft_targets

__all__ = ["contextual_loss", "hard_distillation_loss", "kd_loss", "masked_reconstruction_loss", "ofa_loss",
           "soft_targets", "token_node_loss", "token_relation_loss", "visible_feature_loss"]
