r"""MiniLM v2: multi-head self-attention relation distillation.

The student mimics, for its queries, keys and values separately, the teacher's *relations*: the
softmax of scaled dot products between positions. The hidden units of a projection are regrouped
into R "relation heads" (independent of the models' own attention-head counts), so student and
teacher may have different hidden sizes and head counts; only R must divide both hidden sizes.

Shapes: a projection output x is (B, L, D): B sequences, L positions, D hidden units (the
concatenated attention heads of one layer's Q, K or V). ``mask`` (B, L) bool marks real tokens
(False = padding). ``causal=True`` (the default, for decoder LMs) lets a token relate only to itself
and earlier tokens, as in the model's own attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cookbook.checks import check_int, check_tensor, check_values
from cookbook.losses.llm import NEG, rowdot


def check_projection(name: str, x: Tensor, num_relation_heads: int) -> None:
    check_tensor(name, x)
    check_int("num_relation_heads", num_relation_heads, low=0)
    if x.ndim != 3:
        raise ValueError(f"{name} must be (B, L, D), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if num_relation_heads < 1 or x.shape[2] % num_relation_heads:
        raise ValueError(f"num_relation_heads={num_relation_heads} must divide the hidden size "
                         f"D={x.shape[2]} of {name}")
    check_values(name, x)


def relation_mask(length: int, mask: Tensor | None, causal: bool, device: torch.device) -> Tensor:
    """Which (query, key) pairs may relate: (B or 1, 1, L, L) bool."""
    allowed = torch.ones(1, 1, length, length, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if mask is not None:
        allowed = allowed & mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    return allowed


def attention_relations(x: Tensor, num_relation_heads: int, *, causal: bool = True,
                        mask: Tensor | None = None) -> Tensor:
    r"""Self-attention relations of one projection, as log-probabilities over key positions.

    Split the D hidden units into R relation heads of size d_r = D / R, then for each head a

    .. math:: \log R_a = \log\mathrm{softmax}\Big(\frac{x_a x_a^\top}{\sqrt{d_r}}\Big),
              \quad x_a \in \mathbb{R}^{L \times d_r}

    with disallowed keys (future positions when causal, padding in ``mask``) given probability 0.
    Shape: x (B, L, D) -> (B, R, L, L); row t is a distribution over the keys of query t.
    Paper: Wang et al., "MiniLMv2: Multi-Head Self-Attention Relation Distillation for Compressing
    Pretrained Transformers", 2021, arXiv:2012.15828 (v1: arXiv:2002.10957).
    """
    check_projection("x", x, num_relation_heads)
    check_tensor("mask", mask, optional=True)
    b, length, d = x.shape
    if mask is not None and mask.shape != (b, length):
        raise ValueError(f"mask must be (B, L)=({b}, {length}), got {tuple(mask.shape)}")
    if mask is not None and not mask.any():
        raise ValueError("mask marks every position as padding: nothing to distil")
    heads = x.float().view(b, length, num_relation_heads, -1).transpose(1, 2)  # (B, R, L, d_r)
    scores = heads @ heads.transpose(-1, -2) / math.sqrt(d / num_relation_heads)  # (B, R, L, L)
    scores = scores.masked_fill(~relation_mask(length, mask, causal, x.device), NEG)
    return F.log_softmax(scores, dim=-1)


def attention_relation_loss(student_qkv: tuple[Tensor, Tensor, Tensor],
                            teacher_qkv: tuple[Tensor, Tensor, Tensor], num_relation_heads: int,
                            *, causal: bool = True, mask: Tensor | None = None) -> Tensor:
    r"""MiniLMv2 loss: KL from teacher to student Q-Q, K-K and V-V relations, summed.

    .. math:: \mathcal{L} = \sum_{x \in \{Q, K, V\}} \frac{1}{B\,R\,|L|} \sum_{b,a,t}
              \mathrm{KL}\big(R^{T}_{x,b,a,t} \,\|\, R^{S}_{x,b,a,t}\big)

    averaged over sequences, relation heads and (real) query positions; the teacher side carries
    no gradient. Each argument is a (Q, K, V) triple of (B, L, D) projections of one layer (the
    paper distils the teacher's upper-middle layer into the student's last layer); student and
    teacher D may differ. The paper weights the three terms equally, as here.
    Shape: -> scalar. Paper: Wang et al., MiniLMv2, 2021, arXiv:2012.15828.
    """
    if len(student_qkv) != 3 or len(teacher_qkv) != 3:
        raise ValueError("student_qkv and teacher_qkv must each be a (Q, K, V) triple")
    for who, triple in (("student", student_qkv), ("teacher", teacher_qkv)):
        for x in triple:
            check_tensor(f"{who} projection", x)
    total = student_qkv[0].new_zeros((), dtype=torch.float32)
    for s, t in zip(student_qkv, teacher_qkv):
        check_projection("student projection", s, num_relation_heads)
        check_projection("teacher projection", t, num_relation_heads)
        if s.shape[:2] != t.shape[:2]:
            raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t.shape)} projections "
                             f"must share (B, L)")
        logq = attention_relations(s, num_relation_heads, causal=causal, mask=mask)  # (B, R, L, L)
        logp = attention_relations(t.detach(), num_relation_heads, causal=causal, mask=mask)
        b, r, length, _ = logq.shape
        kl = rowdot(logp.exp().reshape(-1, length),
                    (logp - logq).reshape(-1, length)).view(b, r, length)  # (B, R, L)
        queries = torch.ones(b, length, device=kl.device) if mask is None else mask.float()
        total = total + (kl * queries[:, None, :]).sum() / (r * queries.sum())
    return total
