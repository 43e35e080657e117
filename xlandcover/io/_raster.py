"""Opening local rasters lazily as ``(band, y, x)`` DataArrays with their CRS and transform.

Before anything is read lazily, each file is checked once with rasterio so that problems show
up as clear errors now rather than as tracebacks in Dask tasks later: files GDAL cannot read,
truncated GeoTIFFs, VRTs whose sources are missing, and rasters georeferenced only by ground
control points. Internal masks and alpha bands are applied: masked pixels become nodata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array
import numpy as np
import xarray as xr

from ..errors import (
    ChunkSizeError,
    InputFileError,
    InputNotFoundError,
    MissingCRSError,
    RasterInputError,
)

#: Attribute marking a raster whose grid is pixel units, not a CRS (e.g. plain JPEG imagery).
PIXEL_GRID_ATTR = "xlandcover_pixel_grid"

PathLike = str | os.PathLike[str]

#: Default chunk size in pixels of the lazy reads (``open_raster``, ``load_stac``).
READ_CHUNKS = 2048


def open_raster(
    path: PathLike | Sequence[PathLike],
    *,
    chunks: int | None = READ_CHUNKS,
    bands: Sequence[str] | None = None,
    pixel_grid: bool = False,
) -> xr.DataArray:
    """Open a GeoTIFF, COG, VRT, JPEG/PNG or Zarr raster lazily as a ``(band, y, x)`` array.

    Parameters
    ----------
    path
        One raster, or several single- or multi-band rasters on the same grid to stack as bands.
    chunks
        Chunk size in pixels along ``y`` and ``x`` (bands are one chunk); ``None`` for a
        numpy-backed array read at once.
    bands
        Band names, in order. Without them, names come from the rasters' band descriptions:
        a band without a description is named by its number (``"4"``), and when no band has
        one the ``band`` coordinate stays numeric (``predict`` then matches bands by position
        only when asked to, ``match_bands="position"``).
    pixel_grid
        Accept a raster without a CRS (plain aerial JPEG/PNG) by giving it a grid of one unit
        per pixel. Without it, a raster with no CRS raises :class:`MissingCRSError`.

    Returns
    -------
    xarray.DataArray
        Lazy (Dask-backed unless ``chunks=None``), with ``rio.crs``, ``rio.transform()`` and
        ``rio.nodata`` set from the file; nodata pixels are masked by ``predict``. Pixels an
        internal mask or alpha band marks as empty are nodata too (an alpha band is not
        returned as a band); a raster without a nodata value then gets one: NaN for floats,
        otherwise the largest value of the next wider integer type (e.g. ``uint8`` data
        becomes ``uint16`` with nodata 65535).

    Examples
    --------
    >>> img = open_raster("scene.tif", chunks=2048)  # doctest: +SKIP
    >>> img.dims
    ('band', 'y', 'x')  # doctest: +SKIP
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise RasterInputError("open_raster() needs at least one path")
    check_chunks(chunks)
    parts = [_open_one(Path(p), chunks=chunks, pixel_grid=pixel_grid) for p in paths]
    image = parts[0] if len(parts) == 1 else _stack(parts, paths)
    names = list(bands) if bands is not None else _descriptions(parts)
    if names is not None:
        if len(names) != image.sizes["band"]:
            raise RasterInputError(
                f"{len(names)} band names were given for {image.sizes['band']} bands in "
                f"{[str(p) for p in paths]}; give one name per band"
            )
        image = image.assign_coords(band=[str(n) for n in names])
    image.attrs.pop("long_name", None)
    return image


def check_chunks(chunks: Any, *, what: str = "chunks") -> None:
    """Refuse a chunk size that is not a positive number of pixels (``None`` is allowed)."""
    if chunks is None:
        return
    if isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks < 1:
        raise ChunkSizeError(
            f"{what}={chunks!r} is not a chunk size: give a positive number of pixels "
            "(e.g. 2048), or None to read the raster at once"
        )


def _open_one(path: Path, *, chunks: int | None, pixel_grid: bool) -> xr.DataArray:
    if not path.exists():
        raise InputNotFoundError(f"raster {path} does not exist; check the path")
    chunk_spec = None if chunks is None else {"band": -1, "y": chunks, "x": chunks}
    if path.is_dir() or path.suffix == ".zarr":
        da = _open_zarr(path, chunk_spec)
    else:
        import rasterio
        import rioxarray

        probe = _probe(path)
        with warnings.catch_warnings():
            # a missing CRS gets a clearer error (or the pixel grid) below
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            try:
                opened = rioxarray.open_rasterio(path, chunks=chunk_spec, masked=False, lock=False)
            except rasterio.errors.RasterioError as err:
                raise _unreadable(path, err) from err
        if not isinstance(opened, xr.DataArray):
            raise RasterInputError(f"{path} holds several subdatasets; open one of them")
        da = opened
        if probe.masked:
            da = _apply_mask(da, path, probe)
        if chunks is None:
            da = da.load()
    if da.rio.crs is None:
        if not pixel_grid:
            raise MissingCRSError(
                f"{path} has no CRS. Georeference it (e.g. `gdal_edit.py -a_srs EPSG:XXXX`), "
                "set one with `img.rio.write_crs(...)`, or pass pixel_grid=True to work in "
                "pixel units"
            )
        da.attrs[PIXEL_GRID_ATTR] = 1
        # the lazy reads reopen the file in Dask tasks, each warning "no geotransform": the
        # caller asked for the pixel grid, so the warning says nothing new
        import rasterio

        warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    return da


