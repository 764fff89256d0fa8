"""Distillation losses: pure functions, one module per family (logits, features, graph, llm, ...)."""

from cookbook.losses.adaptive import (
    acm_distill_loss,
    acm_gate_losses,
    acm_gate_targets,
    gate_choice_loss,
)
from cookbook.losses.features import (
    attention_kl_loss,
    contextual_loss,
    hybrid_distill_loss,
    masked_reconstruction_loss,
    restrict_attention,
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
from cookbook.losses.segmentation import cwd_loss, dual_path_loss
from cookbook.losses.transfer import (
    classifier_alignment_loss,
    instance_contrastive_loss,
    multi_source_distill_loss,
    weighted_feature_loss,
    weighted_kd_loss,
)

__all__ = ["acm_distill_loss", "acm_gate_losses", "acm_gate_targets", "attention_kl_loss", "classifier_alignment_loss",
           "cwd_loss", "dual_path_loss", "gate_choice_loss", "hybrid_distill_loss", "instance_contrastive_loss",
           "multi_source_distill_loss", "restrict_attention", "weighted_feature_loss", "weighted_kd_loss",
           "contextual_loss", "dho_loss", "dkd_loss", "dual_head_probs", "ensemble_soft_targets",
           "hard_distillation_loss", "kd_loss", "masked_reconstruction_loss", "meal_v2_loss",
           "ofa_loss", "pld_loss", "soft_targets", "token_node_loss", "token_relation_loss",
           "visible_feature_loss"]
