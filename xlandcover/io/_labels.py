"""Label rasters: colour-coded RGB masks to class ids, and the class-id <-> index lookup.

Many published segmentation datasets ship labels as RGB images where each class is a colour.
:func:`labels_from_colors` turns such a mask into a ``(y, x)`` uint8 class-id raster, lazily,
keeping its grid. :func:`class_index` maps class ids (any integers) to contiguous indices
``0..K-1``, the form models and confusion matrices need.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import LabelAlignmentError, RasterInputError, UnknownClassError
from ..model._package import NODATA_LABEL
from ._nodata import valid_mask
from ._raster import PIXEL_GRID_ATTR

RGB = tuple[int, int, int]


def labels_from_colors(
    mask: xr.DataArray,
    colors: Mapping[RGB, int],
    *,
    ignore_colors: Iterable[RGB] = (),
    nodata: int = NODATA_LABEL,
    palette: Mapping[int, Sequence[int]] | None = None,
) -> xr.DataArray:
    """A ``(y, x)`` uint8 class-id raster from a colour-coded mask.

    The mask is ``(band=3, y, x)`` RGB, or one band of palette indices with ``palette``
    (``{index: (r, g, b, ...)}``, e.g. ``rasterio``'s ``colormap(1)``);
    :func:`open_color_mask` handles both from a file.

    Parameters
    ----------
    mask
        RGB mask, e.g. ``open_raster("mask.png", pixel_grid=True)``.
    colors
        ``{(r, g, b): class_id}``.
    ignore_colors
        Colours of unlabelled pixels; they become ``nodata``.
    nodata
        Value written for unlabelled pixels, recorded as the raster's nodata.

    Notes
    -----
    Lazy for Dask-backed masks. A colour that is neither a class nor ignored raises
    :class:`UnknownClassError` when its chunk is computed. Pixels equal to the mask's own
    nodata (``mask.rio.nodata``, e.g. where an alpha band is 0) become ``nodata``.
    """
    if palette is not None and mask.ndim == 3 and mask.shape[0] == 1:
        mask = _expand_palette(mask, palette)
    if mask.ndim != 3 or mask.shape[0] != 3:
        raise RasterInputError(
            f"a colour mask must have 3 bands (R, G, B), or one band with a palette; got dims "
            f"{mask.dims} and shape {mask.shape}. A single-band class-id raster needs no "
            "conversion."
        )
    lut_keys = [_pack(c) for c in colors] + [_pack(c) for c in ignore_colors]
    lut_vals = [int(v) for v in colors.values()] + [nodata] * (len(lut_keys) - len(colors))
    if len(set(lut_keys)) != len(lut_keys):
        raise UnknownClassError("a colour is listed twice (as two classes, or class and ignore)")
    order = np.argsort(lut_keys)
    keys = np.asarray(lut_keys, dtype=np.int64)[order]
    vals = np.asarray(lut_vals, dtype=np.uint8)[order]

    masked = mask.rio.nodata  # e.g. pixels an alpha band or internal mask leaves empty

    def convert(block: np.ndarray) -> np.ndarray:
        empty = np.zeros(block.shape[1:], bool) if masked is None else ~valid_mask(block, masked)
        block = np.where(empty, 0, block)
        packed = _pack_array(block)
        pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
        bad = (keys[pos] != packed) & ~empty
        if bad.any():
            unknown = sorted({_unpack(int(v)) for v in np.unique(packed[bad])[:10]})
            raise UnknownClassError(
                f"mask colours {unknown} are neither a class nor an ignore colour; add them "
                "to `colors` or `ignore_colors`"
            )
        return np.where(empty, np.uint8(nodata), vals[pos])

    data = mask.data
    if isinstance(data, da.Array):
        out_data = data.rechunk({0: -1}).map_blocks(convert, drop_axis=0, dtype=np.uint8)
    else:
        out_data = convert(np.asarray(data))
    out = xr.DataArray(
        out_data,
        dims=("y", "x"),
        coords={k: v for k, v in mask.coords.items() if k != "band" and "band" not in v.dims},
        attrs={k: v for k, v in mask.attrs.items() if k not in ("long_name", "_FillValue")},
        name="labels",
    )
    return out.rio.write_nodata(nodata, encoded=False)


def open_color_mask(
    path: str | os.PathLike[str],
    colors: Mapping[RGB, int],
    *,
    ignore_colors: Iterable[RGB] = (),
    chunks: int | None = 2048,
    pixel_grid: bool = False,
    nodata: int = NODATA_LABEL,
) -> xr.DataArray:
    """Open an RGB or palette colour mask file as a ``(y, x)`` class-id raster."""
    import rasterio

    from ._raster import open_raster

    mask = open_raster(path, chunks=chunks, pixel_grid=pixel_grid)
    palette = None
    if mask.shape[0] == 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                try:
                    palette = src.colormap(1)
                except ValueError:
                    palette = None
        if palette is None:
            raise RasterInputError(
                f"{path} has one band and no colour table, so it is not a colour mask; open "
                "it with open_raster() and use it as class ids directly"
            )
    return labels_from_colors(
        mask, colors, ignore_colors=ignore_colors, nodata=nodata, palette=palette
    )


def _expand_palette(mask: xr.DataArray, palette: Mapping[int, Sequence[int]]) -> xr.DataArray:
    table = np.zeros((3, 256), dtype=np.uint8)
    for i, rgba in palette.items():
        table[:, int(i)] = [int(v) for v in rgba[:3]]

    def expand(block: np.ndarray) -> np.ndarray:
        return table[:, block[0]]

    data = mask.data
    if isinstance(data, da.Array):
        rgb = da.map_blocks(expand, data, chunks=((3,), *data.chunks[1:]), dtype=np.uint8)
    else:
        rgb = expand(np.asarray(data))
    return xr.DataArray(rgb, dims=mask.dims, coords={k: v for k, v in mask.coords.items()
                        if k != "band"}, attrs=mask.attrs)  # fmt: skip


def check_label_dtype(dtype: np.dtype, what: str = "labels") -> None:
    """Refuse label values that are not integer class ids."""
    if np.dtype(dtype).kind not in "iub":
        raise RasterInputError(
            f"{what} must hold integer class ids, not {np.dtype(dtype)}; cast or reclassify "
            "them first (after replacing NaN by the nodata label), e.g. "
            "labels.fillna(255).astype('uint8')"
        )


def as_label_raster(labels: xr.DataArray, *, what: str = "labels") -> xr.DataArray:
    """``labels`` as a ``(y, x)`` DataArray of integer class ids, accepting a single-band
    ``(band, y, x)`` raster (the form :func:`~xlandcover.open_raster` gives)."""
    if not isinstance(labels, xr.DataArray):
        raise RasterInputError(
            f"{what} must be an xarray.DataArray of class ids, got {type(labels).__name__}; "
            "open rasters with xlandcover.open_raster()"
        )
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels.squeeze(labels.dims[0], drop=True)
    if labels.ndim != 2:
        raise RasterInputError(
            f"{what} must be one band of class ids, dims (y, x); got {labels.dims} with shape "
            f"{labels.shape}. Select one band (e.g. `labels.isel(band=0)`); colour-coded "
            "masks: convert with labels_from_colors()."
        )
    check_label_dtype(labels.dtype, what)
    return labels


def check_same_grid(
    raster: xr.DataArray,
    onto: xr.DataArray,
    *,
    what: str = "the labels",
    onto_what: str = "the image",
    names: tuple[str, str] = ("labels", "image"),
) -> None:
    """Refuse ``raster`` unless it is on the pixel grid of ``onto``: the same shape and, for
    georeferenced rasters, the same CRS and transform. ``what``/``onto_what`` word the two in
    messages, ``names`` are the variable names of the suggested fix."""
    shape, want = tuple(raster.shape[-2:]), tuple(onto.shape[-2:])
    fix = (
        f"put it on the pixel grid of {onto_what} with `{names[0]}.rio.reproject_match("
        f"{names[1]}, resampling=Resampling.nearest)`"
    )
    if shape != want:
        raise LabelAlignmentError(f"{what} has shape {shape} but {onto_what} {want}; {fix}")
    if onto.attrs.get(PIXEL_GRID_ATTR) or (onto.rio.crs is None and raster.rio.crs is None):
        return  # a plain pixel grid: the shape is the grid
    if raster.rio.crs is None or raster.rio.crs != onto.rio.crs:
        raise LabelAlignmentError(
            f"{what} is in CRS {raster.rio.crs}, {onto_what} in {onto.rio.crs}; {fix}"
        )
    ta, tb = onto.rio.transform(), raster.rio.transform()
    if not ta.almost_equals(tb, precision=1e-6 * max(abs(ta.a), abs(ta.e))):
        raise LabelAlignmentError(
            f"{what} is not on the pixel grid of {onto_what} (transform {tuple(tb)[:6]} vs "
            f"{tuple(ta)[:6]}); {fix}"
        )


class ClassIndex:
    """Class ids (any integers) to indices ``0..K-1``: the one class lookup of xlandcover.

    Values in ``ignore_values`` (unlabelled pixels: the label raster's nodata, an
    ``ignore_index``) map to ``K``; anything else to ``K + 1`` (:attr:`unknown`). Small integer
    types (8 and 16 bit) and arrays whose values span a short range are looked up in a table,
    others by binary search.
    """

    #: Value ranges up to this wide are mapped through a lookup table.
    MAX_TABLE = 1 << 16

    def __init__(self, class_ids: Sequence[int], ignore_values: Iterable[int] = ()) -> None:
        self.class_ids = tuple(int(c) for c in class_ids)
        if len(set(self.class_ids)) != len(self.class_ids):
            raise UnknownClassError(f"class ids {list(self.class_ids)} hold duplicates")
        self.ignore_values = tuple(sorted({int(u) for u in ignore_values} - set(self.class_ids)))
        k = len(self.class_ids)
        keys = np.asarray(self.class_ids + self.ignore_values, dtype=np.int64)
        vals = np.asarray(list(range(k)) + [k] * len(self.ignore_values), dtype=np.int64)
        order = np.argsort(keys)
        self._keys, self._vals = keys[order], vals[order]
        self.n = k
        self._tables: dict[tuple[int, int], np.ndarray] = {}

    @property
    def unknown(self) -> int:
        """The index of values that are neither classes nor ignored (``K + 1``)."""
        return self.n + 1

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """``int64`` indices of ``values`` (any shape)."""
        v = np.asarray(values)
        if v.size and v.dtype.kind in "iub":
            if v.dtype.itemsize <= 2:
                info = np.iinfo(v.dtype) if v.dtype.kind != "b" else np.iinfo(np.uint8)
                lo, hi = int(info.min), int(info.max)
            else:
                lo, hi = int(v.min()), int(v.max())
            if hi - lo < self.MAX_TABLE:
                return self._table(lo, hi)[v.astype(np.int64, copy=False) - lo]
        v = v.astype(np.int64, copy=False)
        pos = np.clip(np.searchsorted(self._keys, v), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == v, self._vals[pos], self.unknown)

    def _table(self, lo: int, hi: int) -> np.ndarray:
        table = self._tables.get((lo, hi))
        if table is None:
            values = np.arange(lo, hi + 1, dtype=np.int64)
            pos = np.clip(np.searchsorted(self._keys, values), 0, len(self._keys) - 1)
            table = np.where(self._keys[pos] == values, self._vals[pos], self.unknown)
            if len(self._tables) < 8:
                self._tables[(lo, hi)] = table
        return table

    def __dask_tokenize__(self) -> object:
        return ("xlandcover.ClassIndex", self.class_ids, self.ignore_values)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_tables": {}}  # tables are rebuilt where used


def _pack(c: Sequence[int]) -> int:
    r, g, b = (int(v) for v in c)
    return (r << 16) | (g << 8) | b


def _pack_array(block: np.ndarray) -> np.ndarray:
    b = block.astype(np.int64, copy=False)
    return (b[0] << 16) | (b[1] << 8) | b[2]


def _unpack(v: int) -> RGB:
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def classes_from_attrs(attrs: Mapping[str, object]) -> list[tuple[int, str, str | None]]:
    """``(id, name, colour)`` per class from a label map's attributes.

    Works on maps from ``predict`` (lists) and on maps read back from the GeoTIFF/Zarr files
    xlandcover writes (the same values stored as text); empty when the map has no classes.
    """
    import ast

    def parse(value: object) -> object:
        if isinstance(value, str):
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        return value

    ids = parse(attrs.get("class_ids", []))
    names = parse(attrs.get("class_names", []))
    colors = parse(attrs.get("class_colors", []))
    if not isinstance(ids, list | tuple | np.ndarray):
        return []
    id_list = [int(i) for i in ids]
    if isinstance(names, dict):
        name_list = [str(names.get(str(i), names.get(i, i))) for i in id_list]
    elif isinstance(names, list | tuple | np.ndarray) and len(names) == len(id_list):
        name_list = [str(n) for n in names]
    else:
        name_list = [str(i) for i in id_list]
    color_list: list[str | None] = [None] * len(id_list)
    if isinstance(colors, list | tuple | np.ndarray) and len(colors) == len(id_list):
        color_list = [str(c) for c in colors]
    return list(zip(id_list, name_list, color_list, strict=True))
