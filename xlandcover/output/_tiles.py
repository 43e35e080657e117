"""Tiled outputs for continents: one COG per tile of a fixed grid, a VRT mosaic, a STAC catalog.

``write_cog_tiles(labels, folder)`` cuts the label map into tiles of ``tile`` x ``tile``
pixels of a grid anchored at the raster's top-left pixel (tile ``(i, j)`` holds rows
``i * tile`` to ``(i + 1) * tile``), and writes each tile that holds data with the checked COG
writer (:func:`~xlandcover.output.to_cog`: colour table, class names, overviews, every block
read back). Tiles wholly outside the area of interest are not written. Then:

- ``mosaic.vrt``: a GDAL VRT of every tile (nodata where there is no tile), with the colour
  table and class names, so the tiles open as one raster in QGIS or GDAL;
- ``catalog.json``: a self-contained STAC catalog (pystac) with one item per tile (footprint in
  EPSG:4326, the projection extension, the COG as asset) and the class table on each asset
  (the classification extension), so the map can be browsed and served.

``tiles.json`` in the folder records the job (written first); a folder holding another job's
tiles, or files that are not xlandcover's, is refused (``overwrite=True`` replaces another
xlandcover job's tiles, never other files). Rerunning the same job skips the tiles it wrote.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._files import atomic_write
from ..errors import AllNodataError, OutputExistsError, OverwriteRefusedError, RasterInputError
from ._targets import MARKER, output_lock, output_record
from ._write import to_cog

#: Pixels per side of a tile of ``--cog-tiles`` (a 1 m continent: 16 km tiles).
TILE_SIZE = 16384
RECORD = "tiles.json"
VRT = "mosaic.vrt"
CATALOG = "catalog.json"


def write_cog_tiles(
    labels: xr.DataArray,
    folder: str | os.PathLike[str],
    *,
    tile: int = TILE_SIZE,
    job: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` as one COG per tile of a fixed grid, a VRT mosaic and a STAC catalog.

    Parameters
    ----------
    labels
        ``(y, x)`` labels with a CRS, as :func:`~xlandcover.predict` returns them (lazy, or
        opened from the job's Zarr store).
    folder
        The folder of the tiles; created if missing.
    tile
        Pixels per side of a tile (a multiple of 512, the COGs' block size).
    job
        The job's identifier (recorded; a rerun of the same job skips its finished tiles).
    overwrite
        Replace another xlandcover job's tiles in ``folder`` (never other files).

    Returns
    -------
    pathlib.Path
        The STAC catalog (``folder/catalog.json``).
    """
    if labels.ndim != 2 or labels.rio.crs is None:
        raise RasterInputError(
            f"write_cog_tiles needs (y, x) labels with a CRS, got dims {labels.dims} and "
            f"CRS {labels.rio.crs}"
        )
    if tile < 512 or tile % 512:
        raise RasterInputError(f"tile must be a multiple of 512 pixels, not {tile}")
    root = Path(folder)
    height, width = labels.sizes["y"], labels.sizes["x"]
    record = {
        "kind": "cog-tiles",
        "job": job,
        "tile": tile,
        "shape": [height, width],
        "crs": labels.rio.crs.to_string(),
        "transform": list(labels.rio.transform())[:6],
    }
    with output_lock(root):
        _claim(root, record, overwrite)
        tiles = []
        for i in range(-(-height // tile)):
            for j in range(-(-width // tile)):
                rows = slice(i * tile, min((i + 1) * tile, height))
                cols = slice(j * tile, min((j + 1) * tile, width))
                if not _may_hold_data(labels, rows, cols):
                    continue
                path = root / f"tile-{i:04d}-{j:04d}.tif"
                done = output_record(path, "cog")
                if not (done and job is not None and done.get("job") == job):
                    try:
                        to_cog(labels.isel(y=rows, x=cols), path, overwrite=True, job=job)
                    except AllNodataError:
                        continue  # nothing to map in this tile
                tiles.append((i, j, rows, cols, path))
        atomic_write(root / VRT, lambda p: p.write_text(_vrt(labels, tiles)))
        _stale_items(root, {path.stem for *_, path in tiles})
        _catalog(labels, tiles, root, record)
    return root / CATALOG


def _claim(root: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Refuse a folder holding other files or another job's tiles; record this job."""
    mine = root / RECORD
    if root.exists():
        if not root.is_dir():
            raise OutputExistsError(f"{root} exists and is not a folder; choose another path")
        old = _read_record(mine)
        others = [p.name for p in root.iterdir() if not p.name.startswith(".")]
        if old is None and others:
            raise OverwriteRefusedError(
                f"{root} holds files that are not xlandcover tiles ({', '.join(sorted(others)[:3])}"
                f"{', ...' if len(others) > 3 else ''}); give --cog-tiles an empty or new folder"
            )
        if old is not None and old != record:
            if not overwrite:
                raise OutputExistsError(
                    f"{root} holds the tiles of another job ({old.get('job')}, tile "
                    f"{old.get('tile')} px); pass overwrite=True (--overwrite) to replace "
                    "them, or choose another folder"
                )
            for p in root.iterdir():
                if p.name.startswith("tile-") or p.name in (VRT, CATALOG) or p.suffix == ".json":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(mine, lambda p: p.write_text(json.dumps({MARKER: record}, indent=1)))


def _stale_items(root: Path, keep: set[str]) -> None:
    """Remove item folders of tiles this run did not write (a rerun after a change)."""
    for p in root.glob("tile-*"):
        if p.is_dir() and p.name not in keep:
            shutil.rmtree(p)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text()).get(MARKER)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def _may_hold_data(labels: xr.DataArray, rows: slice, cols: slice) -> bool:
    """False when every chunk under the tile lies outside the area of interest."""
    import dask.array as da

    from ..prediction._graph import inside_chunks

    if not isinstance(labels.data, da.Array):
        return True
    inside = inside_chunks(labels.data)
    if inside is None:
        return True
    ye = np.cumsum((0, *labels.data.chunks[-2]))
    xe = np.cumsum((0, *labels.data.chunks[-1]))
    ri = (ye[1:] > rows.start) & (ye[:-1] < rows.stop)
    ci = (xe[1:] > cols.start) & (xe[:-1] < cols.stop)
    return bool(inside[np.ix_(ri, ci)].any())


def _vrt(labels: xr.DataArray, tiles: list[tuple[int, int, slice, slice, Path]]) -> str:
    """The VRT of the tiles (GDAL's VRT format, written as XML: ``gdal.BuildVRT`` needs the
    GDAL Python bindings, which rasterio does not ship)."""
    from xml.sax.saxutils import escape

    t = labels.rio.transform()
    ids = [int(v) for v in labels.attrs.get("class_ids", [])]
    names = [str(v) for v in labels.attrs.get("class_names", [])]
    colors = labels.attrs.get("class_colors", [])
    nodata = labels.rio.nodata
    lines = [
        f'<VRTDataset rasterXSize="{labels.sizes["x"]}" rasterYSize="{labels.sizes["y"]}">',
        f"  <SRS>{escape(labels.rio.crs.to_wkt())}</SRS>",
        f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
        '  <VRTRasterBand dataType="Byte" band="1">',
    ]
    if nodata is not None:
        lines.append(f"    <NoDataValue>{int(nodata)}</NoDataValue>")
    if ids:
        by_id = dict(zip(ids, names, strict=False))
        lines.append("    <CategoryNames>")
        lines += [f"      <Category>{escape(by_id.get(v, ''))}</Category>" for v in range(256)]
        lines.append("    </CategoryNames>")
        lines.append("    <ColorInterp>Palette</ColorInterp>")
        rgb = {i: _rgb(c) for i, c in zip(ids, colors, strict=False)}
        lines.append("    <ColorTable>")
        for v in range(256):
            r, g, b = rgb.get(v, (0, 0, 0))
            alpha = 0 if v == nodata else 255
            lines.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{alpha}"/>')
        lines.append("    </ColorTable>")
    for _, _, rows, cols, path in tiles:
        h, w = rows.stop - rows.start, cols.stop - cols.start
        lines += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="1">{escape(path.name)}</SourceFilename>',
            "      <SourceBand>1</SourceBand>",
            f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
            f'      <DstRect xOff="{cols.start}" yOff="{rows.start}" xSize="{w}" ySize="{h}"/>',
            "    </SimpleSource>",
        ]
    lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return "\n".join(lines)


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _catalog(
    labels: xr.DataArray,
    tiles: list[tuple[int, int, slice, slice, Path]],
    root: Path,
    record: dict[str, Any],
) -> None:
    """A self-contained STAC catalog: one item per tile, the class table on each asset."""
    import pystac
    import shapely
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from rasterio.warp import transform_geom

    crs = labels.rio.crs
    t = labels.rio.transform()
    ids = [int(v) for v in labels.attrs.get("class_ids", [])]
    names = [str(v) for v in labels.attrs.get("class_names", [])]
    colors = [str(c).lstrip("#") for c in labels.attrs.get("class_colors", [])]
    classes = [
        Classification.create(value=v, description=n, name=n.replace(" ", "-"), color_hint=c)
        for v, n, c in zip(ids, names, colors, strict=False)
    ]
    if labels.rio.nodata is not None:
        classes.append(Classification.create(value=int(labels.rio.nodata), description="nodata",
                                             name="nodata", nodata=True))  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    catalog = pystac.Catalog(
        id=f"xlandcover-{record.get('job') or 'tiles'}",
        description=f"Land-cover map in {len(tiles)} COG tiles of {record['tile']} px "
        f"({labels.attrs.get('long_name', 'land cover')}); mosaic: {VRT}",
    )
    for i, j, rows, cols, path in tiles:
        x0, y0 = t * (cols.start, rows.start)
        x1, y1 = t * (cols.stop, rows.stop)
        box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        geom = transform_geom(crs, "EPSG:4326", shapely.geometry.mapping(box))
        item = pystac.Item(
            id=path.stem,
            geometry=geom,
            bbox=list(shapely.bounds(shapely.geometry.shape(geom))),
            datetime=now,
            properties={"xlandcover:job": record.get("job"), "xlandcover:tile": [i, j]},
        )
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.code = crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"
        proj.shape = [rows.stop - rows.start, cols.stop - cols.start]
        proj.transform = list(t * _offset(cols.start, rows.start))[:6]
        asset = pystac.Asset(
            href=str(path.absolute()), media_type=pystac.MediaType.COG, roles=["data"],
            title="land cover",
        )  # fmt: skip
        item.add_asset("landcover", asset)
        ClassificationExtension.ext(asset, add_if_missing=True).classes = classes
        catalog.add_item(item)
    catalog.normalize_hrefs(str(root))  # items in tile-*/tile-*.json beside the COGs
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)


def _offset(col: int, row: int) -> Any:
    from affine import Affine

    return Affine.translation(col, row)
