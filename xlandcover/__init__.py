"""xlandcover: land-cover maps from aerial and satellite imagery, lazily, at any scale.

The top-level namespace is the public API; the subpackages follow the data flow, one stage
each, and hold the rest of it: :mod:`xlandcover.io` (rasters), :mod:`xlandcover.stac`
(catalogs), :mod:`xlandcover.training`, :mod:`xlandcover.model` (packages),
:mod:`xlandcover.prediction`, :mod:`xlandcover.evaluation`, :mod:`xlandcover.output`
(writers) and :mod:`xlandcover.jobs` (clusters). Modules whose names start with an
underscore are internal.

``import xlandcover`` is light: torch and segmentation-models-pytorch load only when a model
is built or run; distributed, stackstac, pystac-client and geopandas only when used.
"""

import logging as _logging
from types import ModuleType as _ModuleType

from . import _compat
from . import accessor as _accessor
from .errors import UnknownNameError as _UnknownNameError
from .errors import XLandcoverError
from .evaluation import (
    AreaAccuracy,
    Report,
    assess_error_matrix,
    assess_sample,
    confusion_matrix,
    evaluate,
    read_sample,
    sample_design,
    sample_size,
    score_map,
    show_results,
    write_sample,
)
from .io import (
    labels_from_colors,
    open_color_mask,
    open_raster,
    rasterize_features,
    rasterize_labels,
)
from .model import ClassInfo, ModelPackage, load_model, save_model
from .output import to_cog, to_zarr
from .prediction import predict
from .stac import Band, PixelMask, StacPreset, load_stac, register_preset
from .training import (
    Chips,
    Splits,
    TrainConfig,
    TrainResult,
    random_forest_baseline,
    sample_chips,
    spatial_split,
    train,
)

__all__ = [
    "AreaAccuracy",
    "Band",
    "Chips",
    "ClassInfo",
    "ModelPackage",
    "PixelMask",
    "Report",
    "Splits",
    "StacPreset",
    "TrainConfig",
    "TrainResult",
    "XLandcoverError",
    "assess_error_matrix",
    "assess_sample",
    "confusion_matrix",
    "evaluate",
    "labels_from_colors",
    "load_model",
    "load_stac",
    "open_color_mask",
    "open_raster",
    "predict",
    "random_forest_baseline",
    "rasterize_features",
    "rasterize_labels",
    "read_sample",
    "register_preset",
    "sample_chips",
    "sample_design",
    "sample_size",
    "save_model",
    "score_map",
    "show_results",
    "spatial_split",
    "to_cog",
    "to_zarr",
    "train",
    "write_sample",
]
__version__ = "0.1.0"

# The flat modules of xlandcover 0.1 (xlandcover.chips, xlandcover.predict, ...) still import,
# with a deprecation warning, for one release.
_compat.install()


def __getattr__(name: str) -> _ModuleType:
    module = _compat.moved_module(name)
    if module is None:
        raise _UnknownNameError(f"module 'xlandcover' has no attribute {name!r}")
    return module


_accessor.forward_docstrings()

# Library calls are quiet: log records go nowhere unless the application configures logging
# (the CLI shows INFO). Progress bars are separate (tqdm / Dask) and can be turned off.
_logging.getLogger("xlandcover").addHandler(_logging.NullHandler())
