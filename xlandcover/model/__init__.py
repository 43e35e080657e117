"""Model packages (safetensors weights plus JSON metadata in one file), building their torch
modules, and the per-process model cache and device choice that ``predict`` uses."""

from ._package import (
    ARCHITECTURES,
    FORMAT_VERSION,
    INPUT_RANGE_KEY,
    NODATA_LABEL,
    ClassInfo,
    ModelPackage,
    PackageMetadata,
    band_range,
    build_architecture,
    hex_to_rgb,
    known_architecture,
    load_model,
    package_from_bytes,
    package_model,
    register_architecture,
    save_model,
    with_metadata,
    with_temperature,
)
from ._runtime import clear_cache, resolve_device
from ._spectral import INDICES, available_indices, resolve_indices

__all__ = [
    "ARCHITECTURES",
    "FORMAT_VERSION",
    "INDICES",
    "INPUT_RANGE_KEY",
    "NODATA_LABEL",
    "ClassInfo",
    "ModelPackage",
    "PackageMetadata",
    "available_indices",
    "band_range",
    "build_architecture",
    "clear_cache",
    "hex_to_rgb",
    "known_architecture",
    "load_model",
    "package_from_bytes",
    "package_model",
    "register_architecture",
    "resolve_device",
    "resolve_indices",
    "save_model",
    "with_metadata",
    "with_temperature",
]
