"""Small reference students and teachers that timm/transformers/PyG do not provide."""

from cookbook.models.acm import AdaptiveComputationModule, acmize, set_acm_mode, vit_macs
from cookbook.models.segmentation import TinyUNet, label_assist_channel
from cookbook.models.vision import (
    MLP,
    AlignedStudent,
    CNNTokens,
    DualHead,
    MaskedAutoencoder,
    PlainCNN,
    PooledCNN,
    SmallCNN,
    StageBranches,
    TinyResNet,
    block_outputs,
    block_with_attention,
    cls_dist_logits,
    cnn_features,
    cnn_tokens,
    gather_patches,
    mask_patches,
    patch_tokens,
    patchify,
    random_keep,
    small_vit,
    tiny_mixer,
    tiny_vit,
    visible_block_outputs,
    vit_forward_tokens,
)

__all__ = ["AdaptiveComputationModule", "AlignedStudent", "PooledCNN", "TinyUNet", "acmize", "block_with_attention",
           "cnn_features", "label_assist_channel", "set_acm_mode", "small_vit", "vit_forward_tokens", "vit_macs",
           "MLP", "CNNTokens", "DualHead", "MaskedAutoencoder", "PlainCNN", "SmallCNN", "StageBranches",
           "TinyResNet", "block_outputs", "cls_dist_logits", "cnn_tokens", "gather_patches", "mask_patches",
           "patch_tokens", "patchify", "random_keep", "tiny_mixer", "tiny_vit", "visible_block_outputs"]
