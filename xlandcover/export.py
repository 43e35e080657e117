"""Chips as files other tools read: image and label GeoTIFF pairs plus a GeoParquet index.

:func:`export_chips` (also :meth:`Chips.export <xlandcover.chips.Chips.export>` and
:meth:`Splits.export <xlandcover.splits.Splits.export>`) writes, for every chip,
``images/chip_NNNNNN.tif`` (the image's bands, dtype and nodata, band names as descriptions)
and ``labels/chip_NNNNNN.tif`` (uint8 class ids, 255 where unlabelled or without image data,
the classes' colour table and names), both with the chip's CRS and transform, and
``index.parquet``: one row per chip with its footprint (``geometry``), ``chip``, ``source``
(the image file), ``group``, ``split``, ``row``/``col`` in the source image, the two file paths
(relative to the folder), ``labelled`` and the class histogram ``n_<id>``.

The layout is what torchgeo's ``RasterDataset`` reads (``images/`` and ``labels/`` as an
image dataset and a mask dataset, ``filename_glob = "chip_*.tif"``, ``is_image = False`` for
the labels), and what GDAL, QGIS and rasterio open as they are; xlandcover does not depend on
torchgeo. Chips are read and written one at a time, so an export never holds more than a chip.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import NoChipsError, OutputExistsError
from .labels import ClassIndex
from .package import NODATA_LABEL, hex_to_rgb

if TYPE_CHECKING:
    from .chips import Chips

INDEX_NAME = "index.parquet"


def export_chips(
    parts: Sequence[tuple[str | None, Chips]],
    folder: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write chips of one or more partitions ``(split name or None, chips)`` to ``folder``.

    Returns the index path. An existing index raises
    :class:`~xlandcover.errors.OutputExistsError` unless ``overwrite``, which replaces the
    ``images/`` and ``labels/`` folders and the index.
    """
    out = Path(folder)
    index_path = out / INDEX_NAME
    if index_path.exists() and not overwrite:
        raise OutputExistsError(
            f"{out} already holds exported chips ({INDEX_NAME}); pass overwrite=True (CLI: "
            "--overwrite) to replace them, or choose another folder"
        )
    for sub in ("images", "labels"):
        if overwrite and (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for split, chips in parts:
        rows += _write_part(chips, out, split)
    if not rows:
        raise NoChipsError("there are no chips to export")
    _write_index(rows, parts, index_path)
    return index_path


def _write_part(chips: Chips, out: Path, split: str | None) -> list[dict[str, Any]]:
    import rasterio
    from rasterio.windows import Window

    index = ClassIndex(chips.class_ids, chips.unlabelled)
    ids = np.asarray(chips.class_ids, dtype=np.uint8)
    cmap = {v: (0, 0, 0, 0) for v in range(256)}
    for c in chips.classes:
        cmap[c.id] = (*hex_to_rgb(c.color), 255)
    class_tags = {f"CLASS_{c.id}": c.name for c in chips.classes}
    names = json.dumps({str(c.id): c.name for c in chips.classes})
    bands = chips.bands
    rows = []
    t = chips.table
    for i in range(len(chips)):
        rec = t.iloc[i]
        src = chips.sources[int(rec["source"])]
        image, labels, valid = chips.read(i)
        idx = index(labels)
        mask = np.full(labels.shape, NODATA_LABEL, dtype=np.uint8)
        ok = valid & (idx < index.n)
        mask[ok] = ids[idx[ok]]
        window = Window(int(rec["col"]), int(rec["row"]), chips.size, chips.size)
        transform = rasterio.windows.transform(window, src.image.rio.transform())
        crs = None if src.frame.startswith("pixels:") else src.image.rio.crs
        name = f"chip_{int(rec['chip']):06d}.tif"
        profile = dict(driver="GTiff", width=chips.size, height=chips.size, transform=transform,
                       crs=crs, compress="deflate")  # fmt: skip
        with rasterio.open(out / "images" / name, "w", count=image.shape[0], dtype=image.dtype,
                           nodata=src.image_nodata, **profile) as dst:  # fmt: skip
            dst.write(image)
            if bands:
                for b, band in enumerate(bands, start=1):
                    dst.set_band_description(b, band)
        with rasterio.open(out / "labels" / name, "w", count=1, dtype="uint8",
                           nodata=NODATA_LABEL, **profile) as dst:  # fmt: skip
            dst.write(mask, 1)
            dst.write_colormap(1, cmap)
            dst.update_tags(class_names=names)
            dst.update_tags(1, **class_tags)
        rows.append(
            {
                "chip": int(rec["chip"]),
                "source": str(src.image.encoding.get("source", f"image {int(rec['source'])}")),
                "group": str(rec["group"]),
                "split": split or "",
                "row": int(rec["row"]),
                "col": int(rec["col"]),
                "image": f"images/{name}",
                "labels": f"labels/{name}",
                "labelled": int(rec["labelled"]),
                **{f"n_{c}": int(rec[f"n_{c}"]) for c in chips.class_ids},
                "bounds": (rec["minx"], rec["miny"], rec["maxx"], rec["maxy"]),
                "frame": src.frame,
            }
        )
    return rows


def _write_index(
    rows: list[dict[str, Any]], parts: Sequence[tuple[str | None, Chips]], path: Path
) -> None:
    """One GeoParquet table in one CRS: the chips' own when they share one, else WGS84."""
    import shapely

    from .vector import _geopandas

    gpd = _geopandas()
    table = pd.DataFrame(rows)
    boxes = shapely.box(*np.array(table.pop("bounds").tolist(), dtype=np.float64).T)
    frames = table.pop("frame")
    crs_of = {s.frame: s.image.rio.crs for _, chips in parts for s in chips.sources}
    unique = sorted(set(frames))
    if len(unique) == 1 or any(f.startswith("pixels:") for f in unique):
        crs = None if unique[0].startswith("pixels:") else crs_of[unique[0]]
        index = gpd.GeoDataFrame(table, geometry=boxes, crs=crs)
    else:  # several CRSs: each chip's footprint in WGS84
        pieces = []
        for f in unique:
            sel = (frames == f).to_numpy()
            piece = gpd.GeoDataFrame(table[sel], geometry=boxes[sel], crs=crs_of[f])
            pieces.append(piece.to_crs("EPSG:4326"))
        index = pd.concat(pieces).sort_index()
    tmp = path.with_name(f".{path.name}.partial")
    index.to_parquet(tmp)
    os.replace(tmp, path)
