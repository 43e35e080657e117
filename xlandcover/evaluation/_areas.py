"""Class-area statistics of a label map, out of core, in true ground units.

In a projected CRS every pixel has the same area (the transform's determinant, in the CRS's
linear unit). In a geographic CRS a pixel's area shrinks towards the poles, so each row's pixel
area is computed on the CRS's ellipsoid (pyproj's geodesic polygon area) and counts are
weighted row by row. On a pixel grid (no CRS) only pixel counts are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..io._labels import as_label_raster, classes_from_attrs
from ..model._package import NODATA_LABEL

_BINS = 256


def class_areas(
    labels: xr.DataArray,
    *,
    class_ids: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Pixels, hectares, km2 and share of each class of a ``(y, x)`` uint8 label map.

    Classes default to the map's ``class_ids``/``class_names`` attributes (set by
    ``predict``), else every value present. Nodata (255, or the map's nodata) is left out.
    """
    labels = as_label_raster(labels)
    known = classes_from_attrs(labels.attrs)
    ids = [int(i) for i in class_ids] if class_ids is not None else [c[0] for c in known]
    names = list(class_names) if class_names is not None else [c[1] for c in known]
    data = da.asarray(labels.data)
    row_area = row_area_function(labels)
    row_edges = np.cumsum((0, *data.chunks[0]))
    parts = [
        dask.delayed(_block_counts)(block, int(row_edges[i]), row_area)
        for i, row in enumerate(data.to_delayed())
        for block in row
    ]
    counts, areas = dask.delayed(_sum, nout=2)(parts).compute()
    nodata = labels.rio.nodata if labels.rio.nodata is not None else NODATA_LABEL
    if not ids:
        ids = [int(v) for v in np.flatnonzero(counts) if v != nodata]
    if len(names) != len(ids):
        names = [str(i) for i in ids]
    total = counts[ids].sum()
    table = pd.DataFrame(
        {"id": ids, "pixels": counts[ids]},
        index=pd.Index(names, name="class"),
    )
    if areas is not None:
        table["hectares"] = areas[ids] / 1e4
        table["km2"] = areas[ids] / 1e6
    table["share"] = counts[ids] / total if total else np.nan
    return table


def row_area_function(labels: xr.DataArray) -> Any:
    """``f(row_start, n_rows) -> (n_rows,)`` pixel areas in m2, or None without a CRS."""
    crs = labels.rio.crs
    if crs is None:
        return None
    t = labels.rio.transform()
    if crs.is_geographic:
        return _GeodesicRows(t.c, t.a, t.f, t.e, crs.to_wkt())
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    area = abs(t.a * t.e - t.b * t.d) * factor**2
    return _ConstantRows(area)


class _ConstantRows:
    def __init__(self, area: float) -> None:
        self.area = area

    def __call__(self, start: int, n: int) -> np.ndarray:
        return np.full(n, self.area)


class _GeodesicRows:
    def __init__(self, x0: float, dx: float, y0: float, dy: float, wkt: str) -> None:
        self.x0, self.dx, self.y0, self.dy, self.wkt = x0, dx, y0, dy, wkt

    def __call__(self, start: int, n: int) -> np.ndarray:
        from pyproj import CRS, Geod

        geod = CRS.from_wkt(self.wkt).get_geod() or Geod(ellps="WGS84")
        out = np.empty(n)
        lon0, lon1 = self.x0, self.x0 + self.dx
        for i in range(n):
            lat0 = self.y0 + (start + i) * self.dy
            lat1 = lat0 + self.dy
            area, _ = geod.polygon_area_perimeter(
                [lon0, lon1, lon1, lon0], [lat0, lat0, lat1, lat1]
            )
            out[i] = abs(area)
        return out


def _block_counts(block: np.ndarray, row0: int, row_area: Any) -> tuple[np.ndarray, Any]:
    values = np.asarray(block).astype(np.int64)
    counts = np.bincount(values.ravel(), minlength=_BINS)
    if row_area is None:
        return counts, None
    if isinstance(row_area, _ConstantRows):
        return counts, counts * row_area.area
    per_pixel = np.repeat(row_area(row0, values.shape[0]), values.shape[1])
    return counts, np.bincount(values.ravel(), weights=per_pixel, minlength=_BINS)


def _sum(parts: list[tuple[np.ndarray, Any]]) -> tuple[np.ndarray, Any]:
    counts = np.sum([c for c, _ in parts], axis=0)
    areas = None if parts[0][1] is None else np.sum([a for _, a in parts], axis=0)
    return counts, areas
