"""Training labels from vector files: points, lines and polygons burnt onto an image's grid.

Most people who map land cover have field-survey points and polygons digitised in QGIS or
ArcGIS, not a label raster. :func:`rasterize_labels` turns such a table (a GeoPackage,
Shapefile, GeoJSON or GeoParquet file, or a GeoDataFrame) into a lazy ``(y, x)`` uint8 label
raster on the image's grid, which :func:`~xlandcover.sample_chips` takes like any label raster;
pixels without a label are nodata (255). :func:`rasterize_features` burns the row of each
geometry instead of its class, for ``spatial_split(..., by="feature")``.

How it is built
---------------
The table is read (once, eagerly: it is small next to the imagery), reprojected to the image's
CRS, put in burn order, and indexed by a :class:`shapely.STRtree`. Each chunk of the result is
one task that rasterises, with :func:`rasterio.features.rasterize`, only the geometries whose
envelopes meet that chunk, in burn order, on the chunk's own transform. Rasterising is exact under
whole-pixel translation, so the result equals rasterising the whole table at once, for any
chunking (a property test checks it).

Overlaps: where geometries overlap, the one burnt last wins. ``overlap="last"`` (the default)
burns in table order, so later rows win, as ``rasterio.features.rasterize`` does; ``"first"``:
earlier rows win; ``"smallest"``: the smallest geometry wins (by area; points and lines, with no
area, win over polygons), e.g. a small patch digitised inside a large one.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import (
    InputNotFoundError,
    LabelAlignmentError,
    MissingCRSError,
    MissingDependencyError,
    UnknownClassError,
    VectorInputError,
    VectorReadError,
)
from ..model._package import NODATA_LABEL, ClassInfo
from ._raster import PIXEL_GRID_ATTR

if TYPE_CHECKING:
    import geopandas as gpd
    from affine import Affine

__all__ = ["VECTOR_SUFFIXES", "is_vector", "rasterize_features", "rasterize_labels", "read_vector"]

#: File name endings read as vector labels (everything else is a raster).
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".parquet", ".geoparquet")
_PARQUET = (".parquet", ".geoparquet")
#: Feature-id raster value for "no feature".
NO_FEATURE = 0
#: Growth (in pixels) that makes ``all_touched`` count exact touches as touches.
TOUCH_EPSILON = 1e-6
#: Segments per quarter circle of the polygon standing for a point's disc.
DISC_SEGMENTS = 16

Overlap = Literal["last", "first", "smallest"]
_INSTALL = "pip install geopandas==1.2.0 pyogrio==0.13.0 pyarrow==26.0.1 (or 'xlandcover[report]')"


def is_vector(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a vector file (by its ending, :data:`VECTOR_SUFFIXES`)."""
    return Path(path).suffix.lower() in VECTOR_SUFFIXES


def read_vector(
    vector: str | os.PathLike[str] | gpd.GeoDataFrame, *, layer: str | int | None = None
) -> gpd.GeoDataFrame:
    """A GeoPackage, Shapefile, GeoJSON, FlatGeobuf or GeoParquet file as a GeoDataFrame (a
    GeoDataFrame is returned as it is).

    Raises :class:`~xlandcover.errors.InputNotFoundError` for a missing file and
    :class:`~xlandcover.errors.VectorReadError` for one that cannot be read.
    """
    gpd_mod = _geopandas()
    if isinstance(vector, gpd_mod.GeoDataFrame):
        return vector
    if isinstance(vector, pd.DataFrame):
        raise VectorInputError(
            "a plain DataFrame has no geometries; pass a GeoDataFrame or a vector file path"
        )
    path = Path(vector)
    if not path.exists():
        raise InputNotFoundError(f"vector file {path} does not exist; check the path")
    try:
        if path.suffix.lower() in _PARQUET:
            return gpd_mod.read_parquet(path)
        return gpd_mod.read_file(path, layer=layer)
    except ImportError as err:
        raise MissingDependencyError(
            f"reading {path.name} needs {err.name or 'pyarrow'}; install it with: {_INSTALL}"
        ) from err
    except Exception as err:
        raise VectorReadError(
            f"cannot read {path} as a vector file ({type(err).__name__}: {err}). Check that it is "
            "a complete GeoPackage, Shapefile (with its .shx/.dbf), GeoJSON, FlatGeobuf or "
            "GeoParquet file, e.g. by opening it in QGIS"
        ) from err


