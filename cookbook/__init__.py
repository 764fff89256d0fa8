"""distill-cookbook: executable knowledge-distillation recipes (see README.md)."""

from cookbook import _compat  # noqa: F401  (must run before any timm/transformers import)

__version__ = "0.1.0"
