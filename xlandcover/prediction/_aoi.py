"""The area of interest of a prediction: which chunks run, which pixels are inside.

``predict(..., aoi=...)`` takes a shapely geometry (in the image's CRS), a GeoDataFrame or
GeoSeries, or a vector file (any CRS: reprojected to the image's with geopandas/pyproj).
Before any graph is built, the chunks whose footprint does not meet the area are set aside:
they become constant nodata blocks that read nothing and run nothing
(:func:`~xlandcover.prediction._graph.fill_outside`). Chunks that meet it are predicted as
without an area, halo and all (a window touching the area sees its real neighbours), and the
pixels whose centres lie outside the area are set to nodata afterwards. Which pixels are
inside is decided by :func:`rasterio.features.rasterize` on each chunk, grown by a pixel inside
the scene as :mod:`xlandcover.io` does for labels, so it does not depend on the chunking.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..errors import AreaOfInterestError, AreaOutsideRasterError

if TYPE_CHECKING:
    from affine import Affine

#: What ``aoi=`` takes.
AreaOfInterest = Any  # shapely geometry | GeoDataFrame | GeoSeries | str | os.PathLike


def area_in_image_crs(aoi: AreaOfInterest, image: xr.DataArray) -> Any:
    """``aoi`` as one valid, non-empty polygonal shapely geometry in ``image``'s CRS, that
    overlaps the image (errors otherwise, each saying how to fix it)."""
    import shapely

    geom, what = _geometry(aoi, image)
    if geom is None or shapely.is_empty(geom):
        raise AreaOfInterestError(
            f"the area of interest ({what}) is empty: it holds no geometry; check the file or "
            "the selection it was cut from"
        )
    if not shapely.is_valid(geom):
        raise AreaOfInterestError(
            f"the area of interest ({what}) is not a valid geometry "
            f"({shapely.is_valid_reason(geom)}); repair it with `shapely.make_valid(geom)` "
            "or `gdf.make_valid()` (QGIS: Vector > Geometry Tools > Fix Geometries)"
        )
    if shapely.area(geom) <= 0:
        raise AreaOfInterestError(
            f"the area of interest ({what}) has no area ({geom.geom_type}); give polygons, "
            "e.g. buffer points or lines first (`gdf.buffer(distance)`)"
        )
    bounds = raster_bounds(image)
    if not shapely.intersects(geom, shapely.box(*bounds)):
        crs = image.rio.crs.to_string() if image.rio.crs is not None else "pixel coordinates"
        raise AreaOutsideRasterError(
            f"the area of interest ({what}) does not overlap the raster: its bounds "
            f"{_fmt(shapely.bounds(geom))} vs the raster's {_fmt(bounds)} (in {crs}). Check "
            "the area's CRS (a file must record the CRS its coordinates are in; a bare shapely "
            "geometry is taken in the raster's CRS) and that it is the right file"
        )
    return geom


def raster_bounds(image: xr.DataArray) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the image's pixels, in its CRS."""
    t = image.rio.transform()
    h, w = image.sizes["y"], image.sizes["x"]
    xs = [t.c, t.c + t.a * w]
    ys = [t.f, t.f + t.e * h]
    return min(xs), min(ys), max(xs), max(ys)


def chunks_meeting(
    geom: Any, transform: Affine, row_chunks: tuple[int, ...], col_chunks: tuple[int, ...]
) -> np.ndarray:
    """``(rows, cols)`` bool: whether each chunk's footprint meets ``geom``."""
    import shapely

    re = np.cumsum((0, *row_chunks))
    ce = np.cumsum((0, *col_chunks))
    x0, y0 = _xy(transform, ce[:-1][None, :], re[:-1][:, None])
    x1, y1 = _xy(transform, ce[1:][None, :], re[1:][:, None])
    boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                        np.maximum(y0, y1))  # fmt: skip
    shapely.prepare(geom)
    return np.asarray(shapely.intersects(geom, boxes), dtype=bool)