def rasterize_labels(
    vector: str | os.PathLike[str] | gpd.GeoDataFrame,
    like: xr.DataArray,
    *,
    column: str,
    classes: Sequence[int | ClassInfo | Mapping[str, Any]] | None = None,
    all_touched: bool = False,
    point_radius: float = 0,
    overlap: Overlap = "last",
    layer: str | int | None = None,
    chunks: int | tuple[int, int] | None = None,
) -> xr.DataArray:
    """Class labels of points, lines and polygons as a lazy label raster on an image's grid.

    Parameters
    ----------
    vector
        A GeoPackage, Shapefile, GeoJSON, FlatGeobuf or GeoParquet file, or a GeoDataFrame.
        Geometries are reprojected to the image's CRS. For an image without a CRS (opened with
        ``pixel_grid=True``) the table must have none either, its coordinates being the
        image's pixel grid.
    like
        The image (``(band, y, x)`` or ``(y, x)``) whose grid, CRS and chunks the labels get.
    column
        The column holding each geometry's class: integer class ids, or class names mapped to
        ids through ``classes``.
    classes
        The classes (ids, :class:`~xlandcover.ClassInfo` or ``{"id", "name", "color"}``
        records, as the model package has them). Needed for class names; with integer ids,
        values outside them raise :class:`~xlandcover.errors.UnknownClassError`.
    all_touched
        Burn every pixel a geometry touches, not only those whose centre it covers
        (:func:`rasterio.features.rasterize`).
    point_radius
        Points label their pixel (0), or the pixels whose centres lie within this many
        pixels of them (a disc).
    overlap
        Which geometry wins where several overlap: ``"last"`` (later rows, as rasterio does),
        ``"first"`` or ``"smallest"`` (by area).
    layer
        The layer of a multi-layer file (GeoPackage); default the first.
    chunks
        Chunk size of the result; default the image's chunks (2048 px for a numpy image).

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` uint8 class ids, 255 (the raster's nodata) where nothing was burnt, with the
        image's coordinates and CRS, and ``class_ids``/``class_names``/``class_colors``
        attributes when ``classes`` were given. Nothing is rasterised until it is computed.

    Examples
    --------
    >>> img = xlc.open_raster("scene.tif")  # doctest: +SKIP
    >>> labels = xlc.rasterize_labels("samples.gpkg", like=img, column="class")  # doctest: +SKIP
    >>> chips = xlc.sample_chips(img, labels, size=128, stride=64)  # doctest: +SKIP
    """
    table = read_vector(vector, layer=layer)
    infos = _class_infos(classes)
    values = _label_values(table, column, infos)
    out = _rasterize(table, values, like, name="labels", dtype=np.uint8, fill=NODATA_LABEL,
                     all_touched=all_touched, point_radius=point_radius, overlap=overlap,
                     chunks=chunks, what=_describe(vector))  # fmt: skip
    if infos is not None:
        out.attrs.update(
            class_ids=[c.id for c in infos],
            class_names=[c.name for c in infos],
            class_colors=[c.color for c in infos],
        )
    return out.rio.write_nodata(NODATA_LABEL, encoded=False)


def rasterize_features(
    vector: str | os.PathLike[str] | gpd.GeoDataFrame,
    like: xr.DataArray,
    *,
    all_touched: bool = False,
    point_radius: float = 0,
    overlap: Overlap = "last",
    layer: str | int | None = None,
    chunks: int | tuple[int, int] | None = None,
) -> xr.DataArray:
    """Which row of the table labels each pixel: a lazy uint32 raster of ``row + 1`` (0 where
    no geometry is), burnt exactly as :func:`rasterize_labels` burns the classes (give both
    the same options), for ``sample_chips(..., features=...)`` and
    ``spatial_split(..., by="feature")``."""
    table = read_vector(vector, layer=layer)
    values = np.arange(1, len(table) + 1, dtype=np.int64)
    out = _rasterize(table, values, like, name="features", dtype=np.uint32, fill=NO_FEATURE,
                     all_touched=all_touched, point_radius=point_radius, overlap=overlap,
                     chunks=chunks, what=_describe(vector))  # fmt: skip
    return out.rio.write_nodata(NO_FEATURE, encoded=False)


# --- steps -------------------------------------------------------------------------------------


