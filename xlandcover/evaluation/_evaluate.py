"""Scoring a model package against reference labels, out of core.

:func:`evaluate` predicts with the seamless predictor (so the score is that of the maps users
get, not of isolated chips), masks the pixels to score, and sums a confusion matrix chunk by
chunk (:func:`xlandcover.evaluation.confusion_matrix`). With ``partition=`` it scores only the
pixels covered by that partition's chips, predicting each source's bounding box of them plus a
margin of context; each pixel counts once, however many chips cover it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._compat import renamed_arguments, warn_deprecated
from ..errors import InputTypeError, LabelAlignmentError, RasterInputError
from ..io._labels import ClassIndex, as_label_raster
from ..model._package import NODATA_LABEL, ModelPackage, load_model
from ..prediction._predict import TTA, predict
from ..training._chips import Chips, ChipSource, _source, chips_in_block
from ._calibration import Calibration, ReliabilityCounts
from ._metrics import Report, confusion_matrix

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Region:
    """A window of one source to score: pixel box and the chip rectangles inside it."""

    source: ChipSource
    rows: slice
    cols: slice
    rects: np.ndarray | None  # (n, 2) chip top-lefts relative to the window; None = all
    size: int
    ignore_values: tuple[int, ...]


Model = ModelPackage | str | os.PathLike[str]


def _model_last(func: F) -> F:
    """Accept 0.1's order ``f(model, image, labels)`` for one release (the model was first;
    the rasters now come first, as in ``predict(image, model)``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if args and args[0] is not None and not isinstance(args[0], xr.DataArray):
            if "model" in kwargs or len(args) > 3:
                raise InputTypeError(
                    f"{func.__name__}() takes the rasters first: {func.__name__}(image, labels, "
                    f"model) or {func.__name__}(model=..., partition=...)"
                )
            warn_deprecated(
                f"{func.__name__}(model, image, labels) is now {func.__name__}(image, labels, "
                f"model), and {func.__name__}(model, split=...) {func.__name__}(model=..., "
                "partition=...)"
            )
            model, *rasters = args
            args, kwargs = tuple(rasters), {**kwargs, "model": model}
        return func(*args, **kwargs)

    return cast(F, wrapper)


@_model_last
@renamed_arguments(split="partition")
def evaluate(
    image: xr.DataArray | None = None,
    labels: xr.DataArray | None = None,
    model: Model | None = None,
    *,
    partition: Chips | None = None,
    window: int | None = None,
    overlap: int | float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    ignore_index: int | None = None,
    tta: bool | TTA = False,
) -> Report:
    """Per-class IoU, precision, recall, F1, mIoU, accuracy and kappa of ``model``.

    Parameters
    ----------
    image, labels
        A scene and its class-id raster on the same grid. Without ``partition``, every
        labelled pixel is scored.
    model
        A model package or its path.
    partition
        A partition from :func:`~xlandcover.spatial_split` (e.g. ``splits.test``): only the
        pixels its chips cover are scored. Its own images are used when ``image`` is None.

    Examples
    --------
    >>> report = evaluate(model="best.xlc", partition=splits.test)  # doctest: +SKIP
    >>> report = evaluate(img, labels, "best.xlc")  # doctest: +SKIP
    ignore_index
        A label value to skip, besides the label raster's nodata.
    tta
        Test-time augmentation passed to :func:`~xlandcover.predict` (``"flips"``, ``"d4"``).
    """
    package = _package(model, "evaluate")
    meta = package.metadata
    regions = list(_regions(image, labels, partition, ignore_index))
    total = None
    for region in regions:
        img = region.source.image[:, region.rows, region.cols]
        lab = region.source.labels[region.rows, region.cols]
        pred = predict(
            img,
            package,
            window=window,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            tta=tta,
        ).data
        truth = _masked_truth(lab.data, pred.chunks, region)
        cm = confusion_matrix(
            truth=truth, pred=pred, class_ids=meta.class_ids, ignore_index=NODATA_LABEL
        )
        total = cm if total is None else total + cm
    assert total is not None
    return _report(total, package)


