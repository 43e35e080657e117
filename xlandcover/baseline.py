"""A per-pixel random-forest baseline (scikit-learn) on the same split and metrics.

Each pixel is classified from its own band values only, the classic pre-deep-learning
baseline. It trains on a seeded sample of labelled pixels of the training chips and is scored
on the pixels the test chips cover (each counted once), like :func:`xlandcover.evaluate`;
``eval_stride`` scores every n-th row and column only, an unbiased subsample that keeps
scikit-learn's prediction time reasonable on large test sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chips import Chips
from .errors import EmptySplitError, MissingDependencyError
from .evaluate import SKIP, regions_of
from .labels import ClassIndex
from .metrics import Report, confusion_matrix
from .nodata import valid_mask
from .splits import Splits


@dataclass
class BaselineResult:
    report: Report
    model: Any  # the fitted sklearn.ensemble.RandomForestClassifier
    n_train_pixels: int
    n_scored_pixels: int


def random_forest_baseline(
    splits: Splits,
    *,
    partition: str = "test",
    n_estimators: int = 100,
    max_pixels: int = 200_000,
    eval_stride: int = 1,
    min_samples_leaf: int = 5,
    seed: int = 0,
    n_jobs: int | None = None,
) -> BaselineResult:
    """Fit a random forest on train-chip pixels and score it on ``partition``'s pixels."""
    return forest_baseline(
        splits.train,
        getattr(splits, partition),
        n_estimators=n_estimators,
        max_pixels=max_pixels,
        eval_stride=eval_stride,
        min_samples_leaf=min_samples_leaf,
        seed=seed,
        n_jobs=n_jobs,
    )


def forest_baseline(
    train_chips: Chips,
    scored: Chips,
    *,
    n_estimators: int = 100,
    max_pixels: int = 200_000,
    eval_stride: int | None = None,
    max_scored: int = 4_000_000,
    min_samples_leaf: int = 5,
    seed: int = 0,
    n_jobs: int | None = None,
) -> BaselineResult:
    """Fit a random forest on ``train_chips``' pixels and score it on ``scored``'s pixels.

    Training pixels are a seeded sample of the labelled pixels (each pixel at most once,
    however many chips cover it). ``eval_stride=None`` scores every pixel when the scored
    chips cover at most ``max_scored`` pixels, else every n-th row and column.
    """
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as err:  # pragma: no cover - scikit-learn is in the train extra
        raise MissingDependencyError(
            "the baseline needs scikit-learn: pip install 'xlandcover[train]'"
        ) from err
    if len(train_chips) == 0 or len(scored) == 0:
        raise EmptySplitError("the baseline needs training chips and chips to score")
    if eval_stride is None:
        eval_stride = max(1, math.ceil(math.sqrt(len(scored) * scored.size**2 / max_scored)))
    index = ClassIndex(train_chips.class_ids, train_chips.unlabelled)
    x, y = _sample_pixels(train_chips, index, max_pixels, np.random.default_rng(seed))
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        min_samples_leaf=min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )
    forest.fit(x, y)
    ids = np.asarray(train_chips.class_ids)
    k = len(ids)
    cm = np.zeros((k, k), dtype=np.int64)
    scored_px = 0
    for region in regions_of(scored, margin=0):
        src = region.source
        rows = slice(region.rows.start, region.rows.stop, eval_stride)
        cols = slice(region.cols.start, region.cols.stop, eval_stride)
        image = np.asarray(src.image.data[:, rows, cols])
        truth = np.asarray(src.labels.data[rows, cols]).astype(np.int64)
        covered = np.zeros(truth.shape, dtype=bool)
        assert region.rects is not None
        for r, c in region.rects:
            covered[
                -(-r // eval_stride) : -(-(r + region.size) // eval_stride),
                -(-c // eval_stride) : -(-(c + region.size) // eval_stride),
            ] = True
        keep = covered & valid_mask(image, src.image_nodata) & (index(truth) < k)
        if not keep.any():
            continue
        pred = ids[forest.predict(image[:, keep].T.astype(np.float32))]
        cm += confusion_matrix(pred, truth[keep], train_chips.class_ids, ignore_index=SKIP)
        scored_px += int(keep.sum())
    classes = train_chips.classes
    report = Report.from_confusion(
        cm,
        train_chips.class_ids,
        class_names=[c.name for c in classes],
        class_colors=[c.color for c in classes],
    )
    return BaselineResult(report, forest, len(y), scored_px)


def _sample_pixels(
    chips: Chips, index: ClassIndex, max_pixels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of labelled pixels of the chips, each pixel at most once (chips that
    overlap would otherwise contribute the same pixel several times)."""
    per_chip = max(1, -(-max_pixels // len(chips)))
    xs, ys, keys = [], [], []
    t = chips.table
    for i, (image, labels, valid) in chips.read_many(range(len(chips))):
        idx = index(labels)
        ok = np.flatnonzero((valid & (idx < index.n)).ravel())
        if len(ok) == 0:
            continue
        pick = rng.choice(ok, size=min(per_chip, len(ok)), replace=False)
        xs.append(image.reshape(image.shape[0], -1)[:, pick].T.astype(np.float32))
        ys.append(idx.ravel()[pick])
        rows, cols = np.divmod(pick, chips.size)
        src, r0, c0 = (int(t[k].iloc[i]) for k in ("source", "row", "col"))
        keys.append(np.stack([np.full(len(pick), src), r0 + rows, c0 + cols], axis=1))
    if not xs:
        raise EmptySplitError("the training chips hold no labelled pixel with image data")
    _, first = np.unique(np.concatenate(keys), axis=0, return_index=True)
    first.sort()
    return np.concatenate(xs)[first], np.concatenate(ys)[first]
