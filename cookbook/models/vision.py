"""Small image classifiers for 28x28 grey images (Fashion-MNIST, MNIST)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A VGG-style CNN: three stages (28 -> 14 -> 7), then a linear head on the flattened 7 x 7 map.

    The default width gives ~0.19M parameters: our quickstart teacher. The first stage has one
    conv only (at 28 x 28 it is the most expensive on a CPU). The head keeps the spatial layout:
    a global average pool there learned markedly slower on Fashion-MNIST (78.5% vs 85.4%
    validation accuracy after 100 steps), where what-is-where separates trousers from dresses.
    Named stages (``stage1``..``stage3``, ``head``) so feature hooks can address them.
    """

    def __init__(self, width: int = 32, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.2):
        super().__init__()
        w = width
        self.stage1 = nn.Sequential(_conv_bn(in_channels, w), nn.MaxPool2d(2))                   # 28 -> 14
        self.stage2 = nn.Sequential(_conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2))  # 14 -> 7
        self.stage3 = nn.Sequential(_conv_bn(2 * w, 4 * w))                                     # 7 x 7
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * 7 * 7, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 1, 28, 28) -> (B, C)
        return self.head(self.stage3(self.stage2(self.stage1(x))))


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear. The classic small student."""

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (128,), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_features, h), nn.ReLU(inplace=True)]
            in_features = h
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, ...) -> (B, C)
        return self.net(x)


class _BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus a shortcut (1x1 conv when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A ResNet-style CNN: stem (28 -> 14), two residual stages (14 -> 7), global average pool.

    A different family from SmallCNN (residual blocks, pooled head): used as a second teacher for
    ensemble distillation (MEAL V2, notebook 01a). width=16 gives ~20k parameters.
    """

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv_bn(in_channels, w), nn.MaxPool2d(2))     # 28 -> 14
        self.stage1 = _BasicBlock(w, w)                                          # 14 x 14
        self.stage2 = _BasicBlock(w, 2 * w, stride=2)                            # 14 -> 7
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 1, 28, 28) -> (B, C)
        return self.head(self.stage2(self.stage1(self.stem(x))))


class PlainCNN(nn.Module):
    """A configurable plain CNN: three stages of conv-bn-relu (28 -> 14 -> 7), flattened linear head.

    stages: conv widths per stage, e.g. ((8,), (16, 16), (32,)); kernel: conv kernel size (odd).
    The search space of the DisWOT candidates in notebook 01a (width, depth and kernel vary). Named
    stages (``stage1``..``stage3``, ``head``) like SmallCNN, so the same feature hooks apply.
    """

    def __init__(self, stages: Sequence[Sequence[int]] = ((8,), (16,), (32,)), kernel: int = 3,
                 num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        if len(stages) != 3 or any(len(s) == 0 for s in stages) or kernel % 2 == 0:
            raise ValueError(f"PlainCNN needs 3 non-empty stages and an odd kernel, got {stages}, {kernel}")
        c = in_channels
        for i, widths in enumerate(stages, start=1):
            layers: list[nn.Module] = []
            for w in widths:
                layers += [nn.Conv2d(c, w, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
            if i < 3:
                layers.append(nn.MaxPool2d(2))                                   # 28 -> 14 -> 7
            setattr(self, f"stage{i}", nn.Sequential(*layers))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 7 * 7, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (B, 1, 28, 28) -> (B, C)
        return self.head(self.stage3(self.stage2(self.stage1(x))))


class DualHead(nn.Module):
    """A shared feature extractor with two linear heads: forward returns (h_ce logits, h_kd logits).

    The student of Dual-Head Optimization (DHO, arXiv 2505.07675): one head learns from labels,
    the other from the teacher; predictions combine both (``cookbook.losses.dual_head_probs``).
    backbone: (B, ...) -> (B, features).
    """

    def __init__(self, backbone: nn.Module, features: int, num_classes: int = 10):
        super().__init__()
        self.backbone = backbone
        self.ce_head = nn.Linear(features, num_classes)
        self.kd_head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:   # (B, ...) -> 2 x (B, C)
        h = self.backbone(x)
        return self.ce_head(h), self.kd_head(h)
