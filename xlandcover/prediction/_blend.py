"""Blending overlapping window predictions over a chunk, holding only the rows still open.

Windows arrive in the scene's global order (ascending start row, then column). A row of the
chunk is final once every window covering it has been added, i.e. as soon as the next window
to come starts below it; :meth:`RollingBlend.emit` then turns those rows into labels or
probabilities and drops them. The accumulators are about one window tall instead of one chunk,
so chunks can be large (fewer windows recomputed in halos) without large buffers.

Per pixel, contributions are summed in the order the windows arrive, which is the same for any
chunking: that is what makes the result independent of it.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidWindowError
from ..model._package import NODATA_LABEL


class RollingBlend:
    """Weighted sums of class probabilities over rows ``[y0, y1)`` x columns ``[x0, x1)``.

    Parameters
    ----------
    n_classes
        Number of class channels of each window's probabilities.
    y0, y1, x0, x1
        The chunk's interior in global scene coordinates.
    weight_y, weight_x
        Separable blending weights of one window along y and x.
    """

    def __init__(
        self,
        n_classes: int,
        y0: int,
        y1: int,
        x0: int,
        x1: int,
        weight_y: np.ndarray,
        weight_x: np.ndarray,
    ) -> None:
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.weight_y, self.weight_x = weight_y, weight_x
        self.base = y0  # global row held at buffer row 0: the first row not yet emitted
        rows = min(len(weight_y), y1 - y0)
        self.acc = np.zeros((n_classes, rows, x1 - x0), dtype=np.float32)
        self.wsum = np.zeros((rows, x1 - x0), dtype=np.float32)

    def add(self, sy: int, sx: int, probs: np.ndarray) -> None:
        """Add window ``probs`` ``(C, wy, wx)`` whose top-left pixel is at global ``(sy, sx)``."""
        wy, wx = len(self.weight_y), len(self.weight_x)
        gy0, gy1 = max(sy, self.y0), min(sy + wy, self.y1)
        gx0, gx1 = max(sx, self.x0), min(sx + wx, self.x1)
        if gy0 < self.base:
            raise InvalidWindowError(
                f"window at row {sy} arrived after rows up to {self.base} were emitted"
            )
        self._reserve(gy1 - self.base)
        w = self.weight_y[gy0 - sy : gy1 - sy, None] * self.weight_x[None, gx0 - sx : gx1 - sx]
        rows = slice(gy0 - self.base, gy1 - self.base)
        cols = slice(gx0 - self.x0, gx1 - self.x0)
        self.acc[:, rows, cols] += w * probs[:, gy0 - sy : gy1 - sy, gx0 - sx : gx1 - sx]
        self.wsum[rows, cols] += w

    def emit(self, upto: int, valid: np.ndarray, out: np.ndarray, class_ids: np.ndarray) -> None:
        """Finalise rows ``[base, upto)`` into ``out`` (the chunk's output) and drop them.

        ``valid`` is the chunk interior's data mask; ``out`` is ``(h, w)`` uint8 labels (ids from
        ``class_ids``, 255 for nodata) or ``(C, h, w)`` float32 probabilities (NaN for nodata).
        """
        upto = min(upto, self.y1)
        n = upto - self.base
        if n <= 0:
            return
        acc, wsum = self.acc[:, :n], self.wsum[:n]
        lo, hi = self.base - self.y0, upto - self.y0
        ok = valid[lo:hi] & (wsum > 0)
        if out.ndim == 2:
            labels = class_ids[_argmax_first_axis(acc)]
            labels[~ok] = NODATA_LABEL
            out[lo:hi] = labels
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                probs = acc / wsum
            probs[:, ~ok] = np.nan
            out[:, lo:hi] = probs
        # shift the open rows to the top of the buffers
        keep = self.acc.shape[1] - n
        self.acc[:, :keep] = self.acc[:, n:]
        self.acc[:, keep:] = 0.0
        self.wsum[:keep] = self.wsum[n:]
        self.wsum[keep:] = 0.0
        self.base = upto

    def _reserve(self, rows: int) -> None:
        have = self.acc.shape[1]
        if rows > have:  # a batch spanning several window rows: grow the buffers
            extra = rows - have
            self.acc = np.concatenate(
                [self.acc, np.zeros((self.acc.shape[0], extra, self.acc.shape[2]), np.float32)],
                axis=1,
            )
            self.wsum = np.concatenate(
                [self.wsum, np.zeros((extra, self.wsum.shape[1]), np.float32)]
            )


def _argmax_first_axis(a: np.ndarray) -> np.ndarray:
    """``a.argmax(axis=0)`` (first index on ties), as a loop over the short class axis: several
    times faster than numpy's strided reduction for ``(C, h, w)`` arrays."""
    best = a[0].copy()
    index = np.zeros(best.shape, dtype=np.intp)
    for c in range(1, a.shape[0]):
        better = a[c] > best
        np.copyto(best, a[c], where=better)
        index[better] = c
    return index
