"""Blending window probabilities over a chunk, on the model's device, holding only open rows.

Windows arrive in the scene's global order (ascending start row, then column). A row of the
chunk is final once every window covering it has been added, i.e. as soon as the next window
starts below it: :meth:`RollingBlend.emit` is called before each window and turns the rows
above it into labels (argmax, class ids) or probabilities (weighted mean) and hands them to a
:class:`RowSink`, which writes them into the chunk's output on the host. The accumulators are
therefore at most one window tall, whatever the batch size and the chunk size.

Per pixel, contributions are summed in the order the windows arrive, which is the same for any
chunking and any batch size: that is what makes the result independent of both.

torch is imported here: this module is loaded by the engine
(:mod:`xlandcover.prediction._engine`) on the workers, never by ``import xlandcover``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._torch import torch
from ..errors import InvalidWindowError
from ..model._package import NODATA_LABEL


class RollingBlend:
    """Weighted sums of class probabilities over a chunk's interior, on the device, holding
    only the rows still open (at most one window tall)."""

    def __init__(
        self,
        n_classes: int,
        interior: tuple[int, int, int, int],
        weight_y: np.ndarray,
        weight_x: np.ndarray,
        device: torch.device,
        *,
        class_ids: Sequence[int] | None,
        sink: RowSink,
        host_argmax: bool,
    ) -> None:
        self.y0, self.y1, self.x0, self.x1 = interior
        self.wy, self.wx = len(weight_y), len(weight_x)
        self.base = self.y0  # global row held at buffer row 0: the first row not yet emitted
        rows = min(self.wy, self.y1 - self.y0)
        width = self.x1 - self.x0
        self.acc = torch.zeros((n_classes, rows, width), dtype=torch.float32, device=device)
        self.spare = torch.empty_like(self.acc)
        # labels need no weight sums: the argmax of the weighted sums is the argmax of their
        # average (every valid pixel has a positive weight sum)
        self.wsum = None if class_ids is not None else torch.zeros((rows, width), device=device)
        self.weights = torch.from_numpy(weight_y[:, None] * weight_x[None, :]).to(device)
        self.class_ids = class_ids
        self.sink = sink
        self.host_argmax = host_argmax
        if class_ids is not None:
            self.lut = torch.tensor(class_ids, dtype=torch.uint8, device=device)

    def add(self, sy: int, sx: int, probs: torch.Tensor) -> None:
        """Add window ``probs`` ``(C, wy, wx)`` whose top-left pixel is at global ``(sy, sx)``."""
        gy0, gy1 = max(sy, self.y0), min(sy + self.wy, self.y1)
        gx0, gx1 = max(sx, self.x0), min(sx + self.wx, self.x1)
        if gy0 < self.base or gy1 - self.base > self.acc.shape[1]:
            raise InvalidWindowError(
                f"window at row {sy} arrived out of order (rows up to {self.base} were emitted)"
            )
        rows = slice(gy0 - self.base, gy1 - self.base)
        cols = slice(gx0 - self.x0, gx1 - self.x0)
        w = self.weights[gy0 - sy : gy1 - sy, gx0 - sx : gx1 - sx]
        self.acc[:, rows, cols].addcmul_(probs[:, gy0 - sy : gy1 - sy, gx0 - sx : gx1 - sx], w)
        if self.wsum is not None:
            self.wsum[rows, cols].add_(w)

    def emit(self, upto: int) -> None:
        """Finalise rows ``[base, upto)`` (no window still to come covers them) and drop them."""
        n = min(upto, self.y1) - self.base
        if n <= 0:
            return
        lo = self.base - self.y0
        # rows beyond the buffer got no window (all skipped: nodata), their output stays nodata
        held = min(n, self.acc.shape[1])
        acc = self.acc[:, :held]
        if self.wsum is None:
            self.sink.put(lo, labels_of(acc, self.lut, on_host=self.host_argmax))
        else:
            self.sink.put(lo, acc / self.wsum[:held])
        n = held
        keep = self.acc.shape[1] - n  # rows still open move to the top of the buffers
        self.spare[:, :keep].copy_(self.acc[:, n:])
        self.spare[:, keep:].zero_()
        self.acc, self.spare = self.spare, self.acc
        if self.wsum is not None:
            self.wsum[:keep] = self.wsum[n:].clone()
            self.wsum[keep:].zero_()
        self.base = min(upto, self.y1)


def labels_of(acc: torch.Tensor, lut: torch.Tensor, *, on_host: bool) -> torch.Tensor:
    """Class ids ``lut[argmax]`` over the first axis of ``acc`` ``(C, h, w)``, as uint8; the
    first class wins ties. Accelerators: torch's argmax. CPU (``on_host``): a loop over the
    short class axis on slabs of rows that stay in cache (several times faster than torch's or
    numpy's strided reduction)."""
    if not on_host:
        return lut[acc.argmax(dim=0)]
    a = acc.numpy()
    n_classes, h, w = a.shape
    out = np.empty((h, w), dtype=np.uint8)
    step = max(1, _SLAB_PIXELS // w)
    best = np.empty((min(step, h), w), dtype=a.dtype)
    better = np.empty(best.shape, dtype=bool)
    index = np.empty(best.shape, dtype=np.uint8)
    candidate = np.empty(best.shape, dtype=np.uint8)
    ids = lut.numpy()
    for r in range(0, h, step):
        k = min(step, h - r)
        b, gt, i, cand = best[:k], better[:k], index[:k], candidate[:k]
        np.copyto(b, a[0, r : r + k])
        i.fill(0)
        for c in range(1, n_classes):
            np.greater(a[c, r : r + k], b, out=gt)
            np.maximum(b, a[c, r : r + k], out=b)
            # index = c where better: c exceeds every index so far, so a maximum does it
            # (masked copies are ~30x slower than these passes)
            np.multiply(gt.view(np.uint8), np.uint8(c), out=cand)
            np.maximum(i, cand, out=i)
        np.take(ids, i, out=out[r : r + k])
    return torch.from_numpy(out)


#: Pixels per slab of the CPU argmax: its working set (C + 3 planes) stays in L2 cache.
_SLAB_PIXELS = 32768


class RowSink:
    """Writes finished rows into the chunk's output; from accelerators asynchronously, through
    pinned memory, collected once the copy is done."""

    def __init__(
        self, out: np.ndarray, inner_valid: np.ndarray, device: torch.device, *, labels: bool
    ) -> None:
        self.out, self.labels, self.device = out, labels, device
        self.invalid = None if inner_valid.all() else ~inner_valid
        self.pending: list[tuple[Any, torch.Tensor, int]] = []

    def put(self, lo: int, rows: torch.Tensor) -> None:
        """Rows from ``lo`` (interior rows): ``(n, w)`` uint8 labels or ``(C, n, w)`` float32."""
        if self.device.type == "cpu":
            self._write(lo, rows.numpy())
        elif self.device.type == "cuda":
            host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
            host.copy_(rows, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending.append((event, host, lo))
        else:
            self._write(lo, rows.cpu().numpy())

    def drain(self, *, wait: bool) -> None:
        """Write the rows whose copies are complete (all of them with ``wait``)."""
        while self.pending and (wait or self.pending[0][0].query()):
            event, host, lo = self.pending.pop(0)
            event.synchronize()
            self._write(lo, host.numpy())

    def _write(self, lo: int, rows: np.ndarray) -> None:
        # nodata by arithmetic, several times faster than masked copies: labels are at most
        # 254, so max(label, 255 * invalid); probabilities plus NaN where invalid, else 0
        n = rows.shape[-2]
        invalid = None if self.invalid is None else self.invalid[lo : lo + n]
        if self.labels:
            target = self.out[lo : lo + n]
            if invalid is None:
                target[...] = rows
            else:
                np.maximum(rows, invalid.view(np.uint8) * np.uint8(NODATA_LABEL), out=target)
        else:
            target = self.out[:, lo : lo + n]
            if invalid is None:
                target[...] = rows
            else:
                nan = np.where(invalid, np.float32(np.nan), np.float32(0.0))
                np.add(rows, nan[None], out=target)
