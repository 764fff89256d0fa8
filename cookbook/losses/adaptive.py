"""ACM's losses (P08): distil each MLP into its learners, label the gates, keep a compute budget.

Shapes: an ACM's prefix outputs are (..., N + 1, d) (after 0..N learners, ``AdaptiveComputationModule
.all_outputs``), the original MLP's output is (..., d), a gate's choices are one-hot (..., N + 1).
Paper: Wojcik et al., "Adaptive Computation Modules: Granular Conditional Computation For Efficient
Inference", AAAI 2025, arXiv 2312.10193 (official code: methods/acm/*.py of
github.com/bartwojcik/adaptive_computation_modules).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cookbook.checks import check_finite_param, check_tensor, check_values


def _check_prefix(prefix_outputs: torch.Tensor, target: torch.Tensor) -> None:
    check_tensor("prefix_outputs", prefix_outputs)
    check_tensor("target", target)
    if prefix_outputs.dim() < 2 or prefix_outputs.shape[:-2] + prefix_outputs.shape[-1:] != target.shape:
        raise ValueError(f"prefix_outputs (..., N + 1, d) {tuple(prefix_outputs.shape)} does not match "
                         f"target (..., d) {tuple(target.shape)}")
    if prefix_outputs.shape[-2] < 2 or target.numel() == 0:
        raise ValueError(f"need at least one learner (N + 1 >= 2) and a non-empty batch, got {tuple(prefix_outputs.shape)}")
    check_values("prefix_outputs", prefix_outputs)
    check_values("target", target)


def acm_distill_loss(prefix_outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Phase I: every prefix of learners regresses the original MLP's output.

        L = mean_{tokens, k = 0..N, dims} (o_k - MLP(x))^2

    (o_0 = 0 is a constant term, kept as in the official MSE over all N + 1 choices.) With the
    prefix detached (``detach_prefix``) learner k learns the residual MLP(x) - o_{k-1}.
    prefix_outputs (..., N + 1, d), target (..., d) -> scalar. Paper: arXiv 2312.10193, section 3.2.
    """
    _check_prefix(prefix_outputs, target)
    return (prefix_outputs - target.detach().unsqueeze(-2)).pow(2).mean()


def acm_gate_targets(prefix_outputs: torch.Tensor, target: torch.Tensor, factor: float = 1.2) -> torch.Tensor:
    """Phase II: the number of learners each token should use, from its distillation errors.

    With e_k = ||o_k - MLP(x)||, take the first j >= 0 whose next learner improves the error by less
    than ``factor`` (e_j / e_{j+1} < factor); the label is j + 1 (that learner is kept, as in the
    official code), or N when every learner improves by at least ``factor``. Returns int64 (...,)
    in 1..N. (The official code maps a stop at j = 0 to N, an ambiguity of its argmax; we keep 1.)
    factor > 1 (official 1.2). Paper: arXiv 2312.10193, section 3.3.
    """
    _check_prefix(prefix_outputs, target)
    check_finite_param("factor", factor, 1.0, low_open=True)
    errors = (prefix_outputs - target.unsqueeze(-2)).norm(dim=-1)           # (..., N + 1)
    small = errors[..., :-1] / errors[..., 1:].clamp_min(1e-12) < factor     # (..., N)
    n = prefix_outputs.shape[-2] - 1
    first = torch.where(small.any(-1), small.float().argmax(-1), torch.full_like(small[..., 0], n - 1, dtype=torch.long))
    return (first + 1).clamp(max=n).long()


def acm_gate_losses(gates: list[torch.Tensor], target_budget: float) -> dict[str, torch.Tensor]:
    """Phase III regularisers on the gates' one-hot choices, as in the official ``end_to_end.py``.

    gates: one (B, T, N + 1) one-hot (straight-through) tensor per ACM, N equal across ACMs.
    - ``budget`` = | mean over ACMs and tokens of k / N - target_budget |  (official "l1" routing loss);
    - ``entropy`` = - mean over images and ACMs of the entropy of the distribution of k over the
      image's tokens, divided by log(N + 1) (encourages using several k per image);
    - ``diversity`` = - 2 mean_{i, j} | c_i - c_j |, c_i = image i's mean k / N (official compute
      diversity loss: images should differ in cost).
    Returns the three scalars; the official weights are 0.1, 0.05, 0.05. target_budget in [0, 1].
    """
    check_finite_param("target_budget", target_budget, 0.0, 1.0)
    if not gates:
        raise ValueError("gates is empty: pass the last_gate of every ACM")
    g = torch.stack(gates, dim=2)                                            # (B, T, A, N + 1)
    if g.dim() != 4:
        raise ValueError(f"each gate must be (B, T, N + 1), got {tuple(gates[0].shape)}")
    n = g.shape[-1] - 1
    k = torch.arange(n + 1, dtype=g.dtype, device=g.device)
    cost = (g * k).sum(-1) / n                                               # (B, T, A) in [0, 1]
    budget = (cost.mean() - target_budget).abs()
    dist = g.sum(1) / g.shape[1]                                             # (B, A, N + 1)
    entropy = -(dist * (dist + 1e-20).log()).sum(-1) / math.log(n + 1)
    per_image = cost.mean((1, 2))                                            # (B,)
    diversity = -2 * (per_image[:, None] - per_image[None, :]).abs().mean()
    return {"budget": budget, "entropy": -entropy.mean(), "diversity": diversity}


def gate_choice_loss(gate_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Phase II: cross-entropy of a gate's logits (..., N + 1) against ``acm_gate_targets`` (...,)."""
    check_tensor("gate_logits", gate_logits)
    if gate_logits.shape[:-1] != targets.shape:
        raise ValueError(f"gate_logits {tuple(gate_logits.shape)} and targets {tuple(targets.shape)} do not match")
    return F.cross_entropy(gate_logits.flatten(0, -2), targets.flatten())
