"""Small image classifiers for 28x28 grey images (Fashion-MNIST, MNIST)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cookbook.checks import check_int, check_keep, check_tensor
from cookbook.data.augment import mix_distribution


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


def tiny_vit(distilled: bool = False, patch_size: int = 7, embed_dim: int = 64, depth: int = 4,
             num_heads: int = 4, num_classes: int = 10) -> nn.Module:
    """A timm ViT for 28 x 28 grey images: 4 x 4 = 16 patch tokens of 7 x 7 pixels, ~0.14M params.

    ``distilled=True`` gives timm's DeiT model (``VisionTransformerDistilled``): a CLS and a DIST
    token with one head each; in training mode (after ``set_distilled_training(True)``) it returns
    both logits, in eval mode their average. Patch 7 (16 tokens) trains ~2.5x faster on a CPU
    than patch 4 (49 tokens) and lines up with the CNN teacher's 7 x 7 map pooled to 4 x 4.
    """
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls = VisionTransformerDistilled if distilled else VisionTransformer
    return cls(img_size=28, patch_size=patch_size, in_chans=1, num_classes=num_classes, embed_dim=embed_dim,
               depth=depth, num_heads=num_heads, mlp_ratio=2.0)


def tiny_mixer(patch_size: int = 7, embed_dim: int = 64, depth: int = 4, num_classes: int = 10) -> nn.Module:
    """A timm MLP-Mixer for 28 x 28 grey images: 16 patch tokens, ~0.07M parameters."""
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(img_size=28, patch_size=patch_size, in_chans=1, num_classes=num_classes,
                    embed_dim=embed_dim, num_blocks=depth, mlp_ratio=(0.5, 2.0))


def embed_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) -> the tokens a timm ViT (prefix + patches) or MLP-Mixer (patches) feeds its first block."""
    if hasattr(model, "stem"):                                   # MlpMixer
        return model.stem(x)
    return model.norm_pre(model._pos_embed(model.patch_embed(x)))


def patch_tokens(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Drop the prefix tokens (CLS, DIST) of a ViT: (B, P + N, D) -> (B, N, D)."""
    return tokens[:, getattr(model, "num_prefix_tokens", 0):]


def block_outputs(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run a timm ViT / MLP-Mixer block by block: ([tokens after each block], final output).

    The final output equals ``model(x)``; the intermediate tokens (B, P + N, D) feed OFA's branches,
    TRG's token graph and DMAE's feature loss.
    """
    tokens, h = [], embed_tokens(model, x)
    for block in model.blocks:
        h = block(h)
        tokens.append(h)
    return tokens, model.forward_head(model.norm(h))


class StageBranches(nn.Module):
    """OFA-KD branches: one small head per chosen student stage that maps its tokens to logits.

    Each branch is mean over patch tokens -> LayerNorm -> Linear(D, C), a lighter stand-in for the
    paper's branches (a few blocks of the student's own type, then a head; arXiv 2310.19444).
    ``forward(x)`` returns (final logits, [branch logits]) so the loss can supervise every stage.
    """

    def __init__(self, student: nn.Module, stages: Sequence[int], num_classes: int = 10):
        super().__init__()
        self.student, self.stages = student, list(stages)
        dim = student.embed_dim
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)) for _ in stages)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        tokens, out = block_outputs(self.student, x)
        return out, [head(patch_tokens(self.student, tokens[s]).mean(1)) for s, head in zip(self.stages, self.heads)]


