"""Small reference students and teachers that timm/transformers/PyG do not provide."""

from cookbook.models.vision import (
    MLP,
    CNNTokens,
    DualHead,
    MaskedAutoencoder,
    PlainCNN,
    SmallCNN,
    StageBranches,
    TinyResNet,
    block_outputs,
    cls_dist_logits,
    cnn_tokens,
    gather_patches,
    mask_patches,
    patch_tokens,
    patchify,
    random_keep,
    tiny_mixer,
    tiny_vit,
    visible_block_outputs,
)

__all__ = ["MLP", "CNNTokens", "DualHead", "MaskedAutoencoder", "PlainCNN", "SmallCNN", "StageBranches",
           "TinyResNet", "block_outputs", "cls_dist_logits", "cnn_tokens", "gather_patches", "mask_patches",
           "patch_tokens", "patchify", "random_keep", "tiny_mixer", "tiny_vit", "visible_block_outputs"]
