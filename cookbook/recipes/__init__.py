"""Script entry points that also run under ``torchrun`` (``python -m cookbook.recipes.<name>``)."""
