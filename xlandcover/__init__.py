"""xlandcover: land-cover maps from aerial and satellite imagery, lazily, at any scale.

``import xlandcover`` is light: torch and segmentation-models-pytorch load only when a model
is built or run.
"""

from . import accessor as _accessor  # noqa: F401  (registers DataArray.landcover)
from .errors import XLandcoverError
from .io import open_raster
from .package import ClassInfo, ModelPackage, load_model, save_model
from .predict import predict
from .write import to_cog, to_zarr

__all__ = [
    "ClassInfo",
    "ModelPackage",
    "XLandcoverError",
    "load_model",
    "open_raster",
    "predict",
    "save_model",
    "to_cog",
    "to_zarr",
]
__version__ = "0.1.0"
