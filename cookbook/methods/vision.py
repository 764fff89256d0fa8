"""DisWOT: rank candidate student architectures for a teacher WITHOUT training them.

Two similarities between the teacher and an untrained candidate on one batch of images:
- semantic: the class-by-class Gram matrix of Grad-CAM maps at the last feature layer
  (which classes light up the same regions), compared after normalisation;
- sample relation: the batch-by-batch Gram matrix of the same features (which images look alike).

    score = -( || G_t/||G_t|| - G_s/||G_s|| ||_F  +  || R_t/||R_t|| - R_s/||R_s|| ||_F )

Higher is better. Both matrices have the same size for any two networks (classes x classes,
batch x batch), so teacher and student feature shapes never need to match.

Paper: Dong, Li, Wei, "DisWOT: Student Architecture Search for Distillation WithOut Training",
CVPR 2023, arXiv 2303.15678.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def features_and_logits(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: (output of submodule ``layer`` (B, K, H, W) or (B, D), logits (B, C)), with grad."""
    try:
        module = model.get_submodule(layer)
    except AttributeError as err:
        raise ValueError(f"{type(model).__name__} has no submodule {layer!r}") from err
    saved = {}
    handle = module.register_forward_hook(lambda m, i, o: saved.update(feat=o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return saved["feat"], logits


def class_activation_maps(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps of every class: (C, B * H * W).

    For class c: weights a_k = spatial mean of d logit_c / d A_k, map = ReLU(sum_k a_k A_k).
    feats must be (B, K, H, W) and part of the graph that produced ``logits``; a flat (B, D) feature
    counts as a 1 x 1 map.
    """
    maps = []
    for c in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, c].sum(), feats, retain_graph=True)    # like feats
        grad, act = (grad[:, :, None, None], feats[:, :, None, None]) if feats.dim() == 2 else (grad, feats)
        weights = grad.mean((2, 3), keepdim=True)                                     # (B, K, 1, 1)
        maps.append(F.relu((weights * act).sum(1)).flatten())                         # (B * H * W,)
    return torch.stack(maps)                                                           # (C, B*H*W)


def _normalised_gram(rows: torch.Tensor) -> torch.Tensor:
    """rows (N, D) -> (N, N) Gram matrix divided by its Frobenius norm."""
    gram = rows @ rows.T
    return gram / gram.norm().clamp_min(1e-12)


def semantic_gram(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(C, C): how alike the classes' Grad-CAM maps are, Frobenius-normalised."""
    return _normalised_gram(class_activation_maps(feats, logits))


def relation_gram(feats: torch.Tensor) -> torch.Tensor:
    """(B, B): cosine similarities between the images' flattened features, Frobenius-normalised."""
    return _normalised_gram(F.normalize(feats.flatten(1), dim=1))


def diswot_score(student: nn.Module, teacher: nn.Module, x: torch.Tensor, *, student_layer: str,
                 teacher_layer: str) -> dict[str, float]:
    """DisWOT's training-free score of ``student`` for ``teacher`` on one batch ``x`` (B, ...).

    Returns {"semantic": distance, "relation": distance, "score": -(semantic + relation)}.
    Works on copies in train mode (an untrained network's BatchNorm has no useful running
    statistics, so batch statistics are used), so neither network is changed.
    """
    if len(x) < 2:
        raise ValueError("diswot_score needs a batch of at least 2 images (the relation matrix is B x B)")
    grams = {}
    for who, model, layer in (("s", student, student_layer), ("t", teacher, teacher_layer)):
        net = copy.deepcopy(model).train()
        for p in net.parameters():
            p.requires_grad_(True)
        feats, logits = features_and_logits(net, layer, x)
        grams[who] = (semantic_gram(feats, logits).detach(), relation_gram(feats).detach())
    if grams["s"][0].shape != grams["t"][0].shape:
        raise ValueError(f"student and teacher must predict the same classes, got {grams['s'][0].shape[0]} "
                         f"and {grams['t'][0].shape[0]}")
    semantic = (grams["t"][0] - grams["s"][0]).norm().item()
    relation = (grams["t"][1] - grams["s"][1]).norm().item()
    return {"semantic": semantic, "relation": relation, "score": -(semantic + relation)}