def _rasterize(
    table: gpd.GeoDataFrame,
    values: np.ndarray,
    like: xr.DataArray,
    *,
    name: str,
    dtype: type,
    fill: int,
    all_touched: bool,
    point_radius: float,
    overlap: Overlap,
    chunks: int | tuple[int, int] | None,
    what: str,
) -> xr.DataArray:
    import shapely

    if overlap not in ("last", "first", "smallest"):
        raise VectorInputError(f"overlap must be 'last', 'first' or 'smallest', not {overlap!r}")
    if point_radius < 0:
        raise VectorInputError(f"point_radius is a radius in pixels >= 0, got {point_radius}")
    if like.ndim not in (2, 3):
        raise LabelAlignmentError(f"like must be an image (band, y, x) or (y, x), got {like.dims}")
    transform = like.rio.transform()
    shape = (int(like.shape[-2]), int(like.shape[-1]))
    geoms = _in_image_crs(table, like, what)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms, values = geoms[keep], np.asarray(values)[keep]
    _check_types(geoms, what)
    if point_radius > 0:
        pixel = (abs(transform.a) + abs(transform.e)) / 2
        points = np.isin(shapely.get_type_id(geoms), (0, 4))  # Point, MultiPoint
        geoms = geoms.copy()
        geoms[points] = shapely.buffer(geoms[points], disc_radius(point_radius * pixel),
                                       quad_segs=DISC_SEGMENTS)  # fmt: skip
    if all_touched:
        # "touched" means the pixel's closed square meets the geometry. GDAL's all-touched
        # rule is ambiguous where a geometry only touches a pixel edge or corner exactly (it
        # then depends on where the raster starts, so on the chunking); growing geometries by
        # a millionth of a pixel settles those cases as touched, the same in every chunk.
        geoms = shapely.buffer(geoms, TOUCH_EPSILON * (abs(transform.a) + abs(transform.e)) / 2,
                               quad_segs=2)  # fmt: skip
    order = _burn_order(geoms, overlap)
    geoms, values = geoms[order], values[order]
    tree = shapely.STRtree(geoms)
    _quiet_rasterize()
    full = _box(transform, 0, 0, shape)
    if len(tree.query(full)) == 0:
        raise LabelAlignmentError(_miss_message(what, geoms, full, like))

    row_chunks, col_chunks = _chunks(like, chunks, shape)
    row_edges = np.cumsum((0, *row_chunks))
    col_edges = np.cumsum((0, *col_chunks))
    boxes, keys = [], []
    for i in range(len(row_chunks)):
        for j in range(len(col_chunks)):
            h, w = row_chunks[i], col_chunks[j]
            boxes.append(_box(transform, int(row_edges[i]), int(col_edges[j]), (h, w)))
            keys.append((i, j))
    hit_box, hit_geom = tree.query(np.asarray(boxes))
    by_box = np.argsort(hit_box, kind="stable")
    hit_box, hit_geom = hit_box[by_box], hit_geom[by_box]
    token = _token(geoms, values, transform, shape, row_chunks, col_chunks, all_touched, dtype)
    graph_name = f"rasterize-{name}-{token}"
    dsk: dict[tuple[str, int, int], Any] = {}
    per_box = np.split(hit_geom, np.searchsorted(hit_box, np.arange(1, len(boxes))))
    for (i, j), hits in zip(keys, per_box, strict=True):
        hits = np.sort(hits)  # burn order: the table's, after `overlap`
        # one pixel more on each side inside the scene: GDAL treats geometries that touch the
        # raster's edge specially, so a chunk's edge must not be one unless the scene's is
        r0, r1 = int(row_edges[i]), int(row_edges[i + 1])
        c0, c1 = int(col_edges[j]), int(col_edges[j + 1])
        pad = (int(r0 > 0), int(r1 < shape[0]), int(c0 > 0), int(c1 < shape[1]))
        block_transform = transform @ _translation(c0 - pad[2], r0 - pad[0])
        dsk[(graph_name, i, j)] = (_burn, geoms[hits], values[hits], block_transform,
                                   (r1 - r0, c1 - c0), pad, fill, dtype, all_touched)  # fmt: skip
    data = da.Array(dsk, graph_name, chunks=(row_chunks, col_chunks), dtype=dtype,
                    meta=np.empty((0, 0), dtype=dtype))  # fmt: skip
    coords = {k: like.coords[k] for k in ("y", "x") if k in like.coords}
    out = xr.DataArray(data, dims=("y", "x"), coords=coords, name=name)
    if like.attrs.get(PIXEL_GRID_ATTR):
        out.attrs[PIXEL_GRID_ATTR] = 1
    if like.rio.crs is not None:
        out = out.rio.write_crs(like.rio.crs)
    return out.rio.write_transform(transform)


def disc_radius(radius: float) -> float:
    """Buffer distance for a disc polygon of :data:`DISC_SEGMENTS` segments per quarter that
    holds every pixel centre within ``radius`` of the point: the polygon is circumscribed
    (its edges touch the circle), so its corners lie a little beyond ``radius``."""
    return radius / math.cos(math.pi / (4 * DISC_SEGMENTS)) * (1 + 1e-9)


