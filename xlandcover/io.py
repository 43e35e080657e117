"""Opening local rasters lazily as ``(band, y, x)`` DataArrays with their CRS and transform."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from .errors import InputNotFoundError, MissingCRSError, RasterInputError

#: Attribute marking a raster whose grid is pixel units, not a CRS (e.g. plain JPEG imagery).
PIXEL_GRID_ATTR = "xlandcover_pixel_grid"

PathLike = str | os.PathLike[str]


def open_raster(
    path: PathLike | Sequence[PathLike],
    *,
    chunks: int | None = 2048,
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
        Band names, in order. Without them, names come from the rasters' band descriptions
        when every band has a distinct one; otherwise the ``band`` coordinate stays numeric
        and only the band count is checked against a model.
    pixel_grid
        Accept a raster without a CRS (plain aerial JPEG/PNG) by giving it a grid of one unit
        per pixel. Without it, a raster with no CRS raises :class:`MissingCRSError`.

    Returns
    -------
    xarray.DataArray
        Lazy (Dask-backed unless ``chunks=None``), with ``rio.crs``, ``rio.transform()`` and
        ``rio.nodata`` set from the file; nodata pixels are masked by ``predict``.

    Examples
    --------
    >>> img = open_raster("scene.tif", chunks=2048)  # doctest: +SKIP
    >>> img.dims
    ('band', 'y', 'x')  # doctest: +SKIP
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise RasterInputError("open_raster() needs at least one path")
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


def _open_one(path: Path, *, chunks: int | None, pixel_grid: bool) -> xr.DataArray:
    if not path.exists():
        raise InputNotFoundError(f"raster {path} does not exist; check the path")
    chunk_spec = None if chunks is None else {"band": -1, "y": chunks, "x": chunks}
    if path.is_dir() or path.suffix == ".zarr":
        da = _open_zarr(path, chunk_spec)
    else:
        import rasterio
        import rioxarray

        with warnings.catch_warnings():
            # a missing CRS gets a clearer error (or the pixel grid) below
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            opened = rioxarray.open_rasterio(path, chunks=chunk_spec, masked=False, lock=False)
        if not isinstance(opened, xr.DataArray):
            raise RasterInputError(f"{path} holds several subdatasets; open one of them")
        da = opened
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


def _open_zarr(path: Path, chunk_spec: dict[str, int] | None) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers .rio)

    ds = xr.open_zarr(path, chunks=chunk_spec or None, decode_coords="all", consolidated=False)
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
    names: list[str] = []
    for part in parts:
        desc = part.attrs.get("long_name")
        if isinstance(desc, str):
            desc = (desc,)
        if not desc or len(desc) != part.sizes["band"] or not all(desc):
            return None
        names.extend(str(d) for d in desc)
    return names if len(set(names)) == len(names) else None


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
