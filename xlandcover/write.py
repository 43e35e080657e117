"""Streaming writers: Zarr v3 and Cloud-Optimized GeoTIFF, chunk by chunk, never the whole scene.

Both write under a temporary name beside the target and rename only when complete, so an
interrupted run never leaves an output that looks finished; both refuse to replace an existing
output unless ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, overload

import dask.array as da
import numpy as np
import xarray as xr

from .errors import AllNodataError, OutputExistsError, RasterInputError
from .package import hex_to_rgb

PathLike = str | os.PathLike[str]


def to_zarr(labels: xr.DataArray | xr.Dataset, store: PathLike, *, overwrite: bool = False) -> Path:
    """Write a prediction to a Zarr v3 store, chunk by chunk, CRS and classes included.

    The store reads back with ``xarray.open_zarr(store, decode_coords="all")``; its single
    variable keeps the prediction's name (``landcover`` or ``probability``), ``rio.crs`` and
    ``rio.transform()`` work on it, and ``nodata`` is in its attributes. A Dataset of layers
    (``predict(..., output=("labels", "confidence"))``) is written as one store with one
    variable per layer, in one pass over the prediction.

    Examples
    --------
    >>> to_zarr(labels, "landcover.zarr")  # doctest: +SKIP
    """
    target = Path(store)
    _check_target(target, overwrite)
    if isinstance(labels, xr.Dataset):
        parts = [_zarr_dataset(labels[v]) for v in labels.data_vars]
        ds = xr.merge([p[0] for p in parts], compat="override", join="exact")
        name, nodata = parts[0][1], parts[0][2]
    else:
        ds, name, nodata = _zarr_dataset(labels)
    with _staging(target) as tmp:
        _create_store(ds, name, tmp / "store.zarr").compute()
        staged = xr.open_zarr(tmp / "store.zarr", consolidated=False)[name]
        _require_data(_any_valid(staged.data, nodata), target)
        _publish(tmp / "store.zarr", target)
    return target


def _zarr_dataset(labels: xr.DataArray) -> tuple[xr.Dataset, str, float | None]:
    """The dataset to store: nodata and grid mapping as attributes, Zarr-compatible chunks."""
    name = str(labels.name or "landcover")
    nodata = labels.rio.nodata
    arr = labels.copy()
    arr.attrs.pop("_FillValue", None)
    arr.encoding.pop("_FillValue", None)
    if nodata is not None:
        arr.attrs["nodata"] = float(nodata) if np.isnan(nodata) else int(nodata)
    if "spatial_ref" in arr.coords:
        arr.attrs["grid_mapping"] = "spatial_ref"  # so open_zarr(decode_coords="all") finds it
    if isinstance(arr.data, da.Array):
        arr = arr.chunk(dict(zip(arr.dims, _zarr_compatible(arr.data.chunks), strict=True)))
    else:
        arr = arr.chunk()
    return arr.to_dataset(name=name), name, nodata


def _create_store(ds: xr.Dataset, name: str, path: Path) -> Any:
    """Write the store's metadata and coordinates now; returns the Delayed data write."""
    return ds.to_zarr(
        path,
        mode="w-",
        zarr_format=3,
        consolidated=False,
        compute=False,
        encoding={str(v): {"fill_value": None} for v in ds.data_vars},
    )


@overload
def to_cog(labels: xr.DataArray, path: PathLike, *, overwrite: bool = False) -> Path: ...


@overload
def to_cog(labels: xr.Dataset, path: PathLike, *, overwrite: bool = False) -> dict[str, Path]: ...


def to_cog(
    labels: xr.DataArray | xr.Dataset, path: PathLike, *, overwrite: bool = False
) -> Path | dict[str, Path]:
    """Write labels to a Cloud-Optimized GeoTIFF without holding the scene in memory.

    Chunks stream into a tiled GeoTIFF under a lock; the colour table, class names (band tags,
    and GDAL category names in a ``.aux.xml`` sidecar that QGIS reads) are added, then GDAL's
    COG driver builds the final layout with ``mode``-resampled overviews. Probabilities
    (float, one band per class) are written too, with ``average`` overviews and no colours.

    A Dataset of layers (``predict(..., output=("labels", "confidence"))``) is written as one
    COG per layer, all streamed in one pass over the prediction: ``path`` may hold ``{name}``
    (``"zion-{name}.tif"``), else ``-<name>`` is added before the suffix. Returns
    ``{name: path}`` then.

    Examples
    --------
    >>> to_cog(labels, "landcover.tif")  # doctest: +SKIP
    """
    if isinstance(labels, xr.Dataset):
        return _dataset_to_cogs(labels, path, overwrite)
    target = Path(path)
    _check_target(target, overwrite)
    _check_cog_input(labels)
    with _staging(target) as tmp:
        _stream_tiff(labels, tmp / "stream.tif").compute()
        _finish_cog(labels, tmp / "stream.tif", target, tmp)
    return target


def _cog_path(path: PathLike, name: str) -> Path:
    text = os.fspath(path)
    if "{name}" in text:
        return Path(text.format(name=name))
    p = Path(text)
    return p.with_name(f"{p.stem}-{name}{p.suffix}")


