"""``load_stac``: a STAC search (or items) to a lazy, model-ready ``(band, y, x)`` DataArray.

The data flow: search (pystac-client) -> items as dicts, assets renamed to the preset's band
names -> a lazy ``(time, band, y, x)`` stack on the target grid (stackstac; odc-stac for
multi-band assets such as NAIP's 4-band ``image``, which stackstac cannot read) -> nodata,
per-item scale/offset and classification masks to NaN -> a lazy temporal composite. No pixel
is read until the result is computed.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from .._deps import import_optional
from ..errors import InputFileError, InputNotFoundError, MissingAssetError, StacQueryError
from ..io._raster import READ_CHUNKS
from ._composite import COMPOSITES
from ._composite import composite as _composite
from ._grid import BBox, TargetGrid, check_bbox, geometry_bounds, snapped_bounds, target_epsg
from ._presets import Band, StacPreset, get_preset
from ._regions import RegionRead, regional_image
from ._search import (
    ItemDict,
    Modifier,
    StacSearch,
    as_item_dicts,
    cloud_cover,
    item_epsg,
    search_items,
    with_epsg,
    within_cloud,
)

if TYPE_CHECKING:
    from ..model._package import ModelPackage

log = logging.getLogger("xlandcover")

MASK = "_mask"  # name of the classification layer in the internal stack

#: GDAL settings for reading cloud-hosted COGs: retry transient HTTP errors, never list
#: directories, read only raster files, merge range requests, cache headers while opening.
GDAL_CLOUD_ENV: dict[str, str] = {
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
}


def load_stac(
    source: str | Any,
    *,
    preset: str | StacPreset = "sentinel-2-l2a",
    bbox: Sequence[float] | None = None,
    intersects: Mapping[str, Any] | None = None,
    datetime: str | None = None,
    max_cloud: float | None = None,
    collections: Iterable[str] | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,
    max_items: int | None = None,
    bands: Sequence[str] | None = None,
    model: ModelPackage | str | os.PathLike[str] | None = None,
    crs: Any = None,
    resolution: float | None = None,
    composite: str | None = "default",
    chunks: int = READ_CHUNKS,
    mask: bool = True,
    resampling: str = "nearest",
    modifier: Modifier | str | None = None,
    timeout: float = 30.0,
    search_region: int | None = None,
) -> xr.DataArray:
    """Lazy, model-ready imagery from a STAC API (or from STAC items).

    Parameters
    ----------
    source
        A STAC API root URL (http or https) to search, or items: a pystac
        ``ItemCollection``, a list of ``pystac.Item`` or item dicts, a GeoJSON
        FeatureCollection dict, or the path of a saved one.
    preset
        Name of a registered preset (``"sentinel-2-l2a"``, ``"naip"``) or a
        :class:`~xlandcover.stac.StacPreset` of your own.
    bbox, intersects
        Area of interest: ``(west, south, east, north)`` in degrees, or a GeoJSON geometry.
        Used for the search and for the output grid's extent.
    datetime, max_cloud, collections, query, filter, max_items
        Search arguments: an RFC 3339 date or range (``"2024-06-01/2024-08-31"``), the
        highest cloud cover in percent, collection ids (default: the preset's), STAC
        ``query`` / CQL2 ``filter`` passed through, and the most items to fetch.
    bands, model
        Which bands, in which order: the model package's band names (``model=``), else
        ``bands``, else the preset's default bands. Names are the preset's or their aliases
        (``"red"`` or ``"B04"``); the output's ``band`` coordinate uses the names as asked.
    crs, resolution
        Output grid. ``crs`` default: the UTM zone of the area's centre (the items' own CRS
        when it is that zone's UTM projection on another datum, e.g. NAIP's NAD83); without
        an area, the items' common CRS. ``resolution`` default: the preset's, else the items'
        native pixel size. Bounds are snapped outward to whole pixels of a grid anchored at
        the CRS origin.
    composite
        ``"median"`` or ``"first"`` (least-cloudy first, or newest first when the collection
        has no cloud cover), computed lazily; ``None`` returns the ``(time, band, y, x)``
        stack in chronological order, item ids along ``time``. Default: the preset's.
    chunks
        Chunk size in pixels along ``y`` and ``x``.
    mask
        Mask the preset's classification classes (e.g. Sentinel-2 SCL clouds, shadows,
        snow) to NaN.
    resampling
        Resampling of bands onto the output grid (a rasterio ``Resampling`` name); the
        classification layer always uses nearest.
    modifier
        Called on every page of search results, e.g. ``planetary_computer.sign_inplace``; the
        string ``"planetary-computer"`` imports that (optional) package for you.
    timeout
        Seconds to wait for the STAC API.
    search_region
        Search the API per region of ``search_region x search_region`` chunks, on the workers
        as the regions are computed, instead of once for the whole extent now (for
        continental jobs: no task sees thousands of items). The pixels are those of one
        whole-extent search. Needs a URL, an area, a composite and a resolution (given or the
        preset's); the CRS default is the area centre's UTM zone (items are not consulted), and
        ``max_items`` applies per region. The result has no ``stac_items`` attribute.

    Returns
    -------
    xarray.DataArray
        float32, NaN where there is no valid observation, ``(band, y, x)`` (with
        ``composite=None``: ``(time, band, y, x)``), Dask-backed, with its CRS and transform
        set through rioxarray. Scaled to physical units with each item's own offset
        (Sentinel-2: surface reflectance, harmonised across processing baselines).

    Examples
    --------
    >>> img = load_stac(
    ...     "https://earth-search.aws.element84.com/v1", preset="sentinel-2-l2a",
    ...     bbox=(15.4, 47.0, 15.5, 47.1), datetime="2024-06-01/2024-08-31", max_cloud=20,
    ...     model=model)  # doctest: +SKIP
    >>> labels = img.landcover.predict(model)  # doctest: +SKIP
    """
    p = get_preset(preset)
    how = p.composite if composite == "default" else composite
    if how is not None and how not in COMPOSITES:
        raise StacQueryError(f"composite={composite!r}; use one of {sorted(COMPOSITES)} or None")
    area: BBox | None = None
    if bbox is not None and intersects is not None:
        raise StacQueryError("give bbox or intersects, not both")
    if bbox is not None:
        area = check_bbox(bbox)
    elif intersects is not None:
        area = geometry_bounds(intersects)
        if area[0] == area[2] or area[1] == area[3]:  # a point or a line: the items' extent
            area = None
    names = _band_names(p, bands, model)
    wanted = [p.band(n) for n in names]

    use_mask = mask and p.mask is not None
    is_url = isinstance(source, str) and source.startswith(("http://", "https://"))
    if is_url:
        search = StacSearch(
            collections=tuple(collections or [p.collection]),
            bbox=area if bbox is not None else None,
            intersects=intersects,
            datetime=datetime,
            max_cloud=max_cloud,
            query=query,
            filter=filter,
            max_items=max_items,
        )
    if search_region is not None:
        if (
            isinstance(search_region, bool)
            or not isinstance(search_region, int)
            or search_region < 1
        ):
            raise StacQueryError(
                f"search_region={search_region!r}: give the chunks per side of a region (e.g. 8)"
            )
        if not is_url:
            raise StacQueryError(
                "search_region= searches a STAC API region by region: give the API's URL "
                "(items given directly are loaded with search_region=None)"
            )
        if how is None or area is None:
            raise StacQueryError(
                "search_region= needs a composite (not composite=None: the time steps differ "
                "between regions) and an area (bbox= or an intersects= polygon) to fix the grid"
            )
        if resolution is None and p.resolution is None:
            raise StacQueryError(
                f"preset {p.name!r} has no default resolution and search_region= fixes the "
                "grid before any item is seen; pass resolution="
            )
        epsg = target_epsg(crs, area, ())
        res = float(resolution if resolution is not None else p.resolution)  # type: ignore[arg-type]
        grid = TargetGrid(epsg, res, snapped_bounds(area, epsg, res), chunks)
        spec = RegionRead(source, p, search, tuple(wanted), grid, how, resampling, use_mask,
                          modifier, timeout, search_region)  # fmt: skip
        log.info("STAC: searched per region of %d x %d chunks, %s, bands %s",
                 search_region, search_region, grid, names)  # fmt: skip
        values = _on_grid(regional_image(spec), grid).assign_coords(band=list(names))
        return _finish(values, p, epsg, grid, how, attrs={"stac_search_region": search_region})
    if is_url:
        items = search_items(source, p, search, modifier=modifier, timeout=timeout)
    else:
        items = within_cloud(as_item_dicts(_read_items(source)), p, max_cloud)
    items = prepared_items(items, p, wanted, how, use_mask)

    epsg = target_epsg(crs, area, (item_epsg(i) for i in items))
    res = float(resolution) if resolution is not None else _native_resolution(p, items)
    if area is None:
        area = _union_bbox(items)
    grid = TargetGrid(epsg, res, snapped_bounds(area, epsg, res), chunks)
    log.info("STAC: %d items, %s, bands %s", len(items), grid, names)
    values = physical_values(items, p, wanted, grid, resampling, use_mask)
    values = values.assign_coords(band=list(names))
    if how is None:
        values = values.assign_coords(
            time=_times(items), id=("time", [str(i["id"]) for i in items])
        )
        out = values.transpose("time", "band", "y", "x")
    else:
        out = _composite(values, how).transpose("band", "y", "x")
        out = out.chunk({"band": -1})
    return _finish(out, p, epsg, grid, how, attrs={"stac_items": [str(i["id"]) for i in items]})


def _finish(
    out: xr.DataArray, p: StacPreset, epsg: int, grid: TargetGrid, how: str | None, attrs: dict
) -> xr.DataArray:
    """The CRS, transform, nodata, name and provenance attributes of ``load_stac``'s result."""
    out = out.rio.write_crs(epsg).rio.write_transform(grid.transform)
    out = out.rio.write_nodata(np.nan, encoded=False)
    out.name = "reflectance" if p.scale != 1 else "imagery"
    out.attrs.update(stac_preset=p.name, **attrs, composite=str(how))
    return out


def _on_grid(data: Any, grid: TargetGrid) -> xr.DataArray:
    """``(band, y, x)`` data with the pixel-centre coordinates of ``grid``."""
    res, (left, _, _, top) = grid.resolution, grid.bounds
    rows, cols = grid.shape
    y = top - (np.arange(rows) + 0.5) * res
    x = left + (np.arange(cols) + 0.5) * res
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"y": y, "x": x})