def cls_dist_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two heads of a DeiT model (timm ``VisionTransformerDistilled``): (CLS logits, DIST logits).

    Token 0 is CLS, token 1 is DIST; each goes through the shared final norm and its own linear
    head. DeiT predicts with their average, which is what ``model(x)`` returns in eval mode.
    """
    feats = model.forward_features(x)                      # (B, 2 + N, D)
    return model.head(feats[:, 0]), model.head_dist(feats[:, 1])


def cnn_tokens(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
    """A CNN feature map (B, C, H, W) -> ``grid * grid`` tokens (B, grid^2, C), row-major like ViT patches.

    Adaptive average pooling: from 7 x 7 to 4 x 4, token (i, j) averages the cells that overlap
    the ViT's 7 x 7-pixel patch (i, j) (bins 0-1, 1-3, 3-5, 5-6 of the 4-pixel cells).
    """
    pooled = nn.functional.adaptive_avg_pool2d(feature_map, grid)       # (B, C, g, g)
    return pooled.flatten(2).transpose(1, 2)                             # (B, g*g, C)


class CNNTokens(nn.Module):
    """A SmallCNN up to stage ``stages``, as ``grid * grid`` tokens: (B, 1, 28, 28) -> (B, grid^2, C).

    The token teacher of TRG and DMAE (notebook 01b): ``cnn_tokens`` of the stage's feature map, so
    the teacher's tokens line up with a ViT's patch grid. Shares (does not copy) the CNN's stages.
    """

    def __init__(self, cnn: nn.Module, grid: int = 4, stages: int = 3):
        super().__init__()
        if not 1 <= stages <= 3:
            raise ValueError(f"stages must be 1, 2 or 3 (SmallCNN has stage1..stage3), got {stages}")
        self.stages = nn.Sequential(*(getattr(cnn, f"stage{i}") for i in range(1, stages + 1)))
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cnn_tokens(self.stages(x), self.grid)


def gather_patches(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The tokens of the visible patches, in the order of ``keep``: (B, N, D), (B, K) -> (B, K, D)."""
    check_tensor("tokens", tokens, ndim=3)
    check_keep(keep, tokens.shape[0], tokens.shape[1])
    return tokens.gather(1, keep[:, :, None].expand(-1, -1, tokens.shape[-1]))


