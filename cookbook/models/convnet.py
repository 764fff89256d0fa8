"""The ConvNet of the dataset-distillation papers (DC, DSA, DM, MTT, AST/P67, KRR-ST), sized for a CPU.

``ConvNet(width, depth)``: ``depth`` blocks of conv 3x3 (``width`` channels) -> instance norm
(``GroupNorm(width, width)``, affine, as in DC's ``instancenorm``) -> ReLU -> average pool 2, then a
linear classifier on the flattened map. As in the official code, a 28 x 28 grey image is padded to
32 x 32 by the first conv (padding 3), so depth 3 gives 32 -> 16 -> 8 -> 4.
The papers use width 128 ("ConvNet-3", ~320k parameters on 28 x 28); our CPU default is width 16,
so every method's synthesis and evaluation fits a 2-core CPU: say so wherever the numbers are
compared (checked against ``VICO-UoE/DatasetCondensation:networks.py`` ``ConvNet``).

Trajectory matching (MTT) trains a network *as a function of a flat parameter vector*:
:func:`flat_params` and :func:`functional_forward` give that view (``torch.func.functional_call``
over the same module), so the unrolled student steps stay differentiable with respect to the
synthetic images.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from cookbook.checks import check_int, check_tensor


class ConvNet(nn.Module):
    """ConvNet-D of DC/DSA/DM/MTT: [conv3x3 -> instance norm -> ReLU -> avgpool2] x depth -> linear.

    width: channels per block (papers: 128; ours 16 on CPU). ``norm``: "instance" (the papers'
    default, ``GroupNorm(width, width)``) or "batch" (``BatchNorm2d``: DC's ``batchnorm`` option, the
    "ConvNetBN" whose running statistics SRe2L-style recovery matches). ``embed(x)`` returns the
    flattened features before the classifier (what DM's mean embeddings and herding use).
    """

    def __init__(self, width: int = 16, depth: int = 3, num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28, norm: str = "instance"):
        super().__init__()
        check_int("width", width, 1)
        check_int("depth", depth, 1)
        if norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch', got {norm!r}")
        layers: list[nn.Module] = []
        # official code: a 28-pixel image with one channel gets padding 3 in the first conv (-> 32)
        pad0 = 3 if (in_channels == 1 and image_size == 28) else 1
        c, side = in_channels, image_size + 2 * (pad0 - 1)
        for d in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=pad0 if d == 0 else 1),
                       nn.GroupNorm(width, width, affine=True) if norm == "instance" else nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.AvgPool2d(2)]
            c, side = width, side // 2
        if side < 1:
            raise ValueError(f"depth {depth} pools a {image_size}-pixel image below one pixel")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(width * side * side, num_classes)
        self.feature_dim = width * side * side

    def embed(self, x: torch.Tensor) -> torch.Tensor:    # (B, 1, 28, 28) -> (B, feature_dim)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, num_classes)
        return self.classifier(self.features(x))


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one detached 1-d tensor (MTT's theta)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def functional_forward(model: nn.Module, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with its parameters taken from the flat vector ``flat`` (differentiable in both).

    The module's own parameters are not touched; ``flat`` must have ``sum(p.numel())`` entries in
    ``model.parameters()`` order (as :func:`flat_params` writes them).
    """
    check_tensor("flat", flat, ndim=1)
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
    sizes = [s.numel() for s in shapes]
    if flat.numel() != sum(sizes):
        raise ValueError(f"flat has {flat.numel()} entries, the model has {sum(sizes)} parameters")
    params = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
    return functional_call(model, params, (x,))
