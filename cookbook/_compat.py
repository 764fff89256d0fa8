"""Offline defaults and one narrow work-around; imported first by ``cookbook/__init__``.

1. No model or data hub is reachable on our machines or CI, and every hub call would otherwise hang
   ~47 s before failing, so the offline switches default to on. A user who wants the hub sets them
   to 0 before importing cookbook.
2. PyPI only carries a CUDA build of torchvision 0.28; with the CPU torch its import fails with
   ``operator torchvision::nms does not exist``, which breaks timm and transformers. On exactly that
   error we declare the two op schemas torchvision registers kernels for, and run its import again.
   Its C++ ops (nms, roi_align) stay unavailable; nothing in the cookbook uses them. The fix waits
   for the first ``import torchvision`` (an import hook), so ``import cookbook`` stays fast.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TORCHVISION_ERROR = "operator torchvision::nms does not exist"
_torchvision_lib = None  # the Library object must stay alive for the schemas to stay defined


def _define_torchvision_schemas() -> None:
    global _torchvision_lib
    import torch

    _torchvision_lib = torch.library.Library("torchvision", "DEF")
    _torchvision_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _TorchvisionLoader(importlib.abc.Loader):
    """Runs torchvision's own loader; on exactly the CPU-torch error, defines the schemas and reruns it."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):                      # resource readers etc. come from the real loader
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        except RuntimeError as err:
            if _TORCHVISION_ERROR not in str(err):
                raise
            _define_torchvision_schemas()
            for name in [m for m in sys.modules if m.startswith("torchvision.")]:
                del sys.modules[name]
            self.loader.exec_module(module)
        for finder in [f for f in sys.meta_path if isinstance(f, _TorchvisionFinder)]:
            sys.meta_path.remove(finder)              # imported: the hook has done its job


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _TorchvisionLoader(spec.loader)
        return spec


if "torchvision" not in sys.modules:
    sys.meta_path.insert(0, _TorchvisionFinder())
