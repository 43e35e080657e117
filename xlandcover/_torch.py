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


def _start_openmp() -> None:
    # Run one parallel region in the importing thread (predict()'s caller, normally the main
    # thread) so torch's OpenMP runtime starts there. When a Dask worker thread was the first
    # to run one, every later forward pass in the process ran 2-4x slower on the busy 2-core
    # machine (measured: 9 windows of U-Net/ResNet-34 in 19.3 s instead of 8.1 s; with
    # OMP_WAIT_POLICY=PASSIVE both were fast, so it is OpenMP threads spinning). Microseconds.
    torch.ones(1 << 16).add_(1)


_KEEP: list[object] = []
_import_torchvision()
_start_openmp()

import segmentation_models_pytorch as smp  # noqa: E402

__all__ = ["smp", "torch"]