def prepared_items(
    items: list[ItemDict], p: StacPreset, wanted: list[Band], how: str | None, use_mask: bool
) -> list[ItemDict]:
    """Items as the stackers read them: ``proj:epsg`` set, in the composite's order
    (chronological without one), assets renamed to the bands asked for."""
    items = [with_epsg(i) for i in items]
    items = _priority_order(items, p) if how is not None else _chronological(items)
    return [_select_assets(item, p, wanted, use_mask) for item in items]


def physical_values(
    items: list[ItemDict],
    p: StacPreset,
    bands: list[Band],
    grid: TargetGrid,
    resampling: str,
    use_mask: bool,
) -> xr.DataArray:
    """The lazy ``(time, band, y, x)`` stack in physical units: nodata and masked classes NaN,
    ``DN * scale + offset`` with each item's own offset."""
    multi = any(b.index is not None for b in bands)
    dn = STACKERS["odc" if multi else "stackstac"](items, bands, grid, resampling)
    if p.nodata is not None:
        dn = dn.where(dn != p.nodata)
    offsets = xr.DataArray(
        np.array([p.offset(i["properties"]) for i in items], dtype=np.float32), dims="time"
    )
    values = (dn * np.float32(p.scale) + offsets).astype(np.float32)
    if use_mask:
        assert p.mask is not None
        classes = _stack_stackstac(items, [Band(MASK, (MASK,))], grid, "nearest")
        bad = classes.isel(band=0, drop=True).isin(sorted(p.mask.values))
        values = values.where(~bad)
    return values


