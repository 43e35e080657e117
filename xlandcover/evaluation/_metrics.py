"""Out-of-core evaluation metrics for semantic segmentation.

:func:`confusion_matrix` counts (truth, prediction) pairs of class ids, one block at a time: on
Dask input it returns a lazy ``(K, K)`` array whose graph holds one small count matrix per
chunk and sums them in a tree, so memory stays of the order of one chunk whatever the scene
size. :class:`Report` turns the matrix into scores, a table, JSON and plots.

Conventions
-----------
* **Rows are truth, columns are prediction** (as in :func:`sklearn.metrics.confusion_matrix`):
  ``confusion[i, j]`` is the number of pixels of true class ``class_ids[i]`` predicted as
  ``class_ids[j]``. Row and column order is the order of ``class_ids`` as given.
* Class ids are arbitrary integers (``1, 2, 5, 7``), not indices. A pixel whose truth *or*
  prediction equals ``ignore_index`` (for example the nodata label 255) is not counted. Any
  other value that is not a declared class is an error (:class:`~xlandcover.errors.
  UnknownClassError`), never silently dropped.
* **mIoU is the macro average**: the mean of the per-class IoUs over the classes for which
  IoU is defined, every class weighing the same whatever its pixel count.
* **Undefined scores are NaN**, never 0 or 1: IoU and F1 of a class absent from both truth and
  prediction, precision of a class never predicted, recall of a class absent from the truth.
  NaN classes are left out of the mIoU. In JSON output they become ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from .._compat import keyword_only
from ..errors import RasterInputError, ReportError, UnknownClassError
from ..io._labels import ClassIndex, check_label_dtype

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Report", "confusion_matrix"]

# numpy input is counted in slices of this many pixels, so the int64 temporaries stay small
_NUMPY_SLICE = 1 << 22
_MAX_LISTED = 10


def _unwrap(x: Any) -> Any:
    return x.data if isinstance(x, xr.DataArray) else x


def _check_class_ids(class_ids: Sequence[int], ignore_index: int | None) -> np.ndarray:
    ids = np.asarray(list(class_ids))
    if ids.ndim != 1 or ids.size == 0:
        raise UnknownClassError(
            f"class_ids must be a non-empty sequence of integers, got {class_ids!r}"
        )
    if ids.dtype.kind not in "iu":
        raise UnknownClassError(f"class ids must be integers, got {ids.tolist()!r}")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise UnknownClassError(f"class ids must be unique, got {ids.tolist()}")
    if ignore_index is not None and int(ignore_index) in ids.tolist():
        raise UnknownClassError(
            f"ignore_index {ignore_index} is also a declared class; use a value that is not "
            "one of class_ids (for example the nodata label 255)"
        )
    return ids


def _to_index(values: np.ndarray, index: ClassIndex, what: str) -> np.ndarray:
    """Positions of ``values`` (1-D) among the declared classes; raises on other values."""
    idx = index(values)
    bad = idx >= index.n
    if bad.any():
        unknown = np.unique(values[bad])
        listed = ", ".join(str(v) for v in unknown[:_MAX_LISTED].tolist())
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        raise UnknownClassError(
            f"{what} contains values that are not declared classes: {listed}{more} "
            f"(declared: {list(index.class_ids)}). Declare them in class_ids, or map them to "
            "the ignore index (e.g. labels.where(labels.isin(class_ids), 255)) and pass "
            "ignore_index=255."
        )
    return idx


def _count(
    pred: np.ndarray, truth: np.ndarray, index: ClassIndex, ignore: int | None
) -> np.ndarray:
    """``(K, K)`` int64 counts of one pair of equally shaped numpy blocks."""
    k = index.n
    p, t = pred.ravel(), truth.ravel()
    if ignore is not None:
        keep = (p != ignore) & (t != ignore)
        if not keep.all():
            p, t = p[keep], t[keep]
    pi = _to_index(p, index, "the prediction")
    ti = _to_index(t, index, "the truth")
    counts = np.bincount(ti * k + pi, minlength=k * k)
    return counts.astype(np.int64, copy=False).reshape(k, k)


def _block_counts(
    pred: np.ndarray, truth: np.ndarray, *, index: ClassIndex, ignore: int | None
) -> np.ndarray:
    # one (1, ..., 1, K, K) block per chunk, so that the blocks sum over the leading axes
    return _count(pred, truth, index, ignore).reshape((1,) * pred.ndim + (index.n, index.n))


@keyword_only(
    "pred", "truth", "class_ids", hint="confusion_matrix(truth=..., pred=..., class_ids=...)"
)
def confusion_matrix(
    *, truth: Any, pred: Any, class_ids: Sequence[int], ignore_index: int | None = None
) -> Any:
    """Pixel counts of (truth, prediction) class pairs: rows truth, columns prediction.

    Every argument is keyword-only, so the two label arrays cannot be swapped silently (the
    order of scikit-learn's ``confusion_matrix(y_true, y_pred)``; xlandcover 0.1 took
    ``(pred, truth)`` positionally, which still works, with a deprecation warning).

    Parameters
    ----------
    truth, pred
        Integer label arrays of the same shape: numpy, Dask or xarray (two DataArrays with the
        same dimensions in another order are transposed to match).
    class_ids
        The ``K`` declared class ids, in the order of the matrix's rows and columns.
    ignore_index
        A label value, not among ``class_ids``, for pixels to leave out; a pixel is left out
        when its truth or its prediction has this value.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(K, K)`` int64 counts; for numpy input a numpy array, otherwise (if either input is
        Dask-backed) a lazy Dask array computed chunk by chunk in O(chunk) memory.

    Raises
    ------
    UnknownClassError
        A value of either array is neither a declared class nor ``ignore_index`` (for Dask
        input, when the result is computed).
    RasterInputError
        The arrays differ in shape or are not integer.
    """
    ids = _check_class_ids(class_ids, ignore_index)
    ignore = None if ignore_index is None else int(ignore_index)
    if (
        isinstance(pred, xr.DataArray)
        and isinstance(truth, xr.DataArray)
        and pred.dims != truth.dims
        and set(pred.dims) == set(truth.dims)
    ):
        truth = truth.transpose(*pred.dims)
    p, t = _unwrap(pred), _unwrap(truth)
    if not isinstance(p, da.Array):
        p = np.asarray(p)
    if not isinstance(t, da.Array):
        t = np.asarray(t)
    if p.shape != t.shape:
        raise RasterInputError(
            f"prediction and truth differ in shape: {p.shape} vs {t.shape}; they must cover "
            "the same pixels (reproject or crop the labels onto the prediction's grid)"
        )
    check_label_dtype(p.dtype, "the prediction")
    check_label_dtype(t.dtype, "the truth")
    index = ClassIndex(ids.tolist())
    k = index.n

    if not isinstance(p, da.Array) and not isinstance(t, da.Array):
        p, t = p.ravel(), t.ravel()
        total = np.zeros((k, k), dtype=np.int64)
        for start in range(0, p.size, _NUMPY_SLICE):
            stop = start + _NUMPY_SLICE
            total += _count(p[start:stop], t[start:stop], index, ignore)
        return total

    p, t = da.asarray(p), da.asarray(t)
    if p.ndim == 0:
        p, t = p.reshape(1), t.reshape(1)
    ind = tuple(f"d{i}" for i in range(p.ndim))
    # blockwise unifies the two arrays' chunks (align_arrays=True) before pairing blocks
    per_block = da.blockwise(
        _block_counts,
        (*ind, "truth", "pred"),
        p,
        ind,
        t,
        ind,
        new_axes={"truth": k, "pred": k},
        adjust_chunks={i: 1 for i in ind},
        meta=np.empty((0,) * (p.ndim + 2), dtype=np.int64),
        index=index,
        ignore=ignore,
    )
    return per_block.sum(axis=tuple(range(p.ndim)), dtype=np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, NaN where ``den == 0`` (and no warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


@dataclass(frozen=True, eq=False)
class Report:
    """Segmentation scores derived from a confusion matrix (rows truth, columns prediction).

    Build one with :meth:`from_confusion`. Per-class scores are arrays in the order of
    ``class_ids``; scores that are undefined for a class are NaN (see the module docstring).
    Instances compare by identity.

    Attributes
    ----------
    confusion
        ``(K, K)`` int64 counts, read-only.
    class_ids
        The ``K`` class ids, in row/column order.
    class_names
        ``K`` distinct names (default: the ids as strings).
    class_colors
        ``K`` ``#rrggbb`` colours, or None.
    """

    confusion: np.ndarray
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    class_colors: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        ids = tuple(int(i) for i in self.class_ids)
        _check_class_ids(ids, None)
        k = len(ids)
        cm = np.array(self.confusion, copy=True)
        if cm.shape != (k, k):
            raise ReportError(f"confusion must be {k}x{k} for {k} class ids, got shape {cm.shape}")
        if cm.dtype.kind not in "iu" or (cm < 0).any():
            raise ReportError("confusion must hold non-negative integer counts")
        cm = cm.astype(np.int64)
        cm.flags.writeable = False
        names = tuple(str(n) for n in self.class_names) or tuple(str(i) for i in ids)
        if len(names) != k or len(set(names)) != k:
            raise ReportError(f"need {k} distinct class names, got {list(names)}")
        colors = None if self.class_colors is None else tuple(self.class_colors)
        if colors is not None and len(colors) != k:
            raise ReportError(f"need {k} class colours, got {len(colors)}")
        object.__setattr__(self, "confusion", cm)
        object.__setattr__(self, "class_ids", ids)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "class_colors", colors)

    @classmethod
    def from_confusion(
        cls,
        cm: Any,
        class_ids: Sequence[int],
        class_names: Sequence[str] | None = None,
        class_colors: Sequence[str] | None = None,
    ) -> Report:
        """A report of confusion matrix ``cm`` (numpy, or Dask: computed here)."""
        if isinstance(cm, da.Array):
            cm = cm.compute()
        return cls(
            confusion=np.asarray(cm),
            class_ids=tuple(int(i) for i in class_ids),
            class_names=() if class_names is None else tuple(class_names),
            class_colors=None if class_colors is None else tuple(class_colors),
        )

    # --- counts -------------------------------------------------------------------------

    @property
    def tp(self) -> np.ndarray:
        """Correctly classified pixels per class (the diagonal)."""
        return np.diag(self.confusion).copy()

    @property
    def support(self) -> np.ndarray:
        """Truth pixels per class (row sums)."""
        return self.confusion.sum(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """Predicted pixels per class (column sums)."""
        return self.confusion.sum(axis=0)

    @property
    def total(self) -> int:
        """Pixels counted (ignored pixels excluded)."""
        return int(self.confusion.sum())

    # --- per-class scores ---------------------------------------------------------------

    @property
    def iou(self) -> np.ndarray:
        """Intersection over union ``tp / (tp + fp + fn)``; NaN for classes absent from both."""
        return _ratio(self.tp, self.support + self.predicted - self.tp)

    @property
    def precision(self) -> np.ndarray:
        """``tp / predicted``; NaN for classes never predicted."""
        return _ratio(self.tp, self.predicted)

    @property
    def recall(self) -> np.ndarray:
        """``tp / support``; NaN for classes absent from the truth."""
        return _ratio(self.tp, self.support)

    @property
    def f1(self) -> np.ndarray:
        """``2 tp / (2 tp + fp + fn)``; NaN for classes absent from both."""
        return _ratio(2 * self.tp, self.support + self.predicted)

    # --- overall scores -----------------------------------------------------------------

    @property
    def miou(self) -> float:
        """Macro mean IoU over the classes whose IoU is defined; NaN if there are none."""
        iou = self.iou
        defined = iou[~np.isnan(iou)]
        return float(defined.mean()) if defined.size else math.nan

    @property
    def pixel_accuracy(self) -> float:
        """Fraction of counted pixels classified correctly; NaN if none were counted."""
        total = self.total
        return float(np.trace(self.confusion)) / total if total else math.nan

    @property
    def kappa(self) -> float:
        """Cohen's kappa (as :func:`sklearn.metrics.cohen_kappa_score`); NaN if undefined."""
        total = self.total
        if total == 0:
            return math.nan
        observed = float(np.trace(self.confusion)) / total
        expected = float(np.sum((self.support / float(total)) * (self.predicted / float(total))))
        if expected >= 1.0:  # one class only, in both truth and prediction
            return math.nan
        return (observed - expected) / (1.0 - expected)

    # --- output ---------------------------------------------------------------------------

    def table(self) -> pd.DataFrame:
        """Per-class scores: index class name; columns id, iou, precision, recall, f1, support."""
        return pd.DataFrame(
            {
                "id": np.asarray(self.class_ids, dtype=np.int64),
                "iou": self.iou,
                "precision": self.precision,
                "recall": self.recall,
                "f1": self.f1,
                "support": self.support.astype(np.int64),
            },
            index=pd.Index(list(self.class_names), name="class"),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable overall scores and per-class IoU (None where undefined)."""
        return {
            "miou": _json_float(self.miou),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "kappa": _json_float(self.kappa),
            "total": self.total,
            "iou": {
                name: _json_float(float(v))
                for name, v in zip(self.class_names, self.iou, strict=True)
            },
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`summary`, the class ids/names/colours and the confusion matrix."""
        path = Path(path)
        doc = {
            **self.summary(),
            "class_ids": list(self.class_ids),
            "class_names": list(self.class_names),
            "class_colors": None if self.class_colors is None else list(self.class_colors),
            "confusion": self.confusion.tolist(),
            "confusion_axes": ["truth", "prediction"],
        }
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return path

    def format(self, digits: int = 3) -> str:
        """A text table of the per-class scores followed by mIoU, pixel accuracy and kappa."""

        def fmt(v: float) -> str:
            return f"{v:.{digits}f}"

        lines = [
            self.table().to_string(float_format=fmt),
            "",
            f"mIoU (macro)    {fmt(self.miou)}",
            f"pixel accuracy  {fmt(self.pixel_accuracy)}",
            f"kappa           {fmt(self.kappa)}",
            f"pixels          {self.total}",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return (
            f"<Report: {len(self.class_ids)} classes, mIoU {self.miou:.3f}, pixel accuracy "
            f"{self.pixel_accuracy:.3f}, kappa {self.kappa:.3f}, {self.total:,} px>"
        )

    # --- plots ------------------------------------------------------------------------------

    def plot_confusion(self, ax: Axes | None = None, normalize: bool = True) -> Axes:
        """Heat map of the confusion matrix, annotated, with a colour bar.

        With ``normalize`` each row is divided by its truth pixel count (recall on the
        diagonal); rows of classes absent from the truth are left blank.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            k = len(self.class_ids)
            _, ax = plt.subplots(figsize=(2.0 + 0.6 * k, 1.5 + 0.6 * k), layout="constrained")
        cm = self.confusion
        values = _ratio(cm, cm.sum(axis=1, keepdims=True)) if normalize else cm.astype(float)
        vmax = 1.0 if normalize else max(float(cm.max()), 1.0)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0.0, vmax=vmax)
        ax.figure.colorbar(image, ax=ax, label="fraction of truth row" if normalize else "pixels")
        k = len(self.class_ids)
        ax.set_xticks(range(k), labels=list(self.class_names), rotation=45, ha="right")
        ax.set_yticks(range(k), labels=list(self.class_names))
        ax.set_xlabel("prediction")
        ax.set_ylabel("truth")
        ax.set_title("confusion (row-normalised)" if normalize else "confusion (pixels)")
        fmt: Callable[[float], str] = (lambda v: f"{v:.2f}") if normalize else (lambda v: f"{v:g}")
        for i in range(k):
            for j in range(k):
                v = float(values[i, j])
                if math.isnan(v):
                    continue
                ax.text(
                    j,
                    i,
                    fmt(v),
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if v > 0.6 * vmax else "black",
                )
        return ax

    def plot_per_class(self, ax: Axes | None = None) -> Axes:
        """Grouped bars of IoU, precision, recall and F1 per class (undefined: no bar)."""
        import matplotlib.pyplot as plt

        k = len(self.class_ids)
        if ax is None:
            _, ax = plt.subplots(figsize=(2.0 + 1.0 * k, 3.5), layout="constrained")
        scores = {
            "IoU": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "F1": self.f1,
        }
        width = 0.8 / len(scores)
        x = np.arange(k)
        for n, (label, values) in enumerate(scores.items()):
            ax.bar(x + (n - (len(scores) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(x, labels=list(self.class_names))
        if self.class_colors is not None:
            for tick, color in zip(ax.get_xticklabels(), self.class_colors, strict=True):
                tick.set_bbox({"facecolor": color, "alpha": 0.35, "edgecolor": "none"})
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("score")
        ax.set_title(f"per-class scores (mIoU {self.miou:.3f})")
        ax.legend(loc="lower right", fontsize="small")
        return ax
