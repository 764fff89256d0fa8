"""``Teacher``: a frozen model that returns logits and named intermediate features, with an on-disk
cache of its outputs so a notebook runs the teacher over a data set once, not once per method.

The contract (what a teacher you bring must do):
- any ``nn.Module`` (plain torch, timm, transformers, PyG): ``teacher(*args)`` calls the model under
  ``no_grad`` in eval mode;
- its output may be a tensor, a transformers ``ModelOutput`` / dict, or a tuple: the wrapper returns
  the field ``output`` ("logits" by default; a tuple's first element; pass ``output=None`` for the
  raw output, or another field name such as "last_hidden_state");
- ``cached_outputs(X, key)`` runs it over one input tensor ``X`` in batches; the cache file is keyed
  on the weights' fingerprint, recomputed whenever a parameter or buffer changed in place (an
  optimizer step, ``load_state_dict``), and on a hash of ``X``, so it cannot go stale.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cookbook.config import cache_dir
from cookbook.teachers.spec import freeze
from cookbook.train import predict
from cookbook.utils import weights_fingerprint, weights_version

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def select_output(out, field: str | None = "logits"):
    """The tensor a teacher returns: ``out`` itself if a tensor, else its ``field`` (ModelOutput, dict
    or attribute), else the first element of a tuple/list. ``field=None`` returns ``out`` unchanged."""
    if field is None or isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) or hasattr(out, "keys"):                 # transformers ModelOutput is a dict
        if field not in out.keys():
            raise ValueError(f"the teacher's output has no field {field!r}; it has {list(out.keys())}: "
                             f"pass Teacher(..., output=<one of them>)")
        return out[field]
    if hasattr(out, field):                                           # any object carrying the field
        return getattr(out, field)
    if isinstance(out, (tuple, list)) and out:
        return out[0]
    raise TypeError(f"cannot take {field!r} from a teacher output of type {type(out).__name__}: "
                    "return a tensor, a ModelOutput/dict or a tuple, or pass output=None")


class _Selected(nn.Module):
    """The model with its output narrowed to one tensor (what ``predict`` batches and caches)."""

    def __init__(self, model: nn.Module, field: str | None):
        super().__init__()
        self.model, self.field = model, field

    def forward(self, x):
        return select_output(self.model(x), self.field)


class Teacher:
    """Wrap a model (timm, transformers, PyG or plain torch) as a frozen teacher.

    layers: names of submodules (``model.get_submodule(name)``) whose outputs ``features`` returns.
    A module returning a tuple (transformers blocks do) contributes its first element.
    output: the field of a structured output to return (see the module docstring).
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] = (), name: str | None = None,
                 output: str | None = "logits"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Teacher needs a torch.nn.Module, got {type(model).__name__}")
        if isinstance(layers, str):
            raise TypeError(f"layers must be a list of submodule names, got the string {layers!r}: "
                            f"write layers=[{layers!r}]")
        self.model = freeze(model)
        self.name = name or type(model).__name__
        self.output = output
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
        """Identifies the current weights (sha256 prefix): part of every cache key.

        A registered teacher starts with its asset's sha256 (``teachers.load`` sets it); any in-place
        change of a parameter or buffer afterwards makes the wrapper hash the weights again.
        """
        versions = weights_version(self.model)
        if getattr(self.model, "fingerprint_version", None) != versions or not hasattr(self.model, "fingerprint"):
            self.model.fingerprint = weights_fingerprint(self.model)
            self.model.fingerprint_version = versions
        return self.model.fingerprint

    @torch.no_grad()
    def __call__(self, *args, **kwargs):
        return select_output(self.model(*args, **kwargs), self.output)

    @torch.no_grad()
    def features(self, *args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(output, {layer: feature}) for one forward pass."""
        self._feats = {}
        out = self(*args, **kwargs)
        return out, dict(self._feats)

    def cached_outputs(self, X: torch.Tensor, key: str, batch_size: int = 1024) -> torch.Tensor:
        """The teacher's outputs on ``X``, computed once and kept on disk (memory-mapped .npy).

        key: a readable name for the data (e.g. "fmnist-train"; letters, digits, ``._-``). The file
        name also carries the weights' fingerprint and a hash of ``X`` itself, so new weights or
        other data never hit a stale cache (hashing 55k images takes ~0.2 s).
        """
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"cache key must be letters, digits, '.', '_' or '-' (no path), got {key!r}")
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"cached_outputs needs X as a torch.Tensor, got {type(X).__name__}")
        name = re.sub(r"[^A-Za-z0-9._-]", "-", self.name)
        data_hash = hashlib.sha256(X.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
        path = cache_dir() / "teacher_outputs" / f"{name}-{self.fingerprint}-{key}-{data_hash}.npy"
        if path.exists():
            return torch.from_numpy(np.load(path, mmap_mode="c"))
        out = predict(_Selected(self.model, self.output), X, batch_size=batch_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out.numpy())
        tmp.replace(path)
        return out

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