def _dataset_to_cogs(ds: xr.Dataset, path: PathLike, overwrite: bool) -> dict[str, Path]:
    import dask

    targets = {str(v): _cog_path(path, str(v)) for v in ds.data_vars}
    for name, target in targets.items():
        _check_target(target, overwrite)
        _check_cog_input(ds[name])
    with ExitStack() as stack:
        tmps = {name: stack.enter_context(_staging(t)) for name, t in targets.items()}
        # one compute: the layers share the prediction's tasks, so the model runs once
        dask.compute(*[_stream_tiff(ds[n], tmps[n] / "stream.tif") for n in targets])
        for name, target in targets.items():
            _finish_cog(ds[name], tmps[name] / "stream.tif", target, tmps[name])
    return targets


def _check_cog_input(labels: xr.DataArray) -> None:
    if labels.ndim != 2 and labels.dims[0] != "class":
        raise RasterInputError(f"to_cog writes (y, x) labels or (class, y, x), got {labels.dims}")


def _stream_tiff(labels: xr.DataArray, striped: Path) -> Any:
    """The Delayed write of ``labels`` into a tiled GeoTIFF, chunk by chunk under a lock."""
    arr = labels.rio.write_nodata(labels.rio.nodata, encoded=False)
    return arr.rio.to_raster(
        striped,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        lock=threading.Lock(),
        compute=False,
    )


def _finish_cog(labels: xr.DataArray, striped: Path, target: Path, tmp: Path) -> None:
    """Colour table and class names on the streamed GeoTIFF, then the COG layout on ``target``."""
    import rasterio
    import rasterio.shutil
    import rioxarray

    is_labels = labels.ndim == 2 and "scale" not in labels.attrs  # not an uncertainty layer
    staged = rioxarray.open_rasterio(striped, chunks={"band": 1, "y": 2048, "x": 2048})
    assert isinstance(staged, xr.DataArray)  # one band set, no subdatasets
    _require_data(_any_valid(staged.data, labels.rio.nodata), target)
    names = labels.attrs.get("class_names", [])
    ids = labels.attrs.get("class_ids", [])
    with rasterio.open(striped, "r+") as dst:
        if is_labels and ids:
            colors = labels.attrs.get("class_colors", [])
            cmap = {v: (0, 0, 0, 0) for v in range(256)}
            for cid, color in zip(ids, colors, strict=True):
                cmap[int(cid)] = (*hex_to_rgb(color), 255)
            dst.write_colormap(1, cmap)
            dst.update_tags(class_names=json.dumps(dict(zip(map(str, ids), names, strict=True))))
            dst.update_tags(1, **{f"CLASS_{i}": n for i, n in zip(ids, names, strict=True)})
        elif not is_labels:
            for band, name in enumerate(names, start=1):
                dst.set_band_description(band, str(name))
    cog = tmp / "cog.tif"
    rasterio.shutil.copy(
        striped,
        cog,
        driver="COG",
        COMPRESS="DEFLATE",
        BLOCKSIZE=512,
        OVERVIEW_RESAMPLING="MODE" if is_labels else "AVERAGE",
        RESAMPLING="NEAREST",
    )
    if is_labels and ids:
        aux = target.with_name(target.name + ".aux.xml")
        tmp_aux = tmp / "aux.xml"
        tmp_aux.write_text(_category_names_xml(ids, names))
        os.replace(tmp_aux, aux)
    _publish(cog, target)


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass overwrite=True to replace it")


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (same file system, so renames are atomic), removed
    with whatever is left in it when the block ends, on success or failure."""
    tmp = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        _remove_when_quiet(tmp)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_when_quiet(tmp: Path, quiet: float = 0.5, limit: float = 30.0) -> None:
    """Remove ``tmp`` after a failed write, again and again until nothing recreates it.

    When one chunk fails, Dask's threaded scheduler raises at once, but chunk writes already
    running in other threads finish afterwards, and the Zarr store recreates the folders they
    write into. Wait until the folder has stayed absent for ``quiet`` seconds.
    """
    deadline = time.monotonic() + limit
    absent_since = None
    while time.monotonic() < deadline:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            absent_since = None
        elif absent_since is None:
            absent_since = time.monotonic()
        elif time.monotonic() - absent_since >= quiet:
            return
        time.sleep(0.05)


def _publish(src: Path, target: Path) -> None:
    """Move a complete output onto ``target`` (replacing it; overwrite was checked before)."""
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(src, target)


def _zarr_compatible(chunks: tuple[tuple[int, ...], ...]) -> tuple[int | tuple[int, ...], ...]:
    """Zarr needs equal chunks but a smaller last one; regularise axes that are not."""
    return tuple(
        c if len(c) == 1 or (len(set(c[:-1])) == 1 and c[-1] <= c[0]) else max(c) for c in chunks
    )


# The writers check for an all-nodata result by reading back what they staged, chunk by chunk:
# a Dask reduction computed beside the write would be fused into new keys by array
# optimisation and run the whole prediction a second time.


def _any_valid(data: da.Array, nodata: float | None) -> bool:
    if nodata is None:
        return True
    first = data[0] if data.ndim == 3 else data
    valid = ~da.isnan(first) if np.isnan(nodata) else first != nodata
    return bool(valid.any().compute())


def _require_data(any_valid: bool, target: Path) -> None:
    if not any_valid:
        raise AllNodataError(
            f"every pixel of the prediction is nodata, so {target} was not written; check the "
            "input's nodata value and the area it covers"
        )


def _category_names_xml(ids: list[int], names: list[str]) -> str:
    from xml.sax.saxutils import escape

    by_id = dict(zip(ids, names, strict=True))
    cats = "".join(
        f"      <Category>{escape(str(by_id.get(v, '')))}</Category>\n" for v in range(max(ids) + 1)
    )
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )
