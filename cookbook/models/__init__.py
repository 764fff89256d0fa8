"""Small reference students and teachers that timm/transformers/PyG do not provide."""

from cookbook.models.vision import MLP, SmallCNN

__all__ = ["MLP", "SmallCNN"]
