"""Small reference students and teachers that timm/transformers/PyG do not provide."""

from cookbook.models.vision import (
    MLP,
    MaskedAutoencoder,
    SmallCNN,
    StageBranches,
    block_outputs,
    cls_dist_logits,
    cnn_tokens,
    patch_tokens,
    patchify,
    random_keep,
    tiny_mixer,
    tiny_vit,
)

__all__ = ["MLP", "MaskedAutoencoder", "SmallCNN", "StageBranches", "block_outputs", "cls_dist_logits",
           "cnn_tokens", "patch_tokens", "patchify", "random_keep", "tiny_mixer", "tiny_vit"]