def _burn(
    geoms: np.ndarray,
    values: np.ndarray,
    transform: Affine,
    shape: tuple[int, int],
    pad: tuple[int, int, int, int],
    fill: int,
    dtype: type,
    all_touched: bool,
) -> np.ndarray:
    """One chunk of ``shape``: the geometries meeting it, burnt in order (later ones win) on
    the chunk grown by ``pad`` pixels (top, bottom, left, right), then cropped."""
    if len(geoms) == 0:
        return np.full(shape, fill, dtype=dtype)
    from rasterio.features import rasterize

    top, bottom, left, right = pad
    out = rasterize(
        zip(geoms, values.tolist(), strict=True),
        out_shape=(shape[0] + top + bottom, shape[1] + left + right),
        transform=transform,
        fill=fill,
        all_touched=all_touched,
        dtype=dtype,
    )
    return out[top : top + shape[0], left : left + shape[1]]


def _in_image_crs(table: gpd.GeoDataFrame, like: xr.DataArray, what: str) -> np.ndarray:
    check_vector_crs(table.crs, like.rio.crs, what)
    if table.crs is not None and table.crs != like.rio.crs:
        table = table.to_crs(like.rio.crs)
    return np.asarray(table.geometry.values, dtype=object)


def check_vector_crs(vector_crs: Any, image_crs: Any, what: str) -> None:
    """Refuse geometries that cannot be placed on an image: one side has a CRS, the other
    none (``what`` names the geometries in the message)."""
    if vector_crs is None and image_crs is not None:
        raise MissingCRSError(
            f"{what} has no CRS, so its coordinates cannot be placed on the image (in "
            f"{image_crs.to_string()}). Set the CRS the coordinates are in: "
            "`gdf.set_crs('EPSG:XXXX')` (or in QGIS: Layer > Assign Projection) and save again"
        )
    if vector_crs is not None and image_crs is None:
        raise MissingCRSError(
            f"the image has no CRS (a pixel grid) but {what} is in {vector_crs.to_string()}; "
            "georeference the image, or give the geometries in the image's pixel coordinates "
            "without a CRS"
        )


def _check_types(geoms: np.ndarray, what: str) -> None:
    import shapely

    kinds = shapely.get_type_id(geoms)
    bad = ~np.isin(kinds, (0, 1, 2, 3, 4, 5, 6, 7))
    if bad.any():
        raise VectorInputError(
            f"{what} holds {int(bad.sum())} geometries that are not points, lines or polygons "
            f"(e.g. {shapely.get_type_id(geoms[bad][0])}); drop or convert them"
        )


def _burn_order(geoms: np.ndarray, overlap: Overlap) -> np.ndarray:
    import shapely

    n = len(geoms)
    if overlap == "first":
        return np.arange(n)[::-1]
    if overlap == "smallest":
        return np.argsort(-shapely.area(geoms), kind="stable")
    return np.arange(n)


def _class_infos(
    classes: Sequence[int | ClassInfo | Mapping[str, Any]] | None,
) -> tuple[ClassInfo, ...] | None:
    if classes is None:
        return None
    from ..training._chips import _as_class_infos

    return _as_class_infos(classes)


