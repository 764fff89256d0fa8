"""Adaptive Computation Modules (ACM, P08): a ViT's MLP blocks replaced by learners + a per-token gate.

An ACM holds N small learners f_1..f_N (each d -> b -> d, GELU) whose outputs add up: the module's
output after k learners is o_k = f_1(x) + ... + f_k(x) (o_0 = 0: the block's MLP is skipped). A
gate reads each token and picks k in {0..N}, so an easy token uses fewer learners than a hard one.
With b = d_ff / N the N learners together cost what the original MLP cost.

``acmize(vit, N)`` replaces every ``block.mlp`` of a timm ViT with an ACM (fresh weights: they are
trained by distillation from the original MLP, ``cookbook.losses.acm_distill_loss``). ``mode`` says
how an ACM runs: ``"all"`` (every prefix sum, for distillation), an int k (k learners for every
token: the static baseline), or ``"gated"`` (the gate decides per token). ``vit_macs`` counts the
multiply-accumulates of a forward pass for the accuracy-vs-compute curve.

Paper: Wojcik, Devoto, Pustelnik, Minervini, Scardapane, "Adaptive Computation Modules: Granular
Conditional Computation For Efficient Inference", AAAI 2025, arXiv 2312.10193; official code
github.com/bartwojcik/adaptive_computation_modules (``architectures/acm.py``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from cookbook.checks import check_int


class AdaptiveComputationModule(nn.Module):
    """N learners d -> b -> d (GELU, hidden bias only, as the official ``bias='hidden_only'``) and a gate.

    ``all_outputs(x)`` (..., d) -> (..., N + 1, d): o_0 = 0, o_k = sum_{i <= k} f_i(x). With
    ``detach_prefix`` (the official default) learner k's gradient sees o_{k-1} as a constant, so
    each learner fits what the ones before it left over. The gate (d -> 16 -> 16 -> N + 1, ReLU;
    the official deep Gumbel gate has the same widths) is trained with a straight-through
    Gumbel-softmax (tau 0.8, the official value) in ``"gated"`` training mode; ``last_gate`` keeps
    the (..., N + 1) one-hot choices of the last forward for the budget loss.
    """

    def __init__(self, dim: int, block_dim: int, num_learners: int, gate_hidden: int = 16, tau: float = 0.8):
        super().__init__()
        self.dim, self.block_dim = check_int("dim", dim, 1), check_int("block_dim", block_dim, 1)
        self.num_learners = check_int("num_learners", num_learners, 1)
        self.w1 = nn.Parameter(torch.empty(dim, num_learners * block_dim))
        self.b1 = nn.Parameter(torch.empty(num_learners * block_dim))
        self.w2 = nn.Parameter(torch.empty(num_learners, block_dim, dim))
        self.gate = nn.Sequential(nn.Linear(dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, gate_hidden),
                                  nn.ReLU(), nn.Linear(gate_hidden, num_learners + 1))
        self.tau, self.mode, self.detach_prefix = tau, "all", True
        self.last_gate: torch.Tensor | None = None
        nn.init.kaiming_uniform_(self.w1, a=5 ** 0.5)
        nn.init.kaiming_uniform_(self.w2.view(-1, dim), a=5 ** 0.5)
        nn.init.uniform_(self.b1, -dim ** -0.5, dim ** -0.5)

    def all_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., N + 1, d): the output after 0, 1, ..., N learners."""
        h = F.gelu(x @ self.w1 + self.b1).unflatten(-1, (self.num_learners, self.block_dim))   # (..., N, b)
        parts = torch.einsum("...nb,nbd->...nd", h, self.w2)                                   # (..., N, d)
        parts = torch.cat([torch.zeros_like(parts[..., :1, :]), parts], dim=-2)               # (..., N + 1, d)
        sums = parts.cumsum(-2)
        return parts + (sums - parts).detach() if self.detach_prefix else sums

    def choose(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's choice per token as a one-hot (..., N + 1): Gumbel straight-through in training, argmax in eval."""
        logits = self.gate(x)
        if self.training:
            return F.gumbel_softmax(logits, tau=self.tau, hard=True)
        return F.one_hot(logits.argmax(-1), self.num_learners + 1).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "all":
            raise RuntimeError("mode 'all' returns every prefix: call all_outputs(x), or set mode to an int or 'gated'")
        outs = self.all_outputs(x)                                               # (..., N + 1, d)
        if isinstance(self.mode, int):
            return outs[..., self.mode, :]
        gate = self.choose(x)                                                    # (..., N + 1) one-hot
        self.last_gate = gate
        return torch.einsum("...k,...kd->...d", gate, outs)


def acmize(vit: nn.Module, num_learners: int = 4) -> tuple[nn.Module, list[AdaptiveComputationModule]]:
    """A copy of a timm ViT whose every ``block.mlp`` is an ACM of ``num_learners`` learners.

    Each learner's width is d_ff / N (the official ``total_flops_factor = 1``: all learners cost the
    original MLP). Everything but the ACMs is copied from ``vit``. Returns (model, [ACM per block]).
    """
    check_int("num_learners", num_learners, 1)
    model = copy.deepcopy(vit)
    acms = []
    for block in model.blocks:
        d, d_ff = block.mlp.fc1.in_features, block.mlp.fc1.out_features
        if d_ff % num_learners:
            raise ValueError(f"the MLP width {d_ff} is not divisible by num_learners={num_learners}")
        block.mlp = AdaptiveComputationModule(d, d_ff // num_learners, num_learners)
        acms.append(block.mlp)
    return model, acms


def set_acm_mode(acms: list[AdaptiveComputationModule], mode: str | int) -> None:
    """Set every ACM's ``mode``: "all", "gated" or a number of learners k in 0..N."""
    for m in acms:
        if mode not in ("all", "gated") and not (isinstance(mode, int) and 0 <= mode <= m.num_learners):
            raise ValueError(f"mode must be 'all', 'gated' or an int in 0..{m.num_learners}, got {mode!r}")
        m.mode = mode


def vit_macs(vit: nn.Module, learners_per_token: torch.Tensor | float | None = None, gate: bool = True) -> float:
    """Multiply-accumulates of one forward pass of a timm ViT (or its ACM copy), per image.

    Counted: patch embedding, per block the qkv and output projections, the two attention matmuls
    (T^2 d each) and the MLP; the head. Norms, softmax and GELU are left out (a few percent).
    For an ACM model, ``learners_per_token`` is the mean number of learners a token used (a float,
    or a (blocks,) tensor of per-block means); the gate's cost is added for every token unless
    ``gate=False`` (a fixed k for every token runs no gate). ``None`` counts the dense model (or,
    for ACMs, all N learners and no gate).
    """
    d = vit.embed_dim
    p = vit.patch_embed.patch_size[0]
    n_patches = vit.patch_embed.num_patches
    T = n_patches + getattr(vit, "num_prefix_tokens", 1)
    total = n_patches * p * p * vit.patch_embed.proj.in_channels * d + d * vit.head.out_features
    per_block = torch.as_tensor(learners_per_token, dtype=torch.float64) if learners_per_token is not None else None
    for i, block in enumerate(vit.blocks):
        total += T * 4 * d * d + 2 * T * T * d
        mlp = block.mlp
        if isinstance(mlp, AdaptiveComputationModule):
            learner = 2 * mlp.dim * mlp.block_dim
            if per_block is None:
                total += T * mlp.num_learners * learner
            else:
                k = float(per_block[i] if per_block.dim() else per_block)
                gate_macs = sum(m.in_features * m.out_features for m in mlp.gate if isinstance(m, nn.Linear))
                total += T * (k * learner + (gate_macs if gate else 0))
        else:
            total += T * 2 * mlp.fc1.in_features * mlp.fc1.out_features
    return float(total)
