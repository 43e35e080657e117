"""Reading inputs: local images and label rasters as lazy ``(band, y, x)`` / ``(y, x)``
DataArrays, colour-coded masks as class ids, vector labels (points, lines, polygons) burnt
onto an image's grid, and what counts as nodata."""

from ._labels import as_label_raster, classes_from_attrs, labels_from_colors, open_color_mask
from ._nodata import valid_mask
from ._raster import PIXEL_GRID_ATTR, check_chunks, open_raster
from ._vector import is_vector, rasterize_features, rasterize_labels, read_vector

__all__ = [
    "PIXEL_GRID_ATTR",
    "as_label_raster",
    "check_chunks",
    "classes_from_attrs",
    "is_vector",
    "labels_from_colors",
    "open_color_mask",
    "open_raster",
    "rasterize_features",
    "rasterize_labels",
    "read_vector",
    "valid_mask",
]