def _band_names(p: StacPreset, bands: Sequence[str] | None, model: Any) -> tuple[str, ...]:
    if model is not None:
        if bands is not None:
            raise StacQueryError("give bands or model, not both: the model decides the bands")
        from ..model._package import ModelPackage, load_model

        pkg = model if isinstance(model, ModelPackage) else load_model(model)
        return tuple(pkg.bands)
    return tuple(bands) if bands is not None else p.default_bands


def _read_items(source: Any) -> Any:
    """Items given directly, or read from a saved search (GeoJSON FeatureCollection file)."""
    if isinstance(source, str | os.PathLike):
        import json

        if not os.path.exists(source):
            raise InputNotFoundError(
                f"{source!s} is neither an http(s) STAC API URL nor an existing item file; "
                "give the API's root URL or the path of a saved ItemCollection"
            )
        try:
            with open(source) as f:
                return json.load(f)
        except json.JSONDecodeError as err:
            raise InputFileError(
                f"{source!s} is not valid JSON ({err}); it may be cut short: save the search "
                "again (e.g. `search.item_collection().save_object(path)`)"
            ) from err
        except (UnicodeDecodeError, RecursionError) as err:
            raise InputFileError(
                f"{source!s} is not a readable ItemCollection file ({type(err).__name__}); "
                "save the search again"
            ) from err
    return source