def mask_patches(x: torch.Tensor, keep: torch.Tensor, patch_size: int, fill: float = 0.0) -> torch.Tensor:
    """Images with every patch outside ``keep`` set to ``fill`` (0 = the pixel mean after
    ``normalize_images``): what a CNN teacher may see in DMAE, so that its features at the visible
    patches cannot carry the content of the hidden ones. x (B, C, H, W), keep (B, K) -> (B, C, H, W)."""
    check_tensor("x", x, ndim=4)
    B, _, H, W = x.shape
    grid = W // patch_size
    check_keep(keep, B, (H // patch_size) * grid)
    visible = torch.zeros(B, (H // patch_size) * grid, dtype=x.dtype, device=x.device).scatter(1, keep, 1.0)
    pixels = visible.view(B, 1, H // patch_size, 1, grid, 1).expand(-1, -1, -1, patch_size, -1, patch_size)
    pixels = pixels.reshape(B, 1, H, W)
    return x * pixels + fill * (1 - pixels)


def visible_block_outputs(vit: nn.Module, x: torch.Tensor, keep: torch.Tensor,
                          depth: int | None = None) -> list[torch.Tensor]:
    """A timm ViT run on the visible patches only, as MAE's encoder: [(B, 1 + K, D) after each block].

    Patch embedding plus position embedding, keep the ``keep`` patches (B, K), prepend the CLS
    token, then the first ``depth`` blocks (all by default: a DMAE teacher runs only up to the block
    it is matched at). The hidden patches never enter, so nothing of them can reach the output.
    """
    n_blocks = len(vit.blocks)
    depth = n_blocks if depth is None else depth
    if not 1 <= depth <= n_blocks:
        raise ValueError(f"depth must be in 1..{n_blocks}, got {depth}")
    patches = vit.patch_embed(x) + vit.pos_embed[:, vit.num_prefix_tokens:]      # (B, N, D)
    h = torch.cat([(vit.cls_token + vit.pos_embed[:, :1]).expand(len(x), -1, -1), gather_patches(patches, keep)], 1)
    outs = []
    for block in vit.blocks[:depth]:
        h = block(h)
        outs.append(h)
    return outs


class MaskedAutoencoder(nn.Module):
    """MAE pre-training around a timm ViT (He et al., 2022) with DMAE's feature head (arXiv 2208.12256).

    The encoder (the ViT's own patch embedding, position embedding, CLS token and blocks) sees only
    the visible patches (``visible_block_outputs``); a light decoder (``decoder_dim``, one block)
    puts mask tokens back and predicts the pixels of every patch. ``feature_dim`` > 0 adds DMAE's
    projection head (one linear layer, the official ``fc-1layer``), applied to the visible patch
    tokens after block ``feature_block``, to be matched to the teacher's features at the same
    patches. After pre-training, ``self.vit`` is fine-tuned as an ordinary classifier.
    """

    def __init__(self, vit: nn.Module, decoder_dim: int = 32, feature_dim: int = 0, feature_block: int = 2):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.vit, self.feature_block = vit, feature_block
        dim, n, p = vit.embed_dim, vit.patch_embed.num_patches, vit.patch_embed.patch_size[0]
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.randn(1, n, decoder_dim) * 0.02)
        self.decoder = Block(decoder_dim, num_heads=2, mlp_ratio=2.0)
        self.decoder_pred = nn.Linear(decoder_dim, p * p * vit.patch_embed.proj.in_channels)
        self.feature_head = nn.Linear(dim, feature_dim) if feature_dim > 0 else None

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, 1, 28, 28), keep (B, K) indices of visible patches ->
        (pixel predictions for all patches (B, N, p*p), projected visible features (B, K, F) or None)."""
        hidden = visible_block_outputs(self.vit, x, keep)
        feats = None if self.feature_head is None else self.feature_head(hidden[self.feature_block][:, 1:])
        d = self.decoder_embed(self.vit.norm(hidden[-1])[:, 1:])                          # (B, K, d)
        full = self.mask_token.expand(len(x), self.decoder_pos.shape[1], -1).clone()
        full = full.scatter(1, keep[:, :, None].expand(-1, -1, d.shape[-1]), d) + self.decoder_pos
        return self.decoder_pred(self.decoder(full)), feats


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch_size^2 * C) in the ViT's row-major patch order."""
    B, C, H, W = x.shape
    p = patch_size
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def random_keep(batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (B, K) of the visible patches, K = max(1, round(N * (1 - mask_ratio))), per-image random."""
    check_int("batch", batch, 1)
    check_int("num_patches", num_patches, 1)
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1): 0 masks nothing, 1 leaves nothing visible; got {mask_ratio}")
    k = max(1, round(num_patches * (1 - mask_ratio)))
    return torch.rand(batch, num_patches, generator=generator).argsort(1)[:, :k]



# ----------------------------------------------------------------------------- notebook 01c / 01d additions


def small_vit(embed_dim: int = 64, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 4.0,
              patch_size: int = 7, num_classes: int = 10) -> nn.Module:
    """A timm ViT for 28 x 28 grey images with a configurable MLP width: 16 patch tokens + CLS.

    The defaults (d = 64, 4 blocks, 4 heads, MLP 64 -> 256 -> 64) give ~0.2M parameters, the
    dense teacher of notebook 01c, whose MLPs (64% of a block's multiply-adds) ACM replaces.
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=28, patch_size=patch_size, in_chans=1, num_classes=num_classes,
                             embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)


def block_with_attention(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One timm ViT block that also returns its attention probabilities: (output (B, T, D), attn (B, H, T, T)).

    The same computation as ``block(x)`` (norm, qkv, softmax(q k^T * scale), projection, residual,
    MLP), written out so the attention map is available with gradients (timm's fused path hides it).
    """
    attn_mod = block.attn
    B, T, _ = x.shape
    qkv = attn_mod.qkv(block.norm1(x)).reshape(B, T, 3, attn_mod.num_heads, attn_mod.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn_mod.q_norm(q), attn_mod.k_norm(k)
    attn = ((q * attn_mod.scale) @ k.transpose(-2, -1)).softmax(-1)                     # (B, H, T, T)
    h = attn_mod.proj(attn_mod.norm((attn @ v).transpose(1, 2).reshape(B, T, -1)))
    x = x + block.drop_path1(block.ls1(h))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, attn


def vit_forward_tokens(model: nn.Module, x: torch.Tensor, keep: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A timm ViT on the CLS token and the kept patch tokens: (final normed tokens (B, 1 + K, D), [attn per block]).

    keep: (B, K) int64 indices of the patches to keep (all 16 when None), in the order given; each
    kept token carries its own position embedding, so dropping tokens is "masking" them out of the
    sequence (Hybrid Distill's redundant-token masking). Attention maps are (B, H, 1 + K, 1 + K).
    """
    tokens = model.patch_embed(x) + model.pos_embed[:, 1:]                               # (B, N, D)
    if keep is not None:
        tokens = tokens.gather(1, keep[:, :, None].expand(-1, -1, tokens.shape[-1]))
    h = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(len(x), -1, -1), tokens], 1)
    h = model.norm_pre(h)
    attns = []
    for block in model.blocks:
        h, a = block_with_attention(block, h)
        attns.append(a)
    return model.norm(h), attns


def cnn_features(model: nn.Module, x: torch.Tensor, grid: int = 1) -> torch.Tensor:
    """A SmallCNN / PlainCNN's last stage, average-pooled to ``grid`` x ``grid``: (B, 1, 28, 28) -> (B, C * grid^2).

    grid 1 is the global average pool; grid 2 keeps a coarse what-is-where (top/bottom, left/right),
    which Fashion-MNIST classes differ by (P29's source features, notebook 01d)."""
    h = model.stage3(model.stage2(model.stage1(x)))
    return h.mean((2, 3)) if grid == 1 else nn.functional.adaptive_avg_pool2d(h, grid).flatten(1)


class PooledCNN(nn.Module):
    """PlainCNN stages -> global average pool -> features (B, C) -> linear head, plus optional extra heads.

    ``features(x)`` returns the pooled features; ``extra_heads`` (one Linear(C, d_s) per entry of
    ``extra_dims``) map them to other targets: the per-source feature regressors of P29's
    multi-source distillation. A small target model (~11k parameters at the default widths).
    """

    def __init__(self, stages: Sequence[Sequence[int]] = ((8,), (16,), (32,)), num_classes: int = 10,
                 extra_dims: Sequence[int] = (), in_channels: int = 1):
        super().__init__()
        body = PlainCNN(stages, num_classes=num_classes, in_channels=in_channels)
        self.stage1, self.stage2, self.stage3 = body.stage1, body.stage2, body.stage3
        width = stages[-1][-1]
        self.head = nn.Linear(width, num_classes)
        self.extra_heads = nn.ModuleList(nn.Linear(width, d) for d in extra_dims)

    def features(self, x: torch.Tensor) -> torch.Tensor:   # (B, 1, 28, 28) -> (B, C)
        return cnn_features(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class AlignedStudent(nn.Module):
    """A small CNN whose last map is projected to the teacher's channels and read by a head shaped like the teacher's.

    stages -> (B, c, 7, 7) -> 1x1 conv to ``teacher_channels`` -> flatten -> Linear(teacher_channels * 49, C):
    the head has the same shape as SmallCNN's, so KD3's classifier alignment can compare the two
    parameter by parameter and the projected map can be matched to the teacher's stage-3 map.
    ``forward(x, mix=None)``: ``mix = (perm, lam)`` applies MixDistribution to the stage-1 map
    (``cookbook.data.augment.mix_distribution``) before the rest of the network.
    """

    def __init__(self, stages: Sequence[Sequence[int]] = ((8,), (16,), (32,)), teacher_channels: int = 128,
                 num_classes: int = 10):
        super().__init__()
        body = PlainCNN(stages, num_classes=num_classes)
        self.stage1, self.stage2, self.stage3 = body.stage1, body.stage2, body.stage3
        self.proj = nn.Conv2d(stages[-1][-1], teacher_channels, 1)
        self.head = nn.Linear(teacher_channels * 49, num_classes)

    def features(self, x: torch.Tensor, mix: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, 1, 28, 28) -> projected map (B, teacher_channels, 7, 7)."""
        h = self.stage1(x)
        if mix is not None:
            h = mix_distribution(h, *mix)
        return self.proj(self.stage3(self.stage2(h)))

    def forward(self, x: torch.Tensor, mix: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return self.head(self.features(x, mix).flatten(1))
