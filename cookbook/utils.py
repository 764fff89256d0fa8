"""Seeds, device choice and the environment report every notebook prints first."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
from functools import lru_cache

import numpy as np
import torch

from cookbook.config import ROOT, mode


def set_seed(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator seeded the same (for data order)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 prefix (16 hex) of a model's parameters and buffers, names included: keys its caches."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]


def weights_version(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is modified in place or replaced (cheap: no hashing)."""
    return tuple((t.data_ptr(), t._version) for t in model.state_dict(keep_vars=True).values())


def device() -> torch.device:
    """``$COOKBOOK_DEVICE`` if set, else CUDA when present, else CPU."""
    name = os.environ.get("COOKBOOK_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name() -> str:
    """A human name for the compute device, e.g. 'NVIDIA H100' or 'cpu (2 threads)'."""
    dev = device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Short commit of the repo, with '+dirty' when the tree has changes; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def env_report() -> dict:
    """Print (and return) what a reader needs to reproduce a run: mode, versions, device, commit."""
    import cookbook

    info = {
        "mode": mode(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cookbook": cookbook.__version__,
        "device": device_name(),
        "commit": git_commit(),
        "offline": os.environ.get("HF_HUB_OFFLINE") == "1",
    }
    print("  ".join(f"{k}={v}" for k, v in info.items()))
    return info
