"""The per-window engine of :func:`xlandcover.predict` (internal): one torch code path.

A chunk task hands over its halo-padded block (the raw pixels as read), the block's data
mask and the windows to run, in the scene's global order. Per batch, only the raw tiles
travel to the model's device (on CUDA from pinned host memory, the next batch copied on a
side stream while the current one runs); everything else happens there: conversion to float,
normalisation, nodata fill, mirror padding of short axes, TTA, the forward pass (under
autocast for ``bf16``/``fp16``), softmax, the separable blending weights, the rolling
accumulation over the chunk's interior and the argmax. Only finished rows come back to the
host: uint8 labels, or float32 probabilities.

The host-side cost per window does not depend on the batch size. The accumulator is at most
one window tall whatever the batch: rows are emitted as soon as the next window starts below
them, not once per batch (the numpy engine before grew its buffers to a whole batch of
window rows, by concatenation, and shifted them all at every emit). On CPU, softmax and
blending run window by window, so no batch-sized temporaries are allocated (on glibc those
are fresh ``mmap`` pages, faulted in on every batch), and the host buffers are reused.

Per pixel, contributions are summed in the global window order for any chunking and any
batch size; a window's probabilities depend on its batch only through the float rounding of
the forward pass.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._torch import torch
from ..model._package import NODATA_LABEL
from ..model._runtime import LoadedModel, apply_thread_limit, forward_threads
from ._blend import RollingBlend, RowSink

if TYPE_CHECKING:
    from ._predict import _Plan

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger("xlandcover")

#: Tests: run the accelerator code path (raw tiles "copied" to the device and converted
#: there, with uint16 sent as int16; batch softmax; torch argmax) on CPU, to compare it with
#: the CPU path.
ACCELERATOR_PATH_ON_CPU = False


def _host_path(device: torch.device) -> bool:
    """Whether ``device`` gets the CPU path: per-window conversion and softmax, numpy argmax."""
    return device.type == "cpu" and not ACCELERATOR_PATH_ON_CPU


def run_chunk(
    block: np.ndarray,
    valid: np.ndarray,
    starts: Sequence[tuple[int, int]],
    *,
    plan: _Plan,
    loaded: LoadedModel,
    interior: tuple[int, int, int, int],
    origin: tuple[int, int],
    batch_size: int,
    precision: str,
    out: np.ndarray,
) -> None:
    """Run the windows ``starts`` (global top-left corners, in the scene's order) of one
    chunk and write the blended result of the interior into ``out``.

    ``block`` is the chunk's halo-padded ``(band, y, x)`` block whose first pixel is at the
    global position ``origin``; ``valid`` its data mask; ``interior`` the global
    ``(y0, y1, x0, x1)`` of ``out`` (labels ``(h, w)`` or probabilities ``(C, h, w)``, filled
    with nodata by the caller). ``precision`` is ``"fp32"``, ``"bf16"`` or ``"fp16"``; a
    chunk whose fp16 logits overflow (not finite) is run again in fp32.
    """
    device = torch.device(loaded.device)
    with torch.inference_mode(), _host_threads(device):
        finite = _run(block, valid, starts, plan, loaded, device, interior, origin, batch_size,
                      precision, out)  # fmt: skip
        if not all(bool(f) for f in finite):  # fp16 overflowed somewhere: this chunk in fp32
            log.info("fp16 logits were not finite in a chunk: running it again in fp32")
            out.fill(NODATA_LABEL if plan.output == "labels" else np.nan)
            _run(block, valid, starts, plan, loaded, device, interior, origin, batch_size,
                 "fp32", out)  # fmt: skip


def _run(
    block: np.ndarray,
    valid: np.ndarray,
    starts: Sequence[tuple[int, int]],
    plan: _Plan,
    loaded: LoadedModel,
    device: torch.device,
    interior: tuple[int, int, int, int],
    origin: tuple[int, int],
    batch_size: int,
    precision: str,
    out: np.ndarray,
) -> list[torch.Tensor]:
    """:func:`run_chunk` at one precision; for fp16, whether each batch's logits were finite
    (device tensors, read once at the end: no synchronisation per batch)."""
    y0, y1, x0, x1 = interior
    ey0, ex0 = origin
    inner_valid = valid[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
    labels = plan.output == "labels"
    inputs = _Inputs(block, valid, plan, device, origin)
    sink = RowSink(out, inner_valid, device, labels=labels)
    blend = RollingBlend(
        len(plan.class_ids),
        interior,
        plan.rows.weights(),
        plan.cols.weights(),
        device,
        class_ids=plan.class_ids if labels else None,
        sink=sink,
        host_argmax=_host_path(device),
    )
    finite: list[torch.Tensor] | None = [] if precision == "fp16" else None
    per_window = _host_path(device)  # no batch-sized temporaries on the host
    for batch, x in inputs.batches(starts, batch_size):
        probs = window_probabilities(
            loaded, x, plan.tta, plan.temperature, precision, per_window=per_window, finite=finite
        )
        for (sy, sx), p in zip(batch, probs, strict=True):
            blend.emit(sy)  # rows above this window receive nothing more
            blend.add(sy, sx, p)
        sink.drain(wait=False)
    blend.emit(y1)
    sink.drain(wait=True)
    return finite or []


@contextlib.contextmanager
def _host_threads(device: torch.device) -> Iterator[None]:
    """On CPU, the tensor work around the model runs on the calling thread alone, like the
    numpy it replaces: with several chunks in flight (one Dask thread each) while the forward
    pass of one of them uses all the cores, more threads would only oversubscribe them.
    :func:`forward` gives forward passes their threads back."""
    if device.type != "cpu":
        yield
        return
    forward_threads()  # torch's own thread count, read before the engine changes it
    apply_thread_limit(1)
    try:
        yield
    finally:
        apply_thread_limit()  # leave the thread as it was found


# --- inputs: raw tiles on the host, float and normalised on the device -----------------------


class _Inputs:
    """The batches of one chunk as normalised float32 tensors on the model's device."""

    def __init__(
        self,
        block: np.ndarray,
        valid: np.ndarray,
        plan: _Plan,
        device: torch.device,
        origin: tuple[int, int],
    ) -> None:
        if device.type == "cpu" and not block.flags.writeable:
            block = block.copy()  # torch.from_numpy warns on read-only arrays
        self.block, self.valid, self.device, self.origin = block, valid, device, origin
        self.all_valid = bool(valid.all())
        rows, cols = plan.rows, plan.cols
        # every window's pixels inside the scene: the window, or a short axis entirely
        self.tile = (min(rows.window, rows.length), min(cols.window, cols.length))
        self.host = _host_path(device)
        # the accelerator path run on CPU (tests) follows CUDA's rules
        wire_for = "cpu" if self.host else ("cuda" if device.type == "cpu" else device.type)
        self.wire, self.unsigned_mask = wire_dtype(block.dtype, wire_for)
        self.channels_last = device.type in ("cpu", "cuda")
        shape = (1, len(plan.mean), 1, 1)
        self.mean = torch.tensor(plan.mean, dtype=torch.float32).reshape(shape).to(device)
        self.std = torch.tensor(plan.std, dtype=torch.float32).reshape(shape).to(device)
        self.pad = [
            None if t == w else torch.from_numpy(symmetric_index(t, w)).to(device)
            for t, w in zip(self.tile, (rows.window, cols.window), strict=True)
        ]
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def batches(
        self, starts: Sequence[tuple[int, int]], size: int
    ) -> Iterator[tuple[Sequence[tuple[int, int]], torch.Tensor]]:
        """``(windows, x)`` per batch, ``x`` of shape ``(B, bands, wy, wx)`` on the device.
        On accelerators the next batch is gathered and copied while the current one runs."""
        groups = [starts[b : b + size] for b in range(0, len(starts), size)]
        n = min(size, len(starts))
        bands = self.block.shape[0]
        if self.host:
            x = _host_tensor((n, bands, *self.tile), np.dtype(np.float32), ("x", 0), cl=True)
            for group in groups:
                yield group, self._pad(self._convert_on_host(group, x))
            return
        pin = self.stream is not None
        buffers = [_HostBuffers(self, n, i, pin) for i in range(2)]
        staged = self._stage(groups[0], buffers[0])
        for k, group in enumerate(groups):
            yield group, self._prepare(*staged)
            # the caller has queued batch k on the device (asynchronous there): gather and copy
            # batch k + 1 while it runs
            if k + 1 < len(groups):
                staged = self._stage(groups[k + 1], buffers[(k + 1) % 2])

    def _convert_on_host(self, group: Sequence[tuple[int, int]], x: torch.Tensor) -> torch.Tensor:
        """CPU: each window converted, normalised and filled in place in the reused batch
        tensor ``x``, one window at a time (while its pixels are in cache)."""
        ey0, ex0 = self.origin
        ty, tx = self.tile
        mean, std = self.mean[0], self.std[0]
        for i, (sy, sx) in enumerate(group):
            oy, ox = sy - ey0, sx - ex0
            tile = self.block[:, oy : oy + ty, ox : ox + tx]
            if tile.dtype != self.wire:
                tile = tile.astype(self.wire)
            xi = x[i].copy_(torch.from_numpy(tile))
            xi.sub_(mean).div_(std)
            if not self.all_valid:
                ok = self.valid[oy : oy + ty, ox : ox + tx]
                if not ok.all():
                    xi.masked_fill_(torch.from_numpy(~ok), 0.0)  # nodata: the band mean
        return x[: len(group)]

    def _stage(
        self, group: Sequence[tuple[int, int]], buffers: _HostBuffers
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Accelerators: gather the raw tiles (and masks) of ``group`` on the host and start
        copying them to the device (on CUDA from pinned memory, on a side stream)."""
        raw, mask = buffers.fill(group)
        if self.stream is None:
            return raw.to(self.device), None if mask is None else mask.to(self.device)
        with torch.cuda.stream(self.stream):
            raw_d = raw.to(self.device, non_blocking=True)
            mask_d = None if mask is None else mask.to(self.device, non_blocking=True)
            assert buffers.copied is not None
            buffers.copied.record(self.stream)
        return raw_d, mask_d

    def _prepare(self, raw: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Accelerators: float, normalised, nodata filled, short axes mirrored, on the device."""
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            raw.record_stream(current)
            if mask is not None:
                mask.record_stream(current)
        x = to_float(raw, self.unsigned_mask, channels_last=self.channels_last)
        x.sub_(self.mean).div_(self.std)
        if mask is not None:
            x.masked_fill_(~mask.unsqueeze(1), 0.0)  # nodata: the band mean after normalising
        return self._pad(x)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Mirror an axis shorter than the window up to the window (``np.pad`` symmetric)."""
        if self.pad[0] is None and self.pad[1] is None:
            return x
        if self.pad[0] is not None:
            x = x.index_select(2, self.pad[0])
        if self.pad[1] is not None:
            x = x.index_select(3, self.pad[1])
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)


class _HostBuffers:
    """Reusable host arrays for one batch of raw tiles and their masks (pinned on CUDA)."""

    def __init__(self, inputs: _Inputs, size: int, index: int, pin: bool) -> None:
        self.inputs = inputs
        bands = inputs.block.shape[0]
        ty, tx = inputs.tile
        self.raw = _host_tensor((size, bands, ty, tx), inputs.wire, ("raw", index), pin=pin)
        self.mask = (
            None
            if inputs.all_valid
            else _host_tensor((size, ty, tx), np.dtype(bool), ("mask", index), pin=pin)
        )
        self.copied = torch.cuda.Event() if pin else None

    def fill(self, group: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        inputs = self.inputs
        if self.copied is not None:
            self.copied.synchronize()  # the copy from this buffer two batches ago is done
        n = len(group)
        raw = self.raw.numpy()
        mask = None if self.mask is None else self.mask.numpy()
        ey0, ex0 = inputs.origin
        ty, tx = inputs.tile
        block = inputs.block
        if inputs.unsigned_mask is not None:
            block = block.view(raw.dtype)  # uint16 travels as the same bits in int16
        any_invalid = False
        for i, (sy, sx) in enumerate(group):
            oy, ox = sy - ey0, sx - ex0
            raw[i] = block[:, oy : oy + ty, ox : ox + tx]  # casts where the wire dtype differs
            if mask is not None:
                m = inputs.valid[oy : oy + ty, ox : ox + tx]
                mask[i] = m
                any_invalid = any_invalid or not m.all()
        return self.raw[:n], (self.mask[:n] if any_invalid and self.mask is not None else None)


_LOCAL = threading.local()


def _host_tensor(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    role: tuple[str, int],
    *,
    pin: bool = False,
    cl: bool = False,
) -> torch.Tensor:
    """A host tensor (pinned, channels-last when asked) reused by later chunks of this
    thread: large ones are fresh pages on every allocation, and pinned memory is costly."""
    cache: dict[Any, torch.Tensor] = getattr(_LOCAL, "buffers", None) or {}
    _LOCAL.buffers = cache
    key = (role, pin, cl, dtype.str)
    have = cache.get(key)
    if have is not None and tuple(have.shape) == shape:
        return have
    tdtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    fmt = torch.channels_last if cl else torch.contiguous_format
    tensor = torch.empty(shape, dtype=tdtype, memory_format=fmt, pin_memory=pin)
    cache[key] = tensor
    return tensor


_CPU_WIRE = tuple(np.dtype(t) for t in ("u1", "i1", "i2", "u2", "i4", "i8", "f2", "f4", "f8"))


def wire_dtype(dtype: np.dtype[Any], device_type: str) -> tuple[np.dtype[Any], int | None]:
    """The dtype raw tiles are copied to the device in, and the mask that restores unsigned
    values on the device (``None``: none needed).

    Imagery travels as it was read (1-2 bytes per value instead of float32's 4). uint16 has
    only limited support on accelerators, so there it travels as the same bits in int16 and
    is widened and masked on the device (:func:`to_float`). Types accelerators lack (float64
    on MPS, 64-bit and uint32 integers) become float32 on the host: the value every path
    feeds the model is ``float32(pixel)``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8), None
    if device_type == "cpu":
        if dtype in _CPU_WIRE:
            return dtype, None
        return np.dtype(np.float32), None
    if dtype in (np.uint8, np.int8, np.int16, np.int32, np.float16, np.float32):
        return dtype, None
    if dtype == np.uint16:
        return np.dtype(np.int16), 0xFFFF
    if dtype == np.float64 and device_type == "cuda":
        return dtype, None
    return np.dtype(np.float32), None


def to_float(raw: torch.Tensor, unsigned_mask: int | None, *, channels_last: bool) -> torch.Tensor:
    """``raw`` ``(B, bands, h, w)`` as float32 (channels-last when asked), in one pass where
    possible; ``unsigned_mask``: the bits of unsigned values sent as signed ones."""
    if unsigned_mask is not None:
        raw = raw.to(torch.int32).bitwise_and_(unsigned_mask)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(raw.shape, dtype=torch.float32, device=raw.device, memory_format=fmt)
    return x.copy_(raw)


def symmetric_index(length: int, size: int) -> np.ndarray:
    """Indices that extend an axis of ``length`` to ``size`` by mirroring it, edge included:
    ``np.pad(a, (0, size - length), mode="symmetric")`` is ``a[symmetric_index(...)]``."""
    i = np.arange(size) % (2 * length)
    return np.where(i < length, i, 2 * length - 1 - i).astype(np.int64)


# --- the model: forward (TTA, autocast) and softmax --------------------------------------------


def forward(loaded: LoadedModel, x: torch.Tensor, precision: str) -> torch.Tensor:
    """The model's logits for the batch ``x``, under autocast for ``bf16``/``fp16``. Forward
    passes on one model are serialised (one per process at a time), see
    :mod:`xlandcover.runtime`."""
    dtype = _AUTOCAST.get(precision)
    with loaded.lock:
        cpu = x.device.type == "cpu"
        if cpu:
            apply_thread_limit()
        try:
            with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
                return loaded.module(x)
        finally:
            if cpu:
                apply_thread_limit(1)  # back to the engine's one thread (see run_chunk)


def softmax(logits: torch.Tensor, temperature: float, dim: int) -> torch.Tensor:
    """Softmax of ``logits / temperature`` in float32 (the package's calibration)."""
    logits = logits.float()
    return (logits if temperature == 1.0 else logits / temperature).softmax(dim=dim)


def window_probabilities(
    loaded: LoadedModel,
    x: torch.Tensor,
    tta: str | None,
    temperature: float,
    precision: str,
    *,
    per_window: bool,
    finite: list[torch.Tensor] | None = None,
) -> Iterator[torch.Tensor]:
    """Class probabilities ``(C, wy, wx)`` of each window of the batch ``x``, in order.

    ``per_window``: compute the softmax window by window (CPU: small temporaries that stay in
    the allocator's reach) instead of for the whole batch at once (accelerators: one kernel).
    ``finite``: a list that receives, per forward pass, whether all its logits were finite.
    """

    def logits_of(batch: torch.Tensor) -> torch.Tensor:
        logits = forward(loaded, batch, precision)
        if finite is not None:
            finite.append(torch.isfinite(logits).all())
        return logits

    if tta is None:
        logits = logits_of(x)
        if per_window:
            return (softmax(logits[i], temperature, dim=0) for i in range(len(logits)))
        return iter(softmax(logits, temperature, dim=1))
    transforms = TTA_TRANSFORMS[tta]
    total: torch.Tensor | None = None
    for fwd, inv in transforms:
        p = inv(softmax(logits_of(fwd(x)), temperature, dim=1))
        total = p if total is None else total + p
    assert total is not None
    return iter(total / len(transforms))


Transform = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _d4() -> list[Transform]:
    def rotate(k: int) -> Callable[[Any], Any]:
        return lambda t: t.rot90(k, (-2, -1))

    def flip_rotate(k: int) -> Callable[[Any], Any]:
        return lambda t: t.flip(-1).rot90(k, (-2, -1))

    def unrotate_flip(k: int) -> Callable[[Any], Any]:
        return lambda t: t.rot90(-k, (-2, -1)).flip(-1)

    out: list[Transform] = []
    for k in range(4):
        out.append((rotate(k), rotate(-k)))
        out.append((flip_rotate(k), unrotate_flip(k)))
    return out


#: Test-time augmentations: (transform of the input, inverse transform of the output).
TTA_TRANSFORMS: dict[str, list[Transform]] = {
    "flips": [
        (lambda t: t, lambda t: t),
        (lambda t: t.flip(-1), lambda t: t.flip(-1)),
        (lambda t: t.flip(-2), lambda t: t.flip(-2)),
        (lambda t: t.flip(-2, -1), lambda t: t.flip(-2, -1)),
    ],
    "d4": _d4(),
}
