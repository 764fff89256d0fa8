"""Offline defaults and one narrow work-around; imported first by ``cookbook/__init__``.

1. No model or data hub is reachable on our machines or CI, and every hub call would otherwise hang
   ~47 s before failing, so the offline switches default to on. A user who wants the hub sets them
   to 0 before importing cookbook.
2. PyPI only carries a CUDA build of torchvision 0.28; with the CPU torch its import fails with
   ``operator torchvision::nms does not exist``, which breaks timm and transformers. On exactly that
   error we declare the two op schemas torchvision registers kernels for, and import it again. Its
   C++ ops (nms, roi_align) stay unavailable; nothing in the cookbook uses them.
"""

from __future__ import annotations

import importlib.util
import os
import sys

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TORCHVISION_ERROR = "operator torchvision::nms does not exist"
_torchvision_lib = None  # the Library object must stay alive for the schemas to stay defined


def _import_torchvision() -> None:
    global _torchvision_lib
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as err:
        if _TORCHVISION_ERROR not in str(err):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _torchvision_lib = torch.library.Library("torchvision", "DEF")
        _torchvision_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401


_import_torchvision()