def score_map(mapped: xr.DataArray, reference: xr.DataArray, model: Model) -> Report:
    """Scores of an already predicted label map (e.g. a written COG) against reference labels.

    Both are single-band class-id rasters on one grid; the reference's nodata and the map's
    255 are skipped. No prediction runs.
    """
    package = model if isinstance(model, ModelPackage) else load_model(model)
    meta = package.metadata
    truth = as_label_raster(reference)
    pred = as_label_raster(mapped)
    ignore_values = () if truth.rio.nodata is None else (int(truth.rio.nodata),)
    h, w = truth.shape
    region = Region(_source(0, pred.expand_dims("band"), truth, "0"), slice(0, h), slice(0, w),
                    None, 0, ignore_values)  # fmt: skip
    pred_data = da.asarray(pred.data)
    masked = _masked_truth(truth.data, pred_data.chunks, region)
    cm = confusion_matrix(
        truth=masked, pred=pred_data, class_ids=meta.class_ids, ignore_index=NODATA_LABEL
    )
    return _report(cm, package)


def _package(model: Model | None, what: str) -> ModelPackage:
    if model is None:
        raise InputTypeError(f"{what}() needs the model: {what}(image, labels, model) or "
                             f"{what}(model=..., partition=...)")  # fmt: skip
    return model if isinstance(model, ModelPackage) else load_model(model)


def _report(cm: object, package: ModelPackage) -> Report:
    (matrix,) = dask.compute(cm)
    meta = package.metadata
    return Report.from_confusion(
        np.asarray(matrix),
        meta.class_ids,
        class_names=meta.class_names,
        class_colors=[c.color for c in meta.classes],
    )


def regions_of(chips: Chips, margin: int) -> Iterator[Region]:
    """Per source, one region per cluster of chips: the bounding box of chips whose
    ``margin``-grown boxes touch, grown by ``margin`` px (clipped). Scattered blocks (a spatial
    split) are predicted as several small regions instead of one box spanning the scene."""
    t = chips.table
    for s in sorted(set(t["source"].tolist())):
        src = chips.sources[s]
        tops = t.loc[t["source"] == s, ["row", "col"]].to_numpy()
        h, w = src.labels.shape
        for members in _clusters(tops, chips.size, margin):
            rows_, cols_ = tops[members, 0], tops[members, 1]
            r0, c0 = max(int(rows_.min()) - margin, 0), max(int(cols_.min()) - margin, 0)
            r1 = min(int(rows_.max()) + chips.size + margin, h)
            c1 = min(int(cols_.max()) + chips.size + margin, w)
            rects = np.stack([rows_ - r0, cols_ - c0], axis=1)
            yield Region(src, slice(r0, r1), slice(c0, c1), rects, chips.size, chips.ignore_values)


def _clusters(tops: np.ndarray, size: int, margin: int) -> list[np.ndarray]:
    """Indices of chips (top-left ``tops``) grouped by connected ``margin``-grown boxes, on
    the grid of the boxes' own edges (cheap for any raster size)."""
    from scipy import ndimage

    lo, hi = tops - margin, tops + size + margin
    edges = [np.unique(np.concatenate([lo[:, k], hi[:, k]])) for k in (0, 1)]
    a = [np.searchsorted(edges[k], lo[:, k]) for k in (0, 1)]
    b = [np.searchsorted(edges[k], hi[:, k]) for k in (0, 1)]
    covered = np.zeros((len(edges[0]) - 1, len(edges[1]) - 1), dtype=bool)
    for r0, r1, c0, c1 in zip(a[0], b[0], a[1], b[1], strict=True):
        covered[r0:r1, c0:c1] = True
    labels, _ = ndimage.label(covered)  # 4-connected: boxes that share an edge or overlap
    cluster = labels[a[0], a[1]]
    return [np.flatnonzero(cluster == c) for c in np.unique(cluster)]


