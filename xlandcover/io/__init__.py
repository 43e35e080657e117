"""Reading rasters: local images and label rasters as lazy ``(band, y, x)`` / ``(y, x)``
DataArrays, colour-coded masks as class ids, and what counts as nodata."""

from ._labels import as_label_raster, classes_from_attrs, labels_from_colors, open_color_mask
from ._nodata import valid_mask
from ._raster import PIXEL_GRID_ATTR, check_chunks, open_raster

__all__ = [
    "PIXEL_GRID_ATTR",
    "as_label_raster",
    "check_chunks",
    "classes_from_attrs",
    "labels_from_colors",
    "open_color_mask",
    "open_raster",
    "valid_mask",
]
