"""Small reference students and teachers that timm/transformers/PyG do not provide."""

from cookbook.models.vision import MLP, DualHead, PlainCNN, SmallCNN, TinyResNet

__all__ = ["MLP", "DualHead", "PlainCNN", "SmallCNN", "TinyResNet"]