def inside_mask(
    geom: Any,
    transform: Affine,
    interior: tuple[int, int, int, int],
    scene: tuple[int, int],
) -> np.ndarray:
    """Which pixels of the chunk ``interior`` = ``(y0, y1, x0, x1)`` (global) have their
    centre inside ``geom``; the same whatever the chunking (see the module docstring)."""
    import shapely

    from ..io._vector import _burn, _quiet_rasterize, _translation

    y0, y1, x0, x1 = interior
    pad = (int(y0 > 0), int(y1 < scene[0]), int(x0 > 0), int(x1 < scene[1]))
    origin = transform * _translation(x0 - pad[2] - 2, y0 - pad[0] - 2)
    end = transform * _translation(x1 + pad[3] + 2, y1 + pad[1] + 2)
    # only the part of the area near the chunk (2 px beyond the rasterised block, so no new
    # edge of the clipped polygon falls on a pixel centre)
    ax, ay = origin * (0, 0)
    bx, by = end * (0, 0)
    part = shapely.clip_by_rect(geom, min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
    if shapely.is_empty(part):
        return np.zeros((y1 - y0, x1 - x0), dtype=bool)
    _quiet_rasterize()
    block = transform * _translation(x0 - pad[2], y0 - pad[0])
    burnt = _burn(np.array([part], dtype=object), np.array([1]), block, (y1 - y0, x1 - x0),
                  pad, 0, np.uint8, False)  # fmt: skip
    return burnt.astype(bool)


def _geometry(aoi: AreaOfInterest, image: xr.DataArray) -> tuple[Any, str]:
    import shapely

    if isinstance(aoi, shapely.Geometry):
        return aoi, f"a {aoi.geom_type}"
    if isinstance(aoi, str | os.PathLike):
        from ..io._vector import read_vector

        table: Any = read_vector(aoi)
        what = f"vector file {os.fspath(aoi)}"
    else:
        gpd = _geopandas_or_none()
        if gpd is None or not isinstance(aoi, gpd.GeoDataFrame | gpd.GeoSeries):
            raise AreaOfInterestError(
                f"aoi must be a shapely geometry, a GeoDataFrame or GeoSeries, or the path of "
                f"a vector file, not {type(aoi).__name__}"
            )
        table, what = aoi, f"a {type(aoi).__name__}"
    from ..io._vector import check_vector_crs

    image_crs = image.rio.crs
    check_vector_crs(table.crs, image_crs, f"the area of interest ({what})")
    geoms = table.geometry if hasattr(table, "geometry") else table
    geoms = geoms[~(geoms.isna() | geoms.is_empty)]
    if len(geoms) == 0:
        return None, what
    invalid = ~geoms.is_valid
    if invalid.any():  # before reprojection and union, which can hide or create problems
        raise AreaOfInterestError(
            f"the area of interest ({what}) holds {int(invalid.sum())} invalid geometries "
            f"(e.g. {shapely.is_valid_reason(geoms[invalid].iloc[0])}); repair them with "
            "`gdf.make_valid()` (QGIS: Vector > Geometry Tools > Fix Geometries)"
        )
    if table.crs is not None and table.crs != image_crs:
        geoms = geoms.to_crs(image_crs)
        if not np.isfinite(geoms.total_bounds).all():
            raise AreaOfInterestError(
                f"the area of interest ({what}) cannot be reprojected from "
                f"{table.crs.to_string()} to the raster's {image_crs.to_string()}: its "
                "coordinates fall outside what that CRS covers. Are they in another CRS than "
                "the file records (GeoJSON is always read as EPSG:4326)?"
            )
    return shapely.union_all(np.asarray(geoms.values, dtype=object)), what


def _geopandas_or_none() -> Any:
    try:
        import geopandas
    except ImportError:
        return None
    return geopandas


def _xy(transform: Affine, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = transform
    return t.a * col + t.b * row + t.c, t.d * col + t.e * row + t.f


def _fmt(bounds: Any) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in bounds) + ")"
