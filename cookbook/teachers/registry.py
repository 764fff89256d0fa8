"""Teacher registry: name -> architecture, committed weights, the recipe that made them, its metric.

``load(name)`` returns a frozen eval-mode model whose safetensors file was checked against
assets/MANIFEST. ``build(name)`` (``python -m cookbook.teachers build NAME``) reruns the recipe,
overwrites the asset, re-registers its sha256 and writes the measured metric next to it.
"""

from __future__ import annotations

import json
import time
from datetime import date

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cookbook import assets
from cookbook.config import ASSETS
from cookbook.teachers.spec import TeacherSpec, freeze
from cookbook.utils import device_name, git_commit, weights_version

REGISTRY: dict[str, TeacherSpec] = {}   # teachers registered at run time (``register``)


def _committed() -> dict[str, TeacherSpec]:
    """The committed teachers' specs, imported on first use (they pull in data, models, train)."""
    from cookbook.teachers.lm_student import SPEC as LM_STUDENT
    from cookbook.teachers.recipes import SPECS

    return {**SPECS, LM_STUDENT.name: LM_STUDENT}


def specs() -> dict[str, TeacherSpec]:
    """Every known teacher: the committed ones and those registered at run time."""
    return {**_committed(), **REGISTRY}


def register(spec: TeacherSpec) -> TeacherSpec:
    """Add a teacher (e.g. one you trained) so ``load``/``build``/``card`` know its name."""
    if spec.name in specs():
        raise ValueError(f"teacher {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> TeacherSpec:
    known = specs()
    if name not in known:
        raise ValueError(f"unknown teacher {name!r}; available: {sorted(known)}")
    return known[name]


def card(name: str) -> dict:
    """The teacher's card: recipe, the labels it saw, measured metrics, date, device, commit, sha256.

    ``labels`` comes from the spec, so a card built before the field existed still says it."""
    spec = get_spec(name)
    return {"labels": spec.labels, **json.loads(assets.asset(spec.card).read_text())}


def _aliases(model: nn.Module) -> dict[str, str]:
    """State-dict keys that share storage with an earlier key (tied weights) -> that earlier key."""
    first, out = {}, {}
    for key, value in model.state_dict(keep_vars=True).items():
        ptr = value.data_ptr()
        if ptr in first:
            out[key] = first[ptr]
        else:
            first[ptr] = key
    return out


def load(name: str, device: torch.device | str = "cpu", trainable: bool = False) -> nn.Module:
    """The registered teacher ``name``: architecture + sha256-checked safetensors weights, frozen.

    ``trainable=True`` returns it in train mode with gradients on instead: a registered *student*
    checkpoint to start from (e.g. ``stdlib-llama-3m``). Weights stored in a lower precision
    (``TeacherSpec.storage_dtype``) are cast back to the architecture's dtype; tied weights (e.g.
    a tied LM head) are stored once.
    """
    spec = get_spec(name)
    path = assets.asset(spec.asset)               # raises a clear error if missing or corrupt
    model = spec.architecture()
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or set(missing) - set(_aliases(model)):
        raise ValueError(f"{path} does not fit {name}'s architecture (missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}): rebuild it")
    model = freeze(model.to(device)) if not trainable else model.to(device).requires_grad_(True).train()
    model.fingerprint = assets.read_manifest()[spec.asset][0][:16]   # keys the output caches ...
    model.fingerprint_version = weights_version(model)                # ... until the weights change
    return model


def build(name: str, seed: int = 0) -> dict:
    """Rerun ``name``'s recipe, write its safetensors asset and card, update MANIFEST; return the card."""
    spec = get_spec(name)
    start = time.perf_counter()
    model, metrics = spec.recipe(seed)
    path = ASSETS / spec.asset
    path.parent.mkdir(parents=True, exist_ok=True)
    aliases = _aliases(model)
    state = {k: v.detach().cpu().to(spec.storage_dtype or v.dtype).contiguous()
             for k, v in model.state_dict().items() if k not in aliases}
    save_file(state, str(path))
    digest = assets.register(path)
    info = {
        "name": name, "description": spec.description, "labels": spec.labels, "seed": seed, "metric": spec.metric,
        "metrics": metrics, "parameters": sum(p.numel() for p in model.parameters()),
        "sha256": digest, "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - start, 1),
        "device": device_name(), "date": date.today().isoformat(), "commit": git_commit(),
        "rebuild": f"python -m cookbook.teachers build {name}",
    }
    card_path = ASSETS / spec.card
    card_path.write_text(json.dumps(info, indent=2) + "\n")
    assets.register(card_path)
    return info
