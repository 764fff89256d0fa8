"""``Teacher``: a frozen model that returns logits and named intermediate features, with an on-disk
cache of its outputs so a notebook runs the teacher over a data set once, not once per method."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cookbook.config import cache_dir
from cookbook.teachers.registry import freeze
from cookbook.train import predict


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Teacher:
    """Wrap a model (timm, transformers, PyG or plain torch) as a frozen teacher.

    layers: names of submodules (``model.get_submodule(name)``) whose outputs ``features`` returns.
    A module returning a tuple (transformers blocks do) contributes its first element.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] = (), name: str | None = None):
        self.model = freeze(model)
        self.name = name or type(model).__name__
        self._feats: dict[str, torch.Tensor] = {}
        self._hooks = []
        for layer in layers:
            try:
                module = model.get_submodule(layer)
            except AttributeError as err:
                raise ValueError(f"{self.name} has no submodule {layer!r}") from err
            self._hooks.append(module.register_forward_hook(self._hook(layer)))
        self.layers = list(layers)

    def _hook(self, layer: str):
        def save(module, inputs, output):
            self._feats[layer] = output[0] if isinstance(output, tuple) else output
        return save

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (sha256 prefix): part of every cache key."""
        if not hasattr(self.model, "fingerprint"):
            self.model.fingerprint = _fingerprint(self.model)
        return self.model.fingerprint

    @torch.no_grad()
    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    @torch.no_grad()
    def features(self, *args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(output, {layer: feature}) for one forward pass."""
        self._feats = {}
        out = self.model(*args, **kwargs)
        return out, dict(self._feats)

    def cached_outputs(self, X: torch.Tensor, key: str, batch_size: int = 1024) -> torch.Tensor:
        """The teacher's outputs on ``X``, computed once and kept on disk (memory-mapped .npy).

        key: a readable name for the data (e.g. "fmnist-train"). The file name also carries the
        weights' fingerprint and a hash of ``X`` itself, so new weights or other data never hit a
        stale cache (hashing 55k images takes ~0.2 s).
        """
        data_hash = hashlib.sha256(X.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
        path = cache_dir() / "teacher_outputs" / f"{self.name}-{self.fingerprint}-{key}-{data_hash}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path, mmap_mode="c"))
        device = next(self.model.parameters()).device
        out = predict(self.model, X, batch_size=batch_size, device=device)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out.numpy())
        tmp.replace(path)
        return out

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