def _chronological(items: list[ItemDict]) -> list[ItemDict]:
    return sorted(items, key=lambda i: (str(i["properties"].get("datetime") or ""), str(i["id"])))


def _priority_order(items: list[ItemDict], p: StacPreset) -> list[ItemDict]:
    """Least cloudy first when the collection has cloud cover, else newest first; ties in the
    item ids' order, so that the order never depends on the order of the search results."""
    by_time = sorted(
        items, key=lambda i: (str(i["properties"].get("datetime") or ""), str(i["id"])),
        reverse=True,
    )  # fmt: skip
    if p.cloud_cover is None:
        return by_time
    return sorted(by_time, key=lambda i: cloud_cover(i, p))


def _select_assets(item: ItemDict, p: StacPreset, bands: list[Band], use_mask: bool) -> ItemDict:
    """A copy of ``item`` whose assets are exactly the bands asked for, keyed by band name
    (single-band assets) or by their own key (multi-band assets, read by band index)."""
    assets = item.get("assets", {})
    out: dict[str, Any] = {}
    for band in bands:
        key = _find_asset(assets, band)
        if key is None:
            have = ", ".join(sorted(assets)) or "none"
            raise MissingAssetError(
                f"item {item.get('id')!r} has no asset for band {band.name!r} (looked for "
                f"{', '.join(band.assets)} and eo:bands common_name {band.name!r}); its assets "
                f"are {have}. Choose bands it has, or a preset for this collection"
            )
        asset = copy.deepcopy(assets[key])
        if band.index is None:
            out[band.name] = asset
        else:
            n = max(len(asset.get("eo:bands", [])), len(asset.get("raster:bands", [])), 1)
            if band.index > n:
                raise MissingAssetError(
                    f"item {item.get('id')!r}: asset {key!r} has {n} bands, band "
                    f"{band.name!r} is band {band.index}"
                )
            if len(asset.get("raster:bands", [])) < n:  # odc-stac counts bands from these
                asset["raster:bands"] = [{} for _ in range(n)]
            out[key] = asset
    if use_mask:
        assert p.mask is not None
        key = next((k for k in p.mask.assets if k in assets), None)
        if key is None:
            raise MissingAssetError(
                f"item {item.get('id')!r} has no {'/'.join(p.mask.assets)} asset to mask "
                "clouds with; pass mask=False to load without masking"
            )
        out[MASK] = copy.deepcopy(assets[key])
    new = copy.deepcopy({k: v for k, v in item.items() if k not in ("assets", "links")})
    new["assets"] = out
    new["links"] = []
    return new


