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

from .errors import RasterInputError, UnknownClassError
from .nodata import valid_mask
from .package import NODATA_LABEL

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

    from .io import open_raster

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


def as_label_raster(labels: xr.DataArray) -> xr.DataArray:
    """``labels`` as a ``(y, x)`` array, accepting a single-band ``(band, y, x)`` raster."""
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels.squeeze(labels.dims[0], drop=True)
    if labels.ndim != 2:
        raise RasterInputError(
            f"labels must be one band of class ids, dims (y, x); got {labels.dims} with shape "
            f"{labels.shape}. Colour-coded masks: convert with labels_from_colors()."
        )
    if labels.dtype.kind not in "iub":
        raise RasterInputError(
            f"labels must hold integer class ids, not {labels.dtype}; cast or reclassify them"
        )
    return labels


class ClassIndex:
    """Maps class ids (any integers) to indices ``0..K-1``; unlabelled values to ``K``.

    Values that are neither declared ids nor unlabelled map to ``K + 1`` (``unknown``).
    """

    def __init__(self, class_ids: Sequence[int], unlabelled: Iterable[int] = ()) -> None:
        self.class_ids = tuple(int(c) for c in class_ids)
        if len(set(self.class_ids)) != len(self.class_ids):
            raise UnknownClassError(f"class ids {self.class_ids} hold duplicates")
        self.unlabelled = tuple(sorted({int(u) for u in unlabelled} - set(self.class_ids)))
        k = len(self.class_ids)
        keys = np.asarray(self.class_ids + self.unlabelled, dtype=np.int64)
        vals = np.asarray(list(range(k)) + [k] * len(self.unlabelled), dtype=np.int64)
        order = np.argsort(keys)
        self._keys, self._vals = keys[order], vals[order]
        self.n = k

    @property
    def ignore(self) -> int:
        return self.n

    @property
    def unknown(self) -> int:
        return self.n + 1

    def __call__(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values).astype(np.int64, copy=False)
        pos = np.clip(np.searchsorted(self._keys, v), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == v, self._vals[pos], self.unknown)

    def check(self, values: np.ndarray, where: str) -> np.ndarray:
        """Indices of ``values``, raising :class:`UnknownClassError` for unknown ones."""
        idx = self(values)
        bad = idx == self.unknown
        if bad.any():
            raise UnknownClassError(
                f"{where} holds values {unknown_values(values, bad)} that are not among the "
                f"declared classes {list(self.class_ids)} (unlabelled: {list(self.unlabelled)}); "
                "declare them as classes, or pass them as the ignore index / label nodata"
            )
        return idx


def unknown_values(values: np.ndarray, bad: np.ndarray, limit: int = 10) -> list[int]:
    return [int(v) for v in np.unique(np.asarray(values)[bad])[:limit]]


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