@dataclass(frozen=True)
class _Probe:
    """What rasterio says about a file before it is read lazily."""

    #: 0-based index of the alpha band, if the file has one
    alpha: int | None
    #: pixels are masked by an internal mask or an alpha band (beyond nodata)
    masked: bool


def _probe(path: Path) -> _Probe:
    """Open ``path`` once with rasterio and refuse what cannot be read correctly."""
    import rasterio
    from rasterio.enums import ColorInterp, MaskFlags

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                _check_sources(path, src.files)
                _check_complete(path, src)
                _check_georeferencing(path, src)
                alpha = [i for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
                flags = {f for band in src.mask_flag_enums for f in band}
        except rasterio.errors.RasterioError as err:
            raise _unreadable(path, err) from err
    masked = bool(alpha) or MaskFlags.per_dataset in flags
    return _Probe(alpha=alpha[0] if alpha else None, masked=masked)


def _unreadable(path: Path, err: Exception) -> InputFileError:
    return InputFileError(
        f"{path} cannot be read as a raster ({err}); it may be truncated or of another "
        "format: copy it again, or check it with `gdalinfo`"
    )


def _check_sources(path: Path, files: Sequence[str]) -> None:
    """A VRT (or a file with sidecars) whose listed source files are missing."""
    missing = [f for f in files[1:] if not f.startswith("/vsi") and not os.path.exists(f)]
    if missing:
        raise InputNotFoundError(
            f"{path} refers to source files that do not exist: {missing}; fix the paths in "
            "it (relative paths are relative to the VRT when relativeToVRT=1) or rebuild it "
            "with `gdalbuildvrt`"
        )


def _check_complete(path: Path, src: Any) -> None:
    """A GeoTIFF cut short: its last blocks lie beyond the end of the file."""
    size = path.stat().st_size
    rows, cols = src.block_shapes[0]
    last = f"{(src.width - 1) // cols}_{(src.height - 1) // rows}"
    for band in range(1, src.count + 1):
        offset = src.get_tag_item(f"BLOCK_OFFSET_{last}", "TIFF", bidx=band)
        length = src.get_tag_item(f"BLOCK_SIZE_{last}", "TIFF", bidx=band)
        if offset and length and int(offset) + int(length) > size:
            raise InputFileError(
                f"{path} is truncated: it is {size} bytes but its last block of band {band} "
                f"ends at byte {int(offset) + int(length)}; copy the file again"
            )


def _check_georeferencing(path: Path, src: Any) -> None:
    """A raster placed only by ground control points has no grid to predict on."""
    gcps, _ = src.gcps
    if gcps and src.transform.is_identity:
        raise RasterInputError(
            f"{path} is georeferenced only by {len(gcps)} ground control points (GCPs), not "
            "by a grid; warp it onto one first, e.g. `gdalwarp -t_srs EPSG:XXXX in.tif "
            "out.tif` or `xlandcover.open_raster(..., pixel_grid=True)` after "
            "`rioxarray.open_rasterio(path).rio.reproject(...)`"
        )


def _apply_mask(image: xr.DataArray, path: Path, probe: _Probe) -> xr.DataArray:
    """Set pixels outside the file's dataset mask (internal mask, alpha) to nodata."""
    if probe.alpha is not None:
        keep = [i for i in range(image.sizes["band"]) if i != probe.alpha]
        long_name = image.attrs.get("long_name")
        image = image.isel(band=keep)
        if isinstance(long_name, tuple | list) and len(long_name) == len(keep) + 1:
            image.attrs["long_name"] = tuple(long_name[i] for i in keep)
    nodata, dtype = _mask_nodata(image)
    data = image.data
    if isinstance(data, dask.array.Array):
        rows, cols = data.chunks[1:]
        assert all(c == rows[0] for c in rows[:-1]) and all(c == cols[0] for c in cols[:-1])
        valid = dask.array.map_blocks(
            _read_mask,
            path=str(path),
            step=(rows[0], cols[0]),
            chunks=data.chunks[1:],
            dtype=bool,
            meta=np.empty((0, 0), bool),
        )
    else:
        valid = _read_mask(path=str(path))
    masked = image.copy(data=dask.array.where(valid[None], data.astype(dtype), dtype.type(nodata)))
    if isinstance(data, np.ndarray):
        masked = masked.compute()
    return masked.rio.write_nodata(nodata, encoded=False)


def _mask_nodata(image: xr.DataArray) -> tuple[float, np.dtype]:
    """The nodata value for masked pixels, and the dtype that can hold it beside the data."""
    dtype = image.dtype
    if image.rio.nodata is not None:
        return image.rio.nodata, dtype
    if dtype.kind == "f":
        return float("nan"), dtype
    wider = {1: 2, 2: 4, 4: 8}.get(dtype.itemsize)
    if wider is None:
        return float("nan"), np.dtype("float64")
    promoted = np.dtype(f"{dtype.kind}{wider}")
    info = np.iinfo(promoted)
    return (info.max if dtype.kind == "u" else info.min), promoted


def _read_mask(
    path: str, step: tuple[int, int] | None = None, block_id: tuple[int, int] | None = None
) -> np.ndarray:
    """The dataset mask of ``path`` (True where valid) for block ``block_id`` of regular
    ``step``-sized chunks (the last ones cut by the raster's edge), or the whole raster.
    (``block_id``, not ``block_info``: map_blocks builds ``block_info`` for every chunk on
    the client, hundreds of MB for a continental job.)"""
    import rasterio
    from rasterio.windows import Window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            if block_id is None or step is None:
                return src.dataset_mask() > 0
            r0, c0 = block_id[0] * step[0], block_id[1] * step[1]
            r1, c1 = min(r0 + step[0], src.height), min(c0 + step[1], src.width)
            return src.dataset_mask(window=Window(c0, r0, c1 - c0, r1 - r0)) > 0


def _open_zarr(path: Path, chunk_spec: dict[str, int] | None) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers .rio)

    if not any((path / meta).is_file() for meta in ("zarr.json", ".zgroup", ".zarray")):
        what = (
            "an empty folder" if path.is_dir() and not any(path.iterdir()) else "not a Zarr store"
        )
        raise InputFileError(
            f"{path} is {what} (it has no zarr.json or .zgroup); give a raster file, or the "
            "path of a Zarr store written by xarray or xlandcover"
        )
    try:
        ds = xr.open_zarr(path, chunks=chunk_spec or None, decode_coords="all", consolidated=False)
    except (OSError, ValueError, KeyError) as err:
        raise InputFileError(
            f"{path} cannot be opened as a Zarr store ({err}); check it is complete"
        ) from err
    if len(ds.data_vars) != 1:
        raise RasterInputError(
            f"{path} holds {len(ds.data_vars)} variables {list(ds.data_vars)}; open it with "
            "xarray.open_zarr and pass the (band, y, x) variable to predict"
        )
    da = next(iter(ds.data_vars.values()))
    if da.dims == ("y", "x"):
        da = da.expand_dims("band")
    if set(da.dims) != {"band", "y", "x"}:
        raise RasterInputError(f"{path}: expected dims (band, y, x), got {da.dims}")
    da = da.transpose("band", "y", "x")
    return da if chunk_spec else da.load()