def _regions(
    image: xr.DataArray | None,
    labels: xr.DataArray | None,
    partition: Chips | None,
    ignore_index: int | None,
) -> Iterator[Region]:
    extra = () if ignore_index is None else (int(ignore_index),)
    if partition is not None and image is None:
        for r in regions_of(partition, margin=partition.size):
            yield Region(r.source, r.rows, r.cols, r.rects, r.size, r.ignore_values + extra)
        return
    if image is None or labels is None:
        raise RasterInputError("evaluate() needs image and labels, or partition=")
    src = _source(0, image, labels, "0")
    ignore_values = extra + (() if src.labels.rio.nodata is None else (int(src.labels.rio.nodata),))
    if partition is None:
        h, w = src.labels.shape
        yield Region(src, slice(0, h), slice(0, w), None, 0, ignore_values)
        return
    if len(partition.sources) != 1 or partition.sources[0].image.shape != image.shape:
        raise LabelAlignmentError(
            "partition= refers to other images than `image`; pass partition= alone to score "
            "the partition on its own images"
        )
    for r in regions_of(partition, margin=partition.size):
        yield Region(src, r.rows, r.cols, r.rects, r.size, ignore_values + r.ignore_values)


def _masked_truth(labels: object, chunks: tuple[tuple[int, ...], ...], region: Region) -> da.Array:
    """Labels with ``NODATA_LABEL`` outside the chips and where unlabelled."""
    truth = da.asarray(labels).rechunk(chunks)
    ignore_values = np.asarray(region.ignore_values, dtype=np.int64)
    # block_id, not block_info: map_blocks builds block_info for every chunk on the client
    rows, cols = (np.cumsum((0, *c))[:-1] for c in truth.chunks)

    def mask(block: np.ndarray, block_id: tuple[int, int] | None = None) -> np.ndarray:
        out = block.astype(np.int64)
        skip = np.isin(out, ignore_values)
        if region.rects is not None:
            assert block_id is not None
            r0, c0 = int(rows[block_id[0]]), int(cols[block_id[1]])
            covered = np.zeros(block.shape, dtype=bool)
            for _, window in chips_in_block(region.rects, region.size, (r0, c0), block.shape):
                covered[window] = True
            skip |= ~covered
        out[skip] = NODATA_LABEL
        return out

    return truth.map_blocks(mask, dtype=np.int64)


@_model_last
@renamed_arguments(split="partition")
def evaluate_calibration(
    image: xr.DataArray | None = None,
    labels: xr.DataArray | None = None,
    model: Model | None = None,
    *,
    partition: Chips | None = None,
    bins: int = 15,
    window: int | None = None,
    overlap: int | float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    ignore_index: int | None = None,
) -> Calibration:
    """Expected calibration error and reliability of ``model``'s probabilities on reference
    labels, at ``T = 1`` and at the package's temperature, out of core.

    The pixels scored are those of :func:`evaluate` (the same arguments); probabilities come
    from the seamless predictor, so the ECE is that of the maps and uncertainty layers users
    get. With an uncalibrated package (``T = 1``) "before" and "after" coincide.
    """
    package = _package(model, "evaluate_calibration")
    index = ClassIndex(package.metadata.class_ids)
    temperatures = {"before": 1.0, "after": package.metadata.temperature}
    parts: dict[str, list[object]] = {"before": [], "after": []}
    for region in _regions(image, labels, partition, ignore_index):
        img = region.source.image[:, region.rows, region.cols]
        lab = region.source.labels[region.rows, region.cols]
        for when, t in temperatures.items():
            if when == "after" and t == 1.0:
                continue
            probs = predict(img, package, window=window, overlap=overlap, batch_size=batch_size,
                            device=device, output="probabilities", temperature=t).data  # fmt: skip
            truth = _masked_truth(lab.data, probs.chunks[1:], region)
            parts[when] += [
                dask.delayed(_reliability_block)(p, tb, index=index, bins=bins)
                for p, tb in zip(
                    probs.to_delayed().ravel(), truth.to_delayed().ravel(), strict=True
                )
            ]
    (before, after) = dask.compute(parts["before"], parts["after"])
    total_before = sum(before, ReliabilityCounts(bins))
    total_after = sum(after, ReliabilityCounts(bins)) if after else total_before
    return Calibration(temperatures["after"], total_before, total_after)


def _reliability_block(
    probs: np.ndarray, truth: np.ndarray, *, index: ClassIndex, bins: int
) -> ReliabilityCounts:
    """Reliability counts of one chunk: truth class ids to channel indices, the rest
    (``NODATA_LABEL``, undeclared values) ignored."""
    idx = index(truth)
    t = np.where(idx < index.n, idx, -1)
    return ReliabilityCounts.of(probs[None], t[None], bins=bins, ignore_index=-1)
