"""The single module through which xlandcover imports torch and segmentation-models-pytorch.

Keeping these imports here means ``import xlandcover`` stays light, and the torchvision
workaround below runs before smp/timm are imported, in every process (Dask workers too).
"""

from __future__ import annotations

import sys

import torch


def _import_torchvision() -> None:
    # Some torchvision wheels (CUDA builds next to a CPU torch) fail in their C extension and
    # then in ``register_fake("torchvision::nms")``. smp and timm import torchvision, so define
    # the two operator schemas and import it again; its C++ ops stay unavailable (unused here).
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)
        import torchvision  # noqa: F401


_KEEP: list[object] = []
_import_torchvision()

import segmentation_models_pytorch as smp  # noqa: E402

__all__ = ["smp", "torch"]
