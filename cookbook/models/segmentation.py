"""A small U-Net for the composed scenes of notebook 01d (32 x 56 pixels, 21 classes).

Two levels of down-sampling (32 x 56 -> 16 x 28 -> 8 x 14), skip connections, bilinear
up-sampling, a 1 x 1 classifier: per-pixel logits (B, C, H, W) at the input resolution. ``width``
sets the channel counts (w, 2w, 4w); ``in_channels=2`` is LAD's label-assisted teacher (image plus
the encoded noisy label as a second channel). The segmentation papers use DeepLabV3 / PSPNet on
ResNets; this is the CPU-sized stand-in, the same family for teacher and student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cookbook.checks import check_int


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class TinyUNet(nn.Module):
    """(B, in_channels, H, W) -> per-pixel logits (B, num_classes, H, W); H and W divisible by 4."""

    def __init__(self, num_classes: int = 21, width: int = 16, in_channels: int = 1):
        super().__init__()
        w = check_int("width", width, 1)
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.enc1, self.enc2, self.enc3 = _double_conv(in_channels, w), _double_conv(w, 2 * w), _double_conv(2 * w, 4 * w)
        self.dec2, self.dec1 = _double_conv(4 * w + 2 * w, 2 * w), _double_conv(2 * w + w, w)
        self.classifier = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) with H, W divisible by 4, got {tuple(x.shape)}")
        e1 = self.enc1(x)                                                   # (B, w, H, W)
        e2 = self.enc2(F.max_pool2d(e1, 2))                                 # (B, 2w, H/2, W/2)
        e3 = self.enc3(F.max_pool2d(e2, 2))                                 # (B, 4w, H/4, W/4)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="bilinear", align_corners=False), e1], 1))
        return self.classifier(d1)


def label_assist_channel(masks: torch.Tensor, num_classes: int = 21, *, codes: str = "random", noise: float = 0.03,
                         scale: float = 100.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """LAD's extra input: the label map with every class replaced by a scalar code, plus noise.

    masks int64 (B, H, W) -> float (B, 1, H, W) = scale * (code[b, mask] + noise * N(0, 1)).
    ``codes="random"``: a fresh N(0, 1) code per class per image (teacher training: the channel says
    which pixels belong together, not which class they are); ``"fixed"``: code_k = (k - C/2) / 10 for
    every image (the official code's choice when the teacher labels images for the student).
    ``"zero"``: an all-zero channel (the teacher without its label). scale 100 and noise 0.03 / 0.02
    are the official values. Paper: Qiu et al., arXiv 2407.13254.
    """
    check_int("num_classes", num_classes, 1)
    if masks.dim() != 3 or masks.dtype != torch.long:
        raise ValueError(f"masks must be int64 (B, H, W), got {masks.dtype} {tuple(masks.shape)}")
    if codes not in ("random", "fixed", "zero"):
        raise ValueError(f"codes must be 'random', 'fixed' or 'zero', got {codes!r}")
    B = masks.shape[0]
    if codes == "zero":
        return torch.zeros(B, 1, *masks.shape[1:], device=masks.device)
    if codes == "random":
        table = torch.randn(B, num_classes, generator=generator).to(masks.device)
    else:
        table = ((torch.arange(num_classes, dtype=torch.float32) - num_classes // 2) / 10).expand(B, -1).to(masks.device)
    value = table.gather(1, masks.flatten(1)).view_as(masks).float()
    value = value + noise * torch.randn(masks.shape, generator=generator).to(masks.device)
    return scale * value[:, None]
