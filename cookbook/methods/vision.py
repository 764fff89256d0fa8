"""Vision-KD algorithms that are more than a loss: DisWOT (01a); task similarity, source weights,
KD3's instance selection and Hybrid Distill's redundant-token masking (01c, 01d, at the end).

DisWOT: rank candidate student architectures for a teacher WITHOUT training them.

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
import math

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


# ----------------------------------------------------------------------------- notebooks 01c / 01d


def ncc_loo_accuracy(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Task similarity of a source model to a target task: leave-one-out nearest-centroid accuracy.

    The labelled target images' features under the source model (N, D) are L2-normalised; each image
    is classified by the nearest class centroid (cosine) computed WITHOUT it. High when the source's
    features already separate the target classes. Needs >= 2 images per class. (P29 compares several
    task-similarity metrics; this is the cheap one that needs nothing but the few labels.)
    Paper: Borup, Phoo, Hariharan, arXiv 2304.12314 (DistillNearest).
    """
    if feats.dim() != 2 or labels.shape != (len(feats),):
        raise ValueError(f"feats must be (N, D) and labels (N,), got {tuple(feats.shape)} and {tuple(labels.shape)}")
    z = F.normalize(feats.double(), dim=-1)
    C = int(labels.max()) + 1
    onehot = F.one_hot(labels, C).double()                                  # (N, C)
    counts = onehot.sum(0)
    if bool((counts < 2).any()):
        raise ValueError("every class needs at least 2 labelled images for a leave-one-out centroid")
    sums = onehot.T @ z                                                     # (C, D)
    own = (sums[labels] - z) / (counts[labels] - 1)[:, None]               # own class centroid without the image
    others = sums / counts[:, None]                                         # (C, D)
    scores = z @ F.normalize(others, dim=-1).T                              # (N, C)
    scores[torch.arange(len(z)), labels] = (z * F.normalize(own, dim=-1)).sum(-1)
    return float((scores.argmax(-1) == labels).double().mean())


def source_weights(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """DistillWeighted's source weights: softmax(scores / tau); tau = 0 gives DistillNearest (one-hot on the best).

    scores (S,) task similarities (higher = closer); tau >= 0. Returns (S,) weights summing to 1.
    """
    if scores.dim() != 1 or len(scores) == 0:
        raise ValueError(f"scores must be a non-empty (S,) tensor, got {tuple(scores.shape)}")
    if tau < 0 or not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    if tau == 0:
        return F.one_hot(scores.argmax(), len(scores)).to(scores.dtype if scores.is_floating_point() else torch.float32)
    return torch.softmax(scores.float() / tau, 0)


def probe_pseudo_labels(train_feats: torch.Tensor, train_labels: torch.Tensor, feats: torch.Tensor,
                        C: float = 1.0) -> torch.Tensor:
    """A source model's pseudo-labels on the target task: a multinomial logistic regression
    (scikit-learn, L2 strength 1/C) fitted on the labelled target images' source features, applied to
    ``feats``. Returns probabilities (N, classes) as float32 (P29: "features and pseudo-labels of the
    source models", no source data)."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=C, max_iter=2000)
    probe.fit(F.normalize(train_feats, dim=-1).numpy(), train_labels.numpy())
    return torch.as_tensor(probe.predict_proba(F.normalize(feats, dim=-1).numpy()), dtype=torch.float32)


def kd3_instance_weights(teacher_logits: torch.Tensor, student_logits: torch.Tensor, progress: float,
                         threshold: float) -> torch.Tensor:
    """KD3's dynamic instance selection: trust a web image when teacher and student agree on it.

    p = (1 - g) softmax(t) + g softmax(s), g = progress / 2 (the student's say grows from 0 to 1/2 as
    training goes on, ``progress`` in [0, 1]); an image is kept when max_c p_c >= threshold, with
    weight max_c p_c; the others get weight 0. Disagreement lowers max_c p, so an image the teacher
    is sure of but the student reads differently is dropped. Returns (B,) weights in [0, 1].
    Paper: Tang et al., arXiv 2307.11469 (our reading; official code not found).
    """
    if not 0.0 <= progress <= 1.0 or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"progress and threshold must lie in [0, 1], got {progress} and {threshold}")
    if teacher_logits.shape != student_logits.shape or teacher_logits.dim() != 2:
        raise ValueError(f"teacher and student logits must both be (B, C), got {tuple(teacher_logits.shape)} "
                         f"and {tuple(student_logits.shape)}")
    g = progress / 2
    p = (1 - g) * teacher_logits.detach().softmax(-1) + g * student_logits.detach().softmax(-1)
    conf = p.max(-1).values
    return torch.where(conf >= threshold, conf, torch.zeros_like(conf))


def redundant_token_keep(cls_attention: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """Hybrid Distill's redundant-token masking: keep the patches the teacher's CLS token attends to most.

    cls_attention (B, N): attention from CLS to each patch (e.g. averaged over heads, last block);
    the ``round(N * mask_ratio)`` least-attended patches are dropped. Returns (B, K) int64 indices,
    K >= 1, in ascending patch order. Paper: Shi et al., arXiv 2306.15876 (our reading of the
    progressive redundant token masking; official code not found).
    """
    if cls_attention.dim() != 2:
        raise ValueError(f"cls_attention must be (B, N), got {tuple(cls_attention.shape)}")
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    n = cls_attention.shape[1]
    k = max(1, n - round(n * mask_ratio))
    return cls_attention.topk(k, dim=-1).indices.sort(-1).values


def progressive_ratio(progress: float, final_ratio: float, stages: int = 3) -> float:
    """The masking ratio at a point of training: a staircase from 0 up to ``final_ratio`` in ``stages`` equal steps.

    progress in [0, 1] (fraction of distillation done). stage i of ``stages`` masks i / (stages - 1) *
    final_ratio, so early epochs see every token and later ones only the less redundant ones.
    """
    if not 0.0 <= progress <= 1.0 or stages < 1:
        raise ValueError(f"need progress in [0, 1] and stages >= 1, got {progress}, {stages}")
    if stages == 1:
        return final_ratio
    stage = min(stages - 1, int(progress * stages))
    return final_ratio * stage / (stages - 1)
