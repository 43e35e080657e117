"""Training chips: a regular grid of windows over (lazy) image and label rasters.

:func:`sample_chips` lays a grid of ``size`` x ``size`` windows, ``stride`` apart, over each
image (the last window of a row or column is moved back to end at the raster's edge, so the
whole raster is covered), counts the pixels of every class and of nodata in each window chunk
by chunk, and drops windows with too much nodata. The result, :class:`Chips`, is a small table;
the image pixels of a chip are read only when the chip is used (:meth:`Chips.read`).

Sparse labels (points, polygons): the same grid, keeping only the chips that hold at least
``min_labelled`` labelled pixels. As the grid covers the raster, with ``min_labelled=1`` every
labelled pixel lies in at least one chip, and every labelled patch no wider or taller than
``size - stride + 1`` pixels lies whole inside one; chips overlap by ``size - stride`` pixels,
as on dense labels. The grid depends only on the raster's shape, so chips are the same for any
chunking, and the pass over the labels is out of core. (One chip centred on each labelled
cluster was measured against the half-stride grid on 30 Zion polygons: 142 against 100
labelled pixels per chip, but 30 chips instead of 162, each polygon always in the middle;
both cover every labelled pixel and hold every polygon whole. Centred chips need the clusters
first, a pass over the whole raster; the grid is kept. See docs/training.md.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from .errors import ChipSizeError, LabelAlignmentError, NoChipsError, UnknownClassError
from .io import PIXEL_GRID_ATTR
from .labels import ClassIndex, as_label_raster
from .nodata import valid_mask
from .package import ClassInfo
from .windows import AxisGrid

#: Colours given to classes declared without one (tab10).
DEFAULT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

_BOUNDS = ["minx", "miny", "maxx", "maxy"]


@dataclass(frozen=True, eq=False)
class ChipSource:
    """One image with its labels, as sampled.

    ``frame`` names the coordinate space the chip bounds live in: the CRS for georeferenced
    rasters (chips of two rasters in one CRS can overlap), or a per-source pixel frame for
    rasters without one.
    """

    image: xr.DataArray
    labels: xr.DataArray
    image_nodata: float | None
    frame: str
    group: str
    resolution: tuple[float, float]


@dataclass(frozen=True, eq=False)
class Chips:
    """Chip windows over one or more image/label pairs: a table plus the lazy rasters.

    ``table`` has one row per chip: ``chip`` (a stable id), ``source`` (index into
    ``sources``), ``group``, ``row``/``col`` (top-left pixel), ``minx``/``miny``/``maxx``/
    ``maxy`` (bounds in the source's CRS units), ``cx``/``cy`` (centre), ``nodata_frac``
    (share of pixels without image data), ``labelled`` (pixels with image data and a label),
    ``lminx``/``lminy``/``lmaxx``/``lmaxy`` (bounds of the labelled pixels, which
    ``spatial_split`` measures its buffer from) and one pixel count per class, ``n_<id>``.
    With ``features=``, also ``feature`` (the feature covering most of the chip's labelled
    pixels) and ``features`` (every feature id in the chip).
    """

    sources: tuple[ChipSource, ...]
    table: pd.DataFrame
    size: int
    classes: tuple[ClassInfo, ...]
    unlabelled: tuple[int, ...] = field(default=())

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    @property
    def bands(self) -> tuple[str, ...] | None:
        band = self.sources[0].image.coords.get("band")
        if band is None or band.dtype.kind not in "UO":
            return None
        return tuple(str(b) for b in band.values)

    @property
    def n_bands(self) -> int:
        return int(self.sources[0].image.sizes["band"])

    @property
    def counts(self) -> np.ndarray:
        """``(n_chips, n_classes)`` labelled pixels per chip and class."""
        return self.table[[f"n_{c}" for c in self.class_ids]].to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"<Chips: {len(self)} chips of {self.size}x{self.size} px from "
            f"{len(self.sources)} source(s), classes {list(self.class_ids)}>"
        )

    def subset(self, rows: np.ndarray | Sequence[int] | pd.Series) -> Chips:
        """The chips at positional indices ``rows`` (or where a boolean mask is True)."""
        sel = np.asarray(rows)
        table = self.table[sel] if sel.dtype == bool else self.table.iloc[sel]
        return Chips(self.sources, table.reset_index(drop=True), self.size, self.classes,
                     self.unlabelled)  # fmt: skip

    def export(
        self,
        folder: str | os.PathLike[str],
        *,
        split: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write every chip as an image and a label GeoTIFF, plus a GeoParquet index
        (``folder/index.parquet``, returned) naming ``split`` for each; readable by GDAL,
        QGIS or torchgeo's ``RasterDataset`` (see :mod:`xlandcover.export`)."""
        from .export import export_chips

        return export_chips([(split, self)], folder, overwrite=overwrite)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels of chip ``i``: image ``(band, s, s)``, label ids ``(s, s)``, valid mask.

        ``valid`` is False where the image has no data; such pixels should be ignored.
        """
        row = self.table.iloc[i]
        src = self.sources[int(row["source"])]
        r, c, s = int(row["row"]), int(row["col"]), self.size
        image = _materialise(src.image.data[:, r : r + s, c : c + s])
        labels = _materialise(src.labels.data[r : r + s, c : c + s])
        return image, labels, valid_mask(image, src.image_nodata)

    def read_many(
        self, rows: Sequence[int] | np.ndarray, *, max_pixels: int = 64 * 2**20
    ) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """``(i, read(i))`` for the chips ``rows``, reading each source's region under them in
        bands of rows (at most ``max_pixels`` values each) instead of chip by chip: a
        compressed image (JPEG, deflate) is then decoded once, not once per chip."""
        t = self.table
        wanted = np.asarray(rows, dtype=np.int64)
        sources = t["source"].to_numpy()[wanted]
        for src_id in sorted(set(sources.tolist())):
            src = self.sources[int(src_id)]
            mine = wanted[sources == src_id]
            mine = mine[np.argsort(t["row"].to_numpy()[mine], kind="stable")]
            tops, lefts = t["row"].to_numpy()[mine], t["col"].to_numpy()[mine]
            c0, c1 = int(lefts.min()), int(lefts.max()) + self.size
            height = max(self.size, max_pixels // ((c1 - c0) * src.image.shape[0]))
            start = 0
            while start < len(mine):
                r0 = int(tops[start])
                stop = int(np.searchsorted(tops, r0 + height - self.size, side="right"))
                stop = max(stop, start + 1)
                r1 = int(tops[start:stop].max()) + self.size
                image = _materialise(src.image.data[:, r0:r1, c0:c1])
                labels = _materialise(src.labels.data[r0:r1, c0:c1])
                for i, r, c in zip(
                    mine[start:stop], tops[start:stop], lefts[start:stop], strict=True
                ):
                    win = (slice(r - r0, r - r0 + self.size), slice(c - c0, c - c0 + self.size))
                    img = np.ascontiguousarray(image[(slice(None), *win)])
                    yield int(i), (img, labels[win].copy(), valid_mask(img, src.image_nodata))
                start = stop


def sample_chips(
    image: xr.DataArray | Sequence[xr.DataArray],
    labels: xr.DataArray | Sequence[xr.DataArray],
    *,
    size: int | Literal["auto"],
    stride: int | None = None,
    max_nodata: float = 0.2,
    min_labelled: int = 1,
    classes: Sequence[int | ClassInfo | Mapping[str, Any]] | None = None,
    ignore_index: int | None = None,
    groups: Sequence[str] | None = None,
    features: xr.DataArray | Sequence[xr.DataArray] | None = None,
) -> Chips:
    """Chips on a regular grid over image and label rasters.

    Parameters
    ----------
    image, labels
        A ``(band, y, x)`` image and its ``(y, x)`` class-id raster on the same grid (same
        CRS, transform and shape), or sequences of such pairs (e.g. many aerial tiles).
    size, stride
        Chip size and distance between chip starts in pixels (``stride`` defaults to
        ``size``, or half of it with ``size="auto"``). The last chip of each row/column ends
        at the raster's edge. ``"auto"``: from the pixel size and the images' extent
        (:func:`xlandcover.recipe.auto_chip_size`); the chip size is also the predict
        window a trained model is validated and packaged with.
    max_nodata
        Largest share of a chip's pixels that may lack image data.
    min_labelled
        Fewest labelled pixels (with image data) a chip must hold. Sparse labels (points,
        polygons) keep every chip that holds at least this many, however much of it is
        unlabelled; unlabelled pixels are ignored by losses and scores.
    classes
        Declared classes (ids, :class:`~xlandcover.ClassInfo` or ``{"id", "name",
        "color"}`` dicts). Label values outside them (other than nodata/ignore) raise
        :class:`~xlandcover.errors.UnknownClassError`. Default: every value found.
    ignore_index
        A label value meaning "unlabelled", besides the label raster's nodata.
    groups
        One group name per source (e.g. the tile each image belongs to), for
        ``spatial_split(..., by="group")``.
    features
        One ``(y, x)`` feature-id raster per source (0: no feature), e.g. from
        :func:`~xlandcover.rasterize_features`, for ``spatial_split(..., by="feature")``:
        each chip records the features of its labelled pixels.

    Notes
    -----
    Labels and the image's nodata mask are read once, chunk by chunk, to count pixels; image
    values are read only when a chip is used.
    """
    images = [image] if isinstance(image, xr.DataArray) else list(image)
    label_list = [labels] if isinstance(labels, xr.DataArray) else list(labels)
    if len(images) != len(label_list):
        raise LabelAlignmentError(
            f"{len(images)} images but {len(label_list)} label rasters; pass one label raster "
            "per image"
        )
    if not images:
        raise NoChipsError("sample_chips() needs at least one image")
    group_names = [str(g) for g in groups] if groups is not None else None
    if group_names is not None and len(group_names) != len(images):
        raise ValueError(f"{len(group_names)} groups for {len(images)} images; give one each")
    if size == "auto":
        from .recipe import auto_chip_size, pixel_size_m

        shapes = [(int(lab.shape[-2]), int(lab.shape[-1])) for lab in label_list]
        size = auto_chip_size(shapes, pixel_size_m(images[0]))
        stride = size // 2 if stride is None else stride
    stride = size if stride is None else stride
    if not isinstance(size, int) or size < 1 or stride < 1:
        raise ChipSizeError(f"chip size {size} and stride {stride} must be positive")
    if not 0.0 <= max_nodata <= 1.0:
        raise ChipSizeError(f"max_nodata must be a share between 0 and 1, got {max_nodata}")
    if min_labelled < 1 or int(min_labelled) != min_labelled:
        raise ChipSizeError(
            f"min_labelled is a number of pixels >= 1, got {min_labelled}; it replaces the "
            "nodata share for labels (max_nodata counts image nodata only)"
        )

    feature_list = None
    if features is not None:
        feature_list = [features] if isinstance(features, xr.DataArray) else list(features)
        if len(feature_list) != len(images):
            raise LabelAlignmentError(
                f"{len(feature_list)} feature rasters for {len(images)} images; pass one each"
            )
        for i, (f, lab) in enumerate(zip(feature_list, label_list, strict=True)):
            if tuple(f.shape[-2:]) != tuple(lab.shape[-2:]):
                raise LabelAlignmentError(
                    f"feature raster {i} has shape {f.shape} but its labels {lab.shape}; "
                    "rasterise both onto the image (rasterize_features(..., like=image))"
                )
    sources = [
        _source(i, img, lab, group_names[i] if group_names else str(i))
        for i, (img, lab) in enumerate(zip(images, label_list, strict=True))
    ]
    _check_bands(sources)
    unlabelled = {int(s.labels.rio.nodata) for s in sources if s.labels.rio.nodata is not None}
    if ignore_index is not None:
        unlabelled.add(int(ignore_index))
    if classes is None:
        class_infos = _infer_classes(sources, unlabelled)
    else:
        class_infos = _as_class_infos(classes)
    index = ClassIndex([c.id for c in class_infos], unlabelled)

    frames = []
    parts = []
    feature_parts = []
    for i, src in enumerate(sources):
        rects = _grid(src, size, stride, i)
        frames.append(_frame(i, src, rects, size))
        parts.append(_histograms(src, rects, size, index))
        if feature_list is not None:
            feature_parts.append(_chip_features(src, feature_list[i], rects, size, index))
    hists, found = dask.compute(parts, feature_parts)

    table = pd.concat(frames, ignore_index=True)
    hist = np.concatenate([h for h, _ in hists])
    extent = np.concatenate([e for _, e in hists])
    k = index.n
    if hist[:, index.unknown].any():
        bad = _unknown_label_values(sources, index)
        raise UnknownClassError(
            f"the labels hold values {bad} that are not among the declared classes "
            f"{[c.id for c in class_infos]}; declare them in `classes`, or treat them as "
            "unlabelled with `ignore_index` / the label raster's nodata"
        )
    for j, cid in enumerate(index.class_ids):
        table[f"n_{cid}"] = hist[:, j]
    labelled = hist[:, :k].sum(axis=1)
    table["nodata_frac"] = hist[:, k + 2] / float(size * size)
    table["labelled"] = labelled
    _add_extents(table, sources, extent)
    if feature_list is not None:
        table["feature"] = np.concatenate([f for f, _ in found])
        table["features"] = [ids for _, per_source in found for ids in per_source]
    keep = (table["nodata_frac"] <= max_nodata) & (labelled >= min_labelled)
    if not keep.any():
        raise NoChipsError(
            f"all {len(table)} chips have more than {max_nodata:.0%} image nodata or fewer "
            f"than {min_labelled} labelled pixels (least nodata in a chip: "
            f"{table['nodata_frac'].min():.0%}, most labelled pixels: {labelled.max()}); "
            "raise max_nodata, lower min_labelled, use other chip sizes, or check the nodata "
            "values of image and labels"
        )
    table = table[keep].reset_index(drop=True)
    table.insert(0, "chip", np.arange(len(table)))
    return Chips(tuple(sources), table, size, class_infos, tuple(sorted(unlabelled)))


def _source(i: int, image: xr.DataArray, labels: xr.DataArray, group: str) -> ChipSource:
    labels = as_label_raster(labels)
    if image.ndim != 3:
        raise ValueError(f"image {i} must have dims (band, y, x), got {image.dims}")
    where = f"image {i}" if i else "the image"
    if image.shape[1:] != labels.shape:
        raise LabelAlignmentError(
            f"labels of {where} have shape {labels.shape} but the image is "
            f"{image.shape[1:]}; put them on the image's grid with "
            "`labels.rio.reproject_match(image, resampling=Resampling.nearest)`"
        )
    pixel_grid = bool(image.attrs.get(PIXEL_GRID_ATTR))
    if not pixel_grid:
        if labels.rio.crs is None or labels.rio.crs != image.rio.crs:
            raise LabelAlignmentError(
                f"labels of {where} are in CRS {labels.rio.crs}, the image in "
                f"{image.rio.crs}; reproject them with `labels.rio.reproject_match(image, "
                "resampling=Resampling.nearest)`"
            )
        ti, tl = image.rio.transform(), labels.rio.transform()
        if not ti.almost_equals(tl, precision=1e-6 * max(abs(ti.a), abs(ti.e))):
            raise LabelAlignmentError(
                f"labels of {where} are not on the image's pixel grid (transform {tuple(tl)[:6]}"
                f" vs {tuple(ti)[:6]}); resample them with `labels.rio.reproject_match(image, "
                "resampling=Resampling.nearest)`"
            )
    t = image.rio.transform()
    return ChipSource(
        image=image,
        labels=labels,
        image_nodata=None if image.rio.nodata is None else float(image.rio.nodata),
        frame=f"pixels:{i}" if pixel_grid else image.rio.crs.to_string(),
        group=group,
        resolution=(abs(t.a), abs(t.e)),
    )


def _check_bands(sources: list[ChipSource]) -> None:
    first = sources[0].image
    for i, s in enumerate(sources[1:], 1):
        same_count = s.image.sizes["band"] == first.sizes["band"]
        if not same_count or not np.array_equal(s.image.band.values, first.band.values):
            raise ValueError(
                f"image {i} has bands {list(s.image.band.values)}, image 0 has "
                f"{list(first.band.values)}; every image must have the same bands in order"
            )


def _grid(src: ChipSource, size: int, stride: int, i: int) -> np.ndarray:
    """``(n, 2)`` top-left pixels (row, col) of the chips of one source."""
    h, w = src.labels.shape
    if size > h or size > w:
        raise ChipSizeError(
            f"chip size {size} is larger than image {i} ({h} x {w} px); use chips of at most "
            f"{min(h, w)} px"
        )
    if stride > size:
        raise ChipSizeError(f"stride {stride} is larger than the chip size {size}; gaps would "
                            "leave pixels unsampled. Use a stride <= size.")  # fmt: skip
    rows = AxisGrid(h, size, stride).starts
    cols = AxisGrid(w, size, stride).starts
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def _frame(i: int, src: ChipSource, rects: np.ndarray, size: int) -> pd.DataFrame:
    t = src.image.rio.transform()
    rows, cols = rects[:, 0].astype(float), rects[:, 1].astype(float)
    xa, ya = t * (cols, rows)
    xb, yb = t * (cols + size, rows + size)
    return pd.DataFrame(
        {
            "source": i,
            "group": src.group,
            "row": rects[:, 0],
            "col": rects[:, 1],
            "minx": np.minimum(xa, xb),
            "miny": np.minimum(ya, yb),
            "maxx": np.maximum(xa, xb),
            "maxy": np.maximum(ya, yb),
            "cx": (xa + xb) / 2,
            "cy": (ya + yb) / 2,
        }
    )


def _codes(src: ChipSource, index: ClassIndex) -> da.Array:
    """Lazy ``(y, x)`` pixel codes: class indices ``0..K-1``, ``K`` unlabelled, ``K + 1``
    unknown label values, ``K + 2`` no image data."""
    labels = src.labels.data
    img = src.image.data
    chunks = img.chunks[1:] if isinstance(img, da.Array) else "auto"
    labels = da.asarray(labels).rechunk(chunks)
    need_image = src.image_nodata is not None or src.image.dtype.kind == "f"
    if not need_image:
        return labels.map_blocks(index, dtype=np.int64)
    image = da.asarray(img).rechunk({0: -1, 1: labels.chunks[0], 2: labels.chunks[1]})
    valid = image.map_blocks(valid_mask, src.image_nodata, drop_axis=0, dtype=bool)
    idx = labels.map_blocks(index, dtype=np.int64)
    return da.where(valid | (idx == index.unknown), idx, index.unknown + 1)


def distinct_counts(chips: Chips) -> np.ndarray:
    """``(K,)`` labelled pixels per class under the chips, each pixel counted once however
    many chips cover it (one pass over the labels, chunk by chunk)."""
    index = ClassIndex(chips.class_ids, chips.unlabelled)
    nbins = index.n + 3
    parts = []
    t = chips.table
    for s in sorted(set(t["source"].tolist())):
        rects = t.loc[t["source"] == s, ["row", "col"]].to_numpy()
        codes = _codes(chips.sources[s], index)
        row_edges = np.cumsum((0, *codes.chunks[0]))
        col_edges = np.cumsum((0, *codes.chunks[1]))
        blocks = codes.to_delayed()
        for bi in range(len(codes.chunks[0])):
            for bj in range(len(codes.chunks[1])):
                origin = (int(row_edges[bi]), int(col_edges[bj]))
                parts.append(
                    dask.delayed(_covered_counts)(blocks[bi, bj], origin, rects, chips.size, nbins)
                )
    if not parts:
        return np.zeros(index.n, dtype=np.int64)
    return np.sum(dask.compute(*parts), axis=0)[: index.n]


def _covered_counts(
    block: np.ndarray, origin: tuple[int, int], rects: np.ndarray, size: int, nbins: int
) -> np.ndarray:
    covered = np.zeros(block.shape, dtype=bool)
    for _, window in chips_in_block(rects, size, origin, block.shape):
        covered[window] = True
    return np.bincount(block[covered].ravel(), minlength=nbins)


def _histograms(src: ChipSource, rects: np.ndarray, size: int, index: ClassIndex) -> Any:
    """Delayed ``(n_chips, K + 3)`` pixel counts per chip (classes, unlabelled, unknown, no
    image data) and ``(n_chips, 4)`` pixel bounds of the labelled pixels (first row, first
    column, last row + 1, last column + 1; an empty box for none)."""
    codes = _codes(src, index)
    nbins = index.n + 3
    row_edges = np.cumsum((0, *codes.chunks[0]))
    col_edges = np.cumsum((0, *codes.chunks[1]))
    blocks = codes.to_delayed()
    parts = []
    for bi in range(len(codes.chunks[0])):
        for bj in range(len(codes.chunks[1])):
            origin = (int(row_edges[bi]), int(col_edges[bj]))
            parts.append(
                dask.delayed(_block_histograms)(blocks[bi, bj], origin, rects, size, nbins)
            )
    return dask.delayed(_sum_partials)(len(rects), nbins, parts)


def chips_in_block(
    rects: np.ndarray, size: int, origin: tuple[int, int], shape: tuple[int, ...]
) -> Iterator[tuple[int, tuple[slice, slice]]]:
    """Chips (top-left ``rects``, side ``size``) overlapping a block at ``origin`` of
    ``shape``: each chip's index and its part of the block, as block-relative slices."""
    r0, c0 = origin
    h, w = shape
    hit = np.flatnonzero(
        (rects[:, 0] < r0 + h)
        & (rects[:, 0] + size > r0)
        & (rects[:, 1] < c0 + w)
        & (rects[:, 1] + size > c0)
    )
    for k in hit:
        r, c = int(rects[k, 0]) - r0, int(rects[k, 1]) - c0
        yield int(k), (slice(max(r, 0), min(r + size, h)), slice(max(c, 0), min(c + size, w)))


def _block_histograms(
    block: np.ndarray, origin: tuple[int, int], rects: np.ndarray, size: int, nbins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of every chip overlapping one block, over the overlap, and the global pixel
    bounds of the labelled pixels there (codes below ``nbins - 3`` are classes)."""
    parts = list(chips_in_block(rects, size, origin, block.shape))
    out = np.zeros((len(parts), nbins), dtype=np.int64)
    box = np.tile(_EMPTY_BOX, (len(parts), 1))
    k = nbins - 3
    for n, (_, window) in enumerate(parts):
        values = block[window]
        out[n] = np.bincount(values.ravel(), minlength=nbins)
        if out[n, :k].any():
            rows = np.flatnonzero((values < k).any(axis=1))
            cols = np.flatnonzero((values < k).any(axis=0))
            r0, c0 = origin[0] + window[0].start, origin[1] + window[1].start
            box[n] = (r0 + rows[0], c0 + cols[0], r0 + rows[-1] + 1, c0 + cols[-1] + 1)
    return np.array([k for k, _ in parts], dtype=np.int64), out, box


#: Pixel bounds (row0, col0, row1, col1) of "no labelled pixel": min/max leave others alone.
_EMPTY_BOX = np.array([np.iinfo(np.int64).max] * 2 + [np.iinfo(np.int64).min] * 2)


def _sum_partials(
    n: int, nbins: int, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    total = np.zeros((n, nbins), dtype=np.int64)
    box = np.tile(_EMPTY_BOX, (n, 1))
    for hit, counts, part_box in parts:
        np.add.at(total, hit, counts)
        np.minimum.at(box[:, 0], hit, part_box[:, 0])
        np.minimum.at(box[:, 1], hit, part_box[:, 1])
        np.maximum.at(box[:, 2], hit, part_box[:, 2])
        np.maximum.at(box[:, 3], hit, part_box[:, 3])
    return total, box


def _add_extents(table: pd.DataFrame, sources: list[ChipSource], box: np.ndarray) -> None:
    """``lminx``/``lminy``/``lmaxx``/``lmaxy``: CRS bounds of each chip's labelled pixels
    (NaN for a chip without any)."""
    out = np.full((len(table), 4), np.nan)
    src_of = table["source"].to_numpy()
    has = box[:, 0] <= box[:, 2]
    for i, src in enumerate(sources):
        sel = (src_of == i) & has
        if not sel.any():
            continue
        t = src.image.rio.transform()
        xa, ya = t * (box[sel, 1].astype(float), box[sel, 0].astype(float))
        xb, yb = t * (box[sel, 3].astype(float), box[sel, 2].astype(float))
        out[sel] = np.stack(
            [np.minimum(xa, xb), np.minimum(ya, yb), np.maximum(xa, xb), np.maximum(ya, yb)],
            axis=1,
        )
    for n, name in enumerate(_LABELLED_BOUNDS):
        table[name] = out[:, n]


_LABELLED_BOUNDS = ["lminx", "lminy", "lmaxx", "lmaxy"]


def _chip_features(
    src: ChipSource, features: xr.DataArray, rects: np.ndarray, size: int, index: ClassIndex
) -> Any:
    """Delayed per chip: the feature id covering most of its labelled pixels (0: none) and
    the sorted ids of every feature among them, chunk by chunk."""

    codes = _codes(src, index)
    ids = da.asarray(as_label_raster(features).data).rechunk(codes.chunks)
    row_edges = np.cumsum((0, *codes.chunks[0]))
    col_edges = np.cumsum((0, *codes.chunks[1]))
    code_blocks, id_blocks = codes.to_delayed(), ids.to_delayed()
    parts = []
    for bi in range(len(codes.chunks[0])):
        for bj in range(len(codes.chunks[1])):
            origin = (int(row_edges[bi]), int(col_edges[bj]))
            parts.append(
                dask.delayed(_block_features)(
                    code_blocks[bi, bj], id_blocks[bi, bj], origin, rects, size, index.n
                )
            )
    return dask.delayed(_merge_features)(len(rects), parts)


def _block_features(
    codes: np.ndarray,
    ids: np.ndarray,
    origin: tuple[int, int],
    rects: np.ndarray,
    size: int,
    k: int,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    out = []
    for chip, window in chips_in_block(rects, size, origin, codes.shape):
        values = ids[window][(codes[window] < k) & (ids[window] != 0)]
        if len(values):
            found, counts = np.unique(values.astype(np.int64), return_counts=True)
            out.append((chip, found, counts))
    return out


def _merge_features(
    n: int, parts: list[list[tuple[int, np.ndarray, np.ndarray]]]
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    totals: list[dict[int, int]] = [{} for _ in range(n)]
    for part in parts:
        for chip, found, counts in part:
            acc = totals[chip]
            for f, c in zip(found.tolist(), counts.tolist(), strict=True):
                acc[f] = acc.get(f, 0) + c
    # most pixels first, then the smallest id: the same whatever the chunking
    dominant = np.array([min(t, key=lambda f: (-t[f], f)) if t else 0 for t in totals])
    return dominant.astype(np.int64), [tuple(sorted(t)) for t in totals]


def _unknown_label_values(sources: list[ChipSource], index: ClassIndex) -> list[int]:
    found: set[int] = set()
    for src in sources:
        lab = da.asarray(src.labels.data)
        flags = lab.map_blocks(lambda b: index(b) == index.unknown, dtype=bool)
        found |= {int(v) for v in da.unique(lab[flags]).compute()}
    return sorted(found)[:10]


def _infer_classes(sources: list[ChipSource], unlabelled: set[int]) -> tuple[ClassInfo, ...]:
    values = dask.compute(*[da.unique(da.asarray(s.labels.data)) for s in sources])
    ids = sorted(set(np.concatenate(values).astype(int).tolist()) - unlabelled)
    if not ids:
        raise NoChipsError("the labels hold no class value besides nodata/ignore")
    return _as_class_infos(ids)


def _as_class_infos(
    classes: Sequence[int | ClassInfo | Mapping[str, Any]],
) -> tuple[ClassInfo, ...]:
    out = []
    for n, c in enumerate(classes):
        if isinstance(c, ClassInfo):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(ClassInfo(**c))
        else:
            out.append(ClassInfo(int(c), f"class {int(c)}", DEFAULT_COLORS[n % 10]))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise UnknownClassError(f"class ids {ids} hold duplicates")
    if not out:
        raise UnknownClassError("no classes were declared")
    return tuple(out)


def _materialise(data: Any) -> np.ndarray:
    if isinstance(data, da.Array):
        return np.asarray(data.compute(scheduler="synchronous"))
    return np.asarray(data)
