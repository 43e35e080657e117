"""Catalog imagery: STAC presets, search, the target grid and temporal composites, assembled
by :func:`load_stac` into a lazy, model-ready ``(band, y, x)`` DataArray."""

from ._composite import COMPOSITES, composite, register_composite
from ._grid import TargetGrid, check_bbox, snapped_bounds, target_epsg, utm_epsg
from ._load import GDAL_CLOUD_ENV, STACKERS, load_stac
from ._presets import (
    NAIP,
    SCL_MASKED,
    SENTINEL2_L2A,
    Band,
    PixelMask,
    StacPreset,
    get_preset,
    presets,
    register_preset,
    sentinel2_boa_offset,
)
from ._search import StacSearch, search_items

__all__ = [
    "COMPOSITES",
    "GDAL_CLOUD_ENV",
    "NAIP",
    "SCL_MASKED",
    "SENTINEL2_L2A",
    "STACKERS",
    "Band",
    "PixelMask",
    "StacPreset",
    "StacSearch",
    "TargetGrid",
    "check_bbox",
    "composite",
    "get_preset",
    "load_stac",
    "presets",
    "register_composite",
    "register_preset",
    "search_items",
    "sentinel2_boa_offset",
    "snapped_bounds",
    "target_epsg",
    "utm_epsg",
]
