"""xlandcover: land-cover maps from aerial and satellite imagery, lazily, at any scale.

``import xlandcover`` is light: torch and segmentation-models-pytorch load only when a model
is built or run.
"""

import logging as _logging

from . import accessor as _accessor  # noqa: F401  (registers DataArray.landcover)
from .accuracy import AreaAccuracy, assess_error_matrix, assess_sample
from .baseline import random_forest_baseline
from .chips import Chips, sample_chips
from .errors import XLandcoverError
from .evaluate import evaluate, score_map
from .gallery import show_results
from .io import open_raster
from .labels import labels_from_colors, open_color_mask
from .metrics import Report, confusion_matrix
from .package import ClassInfo, ModelPackage, load_model, save_model
from .predict import predict
from .presets import Band, PixelMask, StacPreset, register_preset
from .sampling import read_sample, sample_design, sample_size, write_sample
from .splits import Splits, spatial_split
from .stac import load_stac
from .train import TrainConfig, TrainResult, train
from .vector import rasterize_features, rasterize_labels
from .write import to_cog, to_zarr

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

# Library calls are quiet: log records go nowhere unless the application configures logging
# (the CLI shows INFO). Progress bars are separate (tqdm / Dask) and can be turned off.
_logging.getLogger("xlandcover").addHandler(_logging.NullHandler())