def _find_asset(assets: Mapping[str, Any], band: Band) -> str | None:
    for key in band.assets:
        if key in assets:
            return key
    if band.index is not None:
        return None
    names = {n.lower() for n in band.names()}
    for key, asset in assets.items():
        eo = asset.get("eo:bands") or []
        if len(eo) == 1 and (
            str(eo[0].get("common_name", "")).lower() == band.name.lower()
            or str(eo[0].get("name", "")).lower() in names
        ):
            return key
    return None


def _native_resolution(p: StacPreset, items: list[ItemDict]) -> float:
    if p.resolution is not None:
        return p.resolution
    sizes = []
    for item in items:
        for asset in (*item["assets"].values(), item["properties"]):
            t = asset.get("proj:transform")
            if t:
                sizes.append(abs(float(t[0])))
        if not sizes and item["properties"].get("gsd"):
            sizes.append(float(item["properties"]["gsd"]))
    if not sizes:
        raise StacQueryError(
            f"the items give no pixel size (proj:transform or gsd) and preset {p.name!r} has "
            "no default; pass resolution="
        )
    return min(sizes)


def _union_bbox(items: list[ItemDict]) -> BBox:
    boxes = [i["bbox"] for i in items if i.get("bbox")]
    if not boxes:
        raise StacQueryError("the items have no bbox; pass bbox= to set the output extent")
    return check_bbox(
        (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    )


def _times(items: list[ItemDict]) -> np.ndarray:
    import pandas as pd

    stamps = [pd.Timestamp(i["properties"].get("datetime")) for i in items]
    return np.array([s.tz_convert(None) if s.tzinfo else s for s in stamps], dtype="M8[ns]")


def _stack_stackstac(
    items: list[ItemDict], bands: list[Band], grid: TargetGrid, resampling: str
) -> xr.DataArray:
    """The lazy ``(time, band, y, x)`` stack through stackstac (single-band assets)."""
    stackstac = import_optional("stackstac", "load_stac")
    from rasterio.enums import Resampling

    env = stackstac.LayeredEnv(
        always=GDAL_CLOUD_ENV, open={"VSI_CACHE": "TRUE"}, read={"VSI_CACHE": "FALSE"}
    )
    stack = stackstac.stack(
        items,
        assets=[b.name for b in bands],
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        resampling=Resampling[resampling],
        chunksize=grid.chunks,
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        gdal_env=env,
    )
    return stack.drop_vars([c for c in stack.coords if c not in ("y", "x")])


def _stack_odc(
    items: list[ItemDict], bands: list[Band], grid: TargetGrid, resampling: str
) -> xr.DataArray:
    """The same stack through odc-stac, one item at a time so the time order is ours."""
    import_optional("odc.stac", "load_stac of multi-band assets")
    import odc.stac
    import pystac

    odc.stac.configure_rio(cloud_defaults=True, **dict[str, Any](GDAL_CLOUD_ENV))
    geobox = grid.geobox()
    keys = [f"{b.assets[0]}.{b.index}" for b in bands]
    layers = []
    for item in items:
        ds = odc.stac.load(
            [pystac.Item.from_dict(item)],
            bands=keys,
            geobox=geobox,
            chunks={"y": grid.chunks, "x": grid.chunks},
            dtype="float32",
            nodata=np.float32(np.nan),
            resampling=resampling,
            groupby="id",
        )
        layer = xr.concat([ds[k].isel(time=0, drop=True) for k in keys], dim="band")
        layers.append(layer.drop_vars([c for c in layer.coords if c not in ("y", "x")]))
    return xr.concat(layers, dim="time")


#: How the lazy stack is read, by backend: stackstac for single-band assets, odc-stac for
#: multi-band ones (NAIP's 4-band ``image``), each ``(items, bands, grid, resampling)``.
STACKERS: dict[str, Callable[[list[ItemDict], list[Band], TargetGrid, str], xr.DataArray]] = {
    "stackstac": _stack_stackstac,
    "odc": _stack_odc,
}