def _descriptions(parts: list[xr.DataArray]) -> list[str] | None:
    """Band names from the files' descriptions; a band without one is named by its number.

    None when no band has a description (the ``band`` coordinate then stays numeric).
    Duplicate names are kept: ``predict`` refuses to pick a band whose name is not unique.
    """
    names: list[str] = []
    described = False
    for part in parts:
        desc = part.attrs.get("long_name")
        if isinstance(desc, str):
            desc = (desc,)
        if not isinstance(desc, tuple | list) or len(desc) != part.sizes["band"]:
            desc = ("",) * part.sizes["band"]
        for d in desc:
            described = described or bool(d)
            names.append(str(d) if d else str(len(names) + 1))
    return names if described else None


def _stack(parts: list[xr.DataArray], paths: Sequence[PathLike]) -> xr.DataArray:
    first = parts[0]
    for part, p in zip(parts[1:], paths[1:], strict=True):
        if (
            part.shape[1:] != first.shape[1:]
            or part.rio.crs != first.rio.crs
            or part.rio.transform() != first.rio.transform()
        ):
            raise RasterInputError(
                f"{p} is not on the grid of {paths[0]} (shape, CRS or transform differ); "
                "resample it first, e.g. with `img.rio.reproject_match(other)`"
            )
        if part.rio.nodata != first.rio.nodata:
            raise RasterInputError(
                f"{p} has nodata {part.rio.nodata} but {paths[0]} has {first.rio.nodata}; "
                "rewrite one so they agree"
            )
    stacked = xr.concat(
        [p.assign_coords(band=range(p.sizes["band"])) for p in parts],
        dim="band",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )
    return stacked.assign_coords(band=list(range(1, stacked.sizes["band"] + 1)))