def _label_values(
    table: gpd.GeoDataFrame, column: str, infos: tuple[ClassInfo, ...] | None
) -> np.ndarray:
    columns = [str(c) for c in table.columns if c != table.geometry.name]
    if column not in table.columns or column == table.geometry.name:
        close = difflib.get_close_matches(str(column), columns, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise VectorInputError(
            f"the vector table has no label column {column!r}{hint} Its columns: {columns}. "
            "Pass the column holding each geometry's class as `column` (TOML: label_column)"
        )
    series = table[column]
    missing = series.isna()
    if missing.any():
        raise VectorInputError(
            f"{int(missing.sum())} of {len(series)} rows have no value in the label column "
            f"{column!r} (e.g. row {int(np.flatnonzero(missing.to_numpy())[0])}); give them a "
            "class or drop them"
        )
    ids = None if infos is None else [c.id for c in infos]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raw = series.to_numpy(dtype=np.float64)
        if not np.all(raw == np.round(raw)):
            raise VectorInputError(
                f"the label column {column!r} holds non-integer values "
                f"({sorted(set(raw[raw != np.round(raw)].tolist()))[:5]}); class ids are "
                "whole numbers"
            )
        values = raw.astype(np.int64)
        if ids is not None:
            unknown = sorted(set(values.tolist()) - set(ids))
            if unknown:
                raise UnknownClassError(
                    f"the label column {column!r} holds class ids {unknown[:10]} that are not "
                    f"among the classes {ids}; declare them, or drop those rows"
                )
        bad = (values < 0) | (values >= NODATA_LABEL)
        if bad.any():
            raise UnknownClassError(
                f"class ids must be 0..254 (255 means unlabelled); the label column {column!r} "
                f"holds {sorted(set(values[bad].tolist()))[:10]}. Renumber the classes"
            )
        return values
    names = series.astype(str).to_numpy()
    if infos is None:
        raise UnknownClassError(
            f"the label column {column!r} holds class names ({sorted(set(names))[:5]} ...); "
            "pass `classes` ([{'id': 1, 'name': ..., 'color': '#rrggbb'}, ...] or [[classes]] "
            "tables in the TOML) to map them to class ids"
        )
    by_name = {c.name: c.id for c in infos}
    unknown_names = sorted(set(names) - set(by_name))
    if unknown_names:
        hints = {n: difflib.get_close_matches(n, list(by_name), n=1) for n in unknown_names[:5]}
        near = ", ".join(f"{n!r} (did you mean {h[0]!r}?)" if h else repr(n)
                         for n, h in hints.items())  # fmt: skip
        raise UnknownClassError(
            f"the label column {column!r} holds names that are not among the classes "
            f"{list(by_name)}: {near}{' ...' if len(unknown_names) > 5 else ''}. Declare them "
            "as classes or correct the names"
        )
    return np.array([by_name[n] for n in names], dtype=np.int64)


def _chunks(
    like: xr.DataArray, chunks: int | tuple[int, int] | None, shape: tuple[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if chunks is None and isinstance(like.data, da.Array):
        rows, cols = like.data.chunks[-2:]
        return tuple(rows), tuple(cols)
    spec = 2048 if chunks is None else chunks
    pair = (spec, spec) if isinstance(spec, int) else tuple(spec)
    rows, cols = da.core.normalize_chunks(pair, shape=shape)
    return tuple(rows), tuple(cols)


def _quiet_rasterize() -> None:
    """Silence a spurious warning of concurrent ``rasterize`` calls: about 1 in 2000 calls in
    threads see another thread's GDAL error state while their in-memory raster is created and
    warn "Dataset has no geotransform", though ``rasterize`` always sets one. Only warnings
    attributed to ``rasterio.features`` are affected."""
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings(
        "ignore", "Dataset has no geotransform", NotGeoreferencedWarning, r"rasterio\.features"
    )


def _translation(col: int, row: int) -> Affine:
    from affine import Affine

    return Affine.translation(col, row)


def _box(transform: Affine, row: int, col: int, shape: tuple[int, int]) -> Any:
    """The block's footprint as a shapely box in CRS units, a hair larger so geometries that
    only touch its edge are still offered to it."""
    import shapely

    h, w = shape
    corners = [transform * (c, r) for r in (row, row + h) for c in (col, col + w)]
    xs, ys = np.array([p[0] for p in corners]), np.array([p[1] for p in corners])
    pad = 1e-6 * max(abs(transform.a), abs(transform.e))
    return shapely.box(xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad)


def _token(geoms: np.ndarray, values: np.ndarray, *parts: object) -> str:
    import shapely

    digest = hashlib.sha1(usedforsecurity=False)
    for blob in shapely.to_wkb(geoms):
        digest.update(blob)
    digest.update(np.ascontiguousarray(values).tobytes())
    digest.update(repr(parts).encode())
    return digest.hexdigest()[:16]


def _miss_message(what: str, geoms: np.ndarray, image_box: Any, like: xr.DataArray) -> str:
    import shapely

    gb = shapely.total_bounds(geoms)
    ib = image_box.bounds
    crs = like.rio.crs.to_string() if like.rio.crs is not None else "the image's pixel grid"
    return (
        f"none of the {len(geoms)} geometries of {what} overlaps the image: the geometries "
        f"span x {gb[0]:.6g}..{gb[2]:.6g}, y {gb[1]:.6g}..{gb[3]:.6g}, the image x "
        f"{ib[0]:.6g}..{ib[2]:.6g}, y {ib[1]:.6g}..{ib[3]:.6g} (both in {crs}). Check that the "
        "labels belong to this image, and that the vector file declares the CRS its "
        "coordinates are really in"
    )


def _describe(vector: object) -> str:
    if isinstance(vector, str | os.PathLike):
        return f"vector file {Path(vector).name}"
    return "the vector table"


def _geopandas() -> Any:
    try:
        import geopandas
    except ImportError as err:
        raise MissingDependencyError(
            f"vector labels need geopandas; install it with: {_INSTALL}"
        ) from err
    return geopandas
