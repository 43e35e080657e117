"""Minimum mapping unit: merge patches smaller than ``min_size`` pixels into their surroundings.

The rule is local, so a lazy map is sieved chunk by chunk with :func:`dask.array.map_overlap`
and a halo of ``2 * (min_size - 1)`` pixels, and the result is the same for every chunking.

**Definition.** Given class labels ``L``, a nodata value, a connectivity (4 or 8) and
``min_size``:

1. A *patch* is a connected component (by the connectivity) of pixels of one class; nodata
   pixels belong to no patch. A pixel is *small* when its patch has fewer than ``min_size``
   pixels.
2. The *border* of a small patch is the set of pixels outside it that neighbour one of its
   pixels (by the same connectivity) and are neither nodata nor small.
3. Every pixel of a small patch whose border is not empty takes the class held by the most
   pixels of the border (each border pixel counted once; ties go to the lowest class id).
   A small patch with an empty border (enclosed by other small patches, nodata or the edge
   of the raster) keeps its class. All other pixels keep theirs.

**Why it is local.** A patch of fewer than ``min_size`` pixels lies within ``min_size - 2``
pixels (Chebyshev distance) of each of its pixels, and a patch of ``min_size`` or more has at
least ``min_size`` pixels within ``min_size - 1`` of each of its pixels, connected to it inside
that window (the first ``min_size`` pixels of a breadth-first search). So whether a pixel is
small is decided by its window of radius ``min_size - 1``. The border of a small patch lies
within ``min_size - 1`` pixels of each of its pixels, and deciding whether a border pixel is
small looks ``min_size - 1`` further: the output at a pixel depends only on the input within
``2 * (min_size - 1)`` pixels, which is the halo. It cannot be smaller: with ``min_size=3``,
the first pixel of the row ``5 5 2 2 2`` becomes 2, of ``5 5 2 2 7`` stays 5.

**Guarantees.** Nodata pixels stay nodata and never become a fill value; ``min_size=1``
changes nothing; a filled patch joins a patch of at least ``min_size`` pixels. So every patch
of the result smaller than ``min_size`` is a patch of the input with an empty border (for
example inside speckle made only of small patches). Sieving again can therefore change more:
the rule is not idempotent.

**Against GDAL's sieve** (``rasterio.features.sieve``): a small patch whose border is one
class (an island enclosed by one patch of at least ``min_size`` pixels) gets that class in
both. GDAL merges a patch into the *largest* neighbouring polygon and repeats until none is
small, which reaches arbitrarily far and so depends on chunking when run chunk by chunk; here
the *longest* border wins and clusters of small patches stay.
"""

from __future__ import annotations

import operator
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import MinimumMappingUnitError, RasterInputError
from ..io._labels import as_label_raster
from ..model._package import NODATA_LABEL
from ._graph import cullable_overlap
from ._halo import fit_chunks

Connectivity = Literal[4, 8]

_OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    8: tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx),
}


def sieve_halo(min_size: int) -> int:
    """Pixels of context each side of a chunk that :func:`sieve` needs: ``2 * (min_size - 1)``."""
    return 2 * (min_size - 1)


def sieve(
    labels: xr.DataArray,
    min_size: int,
    *,
    connectivity: Connectivity = 4,
    nodata: int | None = None,
    allow_rechunk: bool = True,
) -> xr.DataArray:
    """Merge patches smaller than ``min_size`` pixels into their surroundings (minimum mapping
    unit), lazily and independently of chunking.

    A pixel whose patch (connected pixels of its class) has fewer than ``min_size`` pixels
    takes the class that most of the patch's border holds, counting only border pixels that
    are not nodata and whose own patch has at least ``min_size`` pixels (ties: lowest class
    id); a small patch with no such border pixel keeps its class. The full definition, its
    guarantees and how it differs from GDAL's sieve are in :mod:`xlandcover.prediction`.

    Parameters
    ----------
    labels
        ``(y, x)`` class-label DataArray of an integer dtype (uint8 from ``predict``), or a
        single-band ``(band, y, x)`` one, numpy- or Dask-backed.
    min_size
        Minimum mapping unit in pixels; patches with fewer pixels are merged. 1 changes
        nothing.
    connectivity
        4 (pixels sharing an edge are connected) or 8 (edges or corners). Used both for
        patches and for their borders.
    nodata
        Label that is never a class: such pixels stay as they are and never fill a patch.
        Default: ``labels.rio.nodata`` if set, else 255.
    allow_rechunk
        Dask chunks smaller than the halo (``2 * (min_size - 1)``) are merged with a
        :class:`~xlandcover.errors.RechunkWarning`; with ``False`` they raise
        :class:`~xlandcover.errors.ChunkTooSmallError` instead.

    Returns
    -------
    xarray.DataArray
        Same dtype, coordinates (CRS included), attributes and name. Lazy for Dask input
        (built with :func:`dask.array.map_overlap`, identical for every chunking), computed
        for numpy input.

    Examples
    --------
    >>> labels = xr.DataArray(np.array([[1, 1, 1], [1, 2, 1], [1, 1, 1]], np.uint8),
    ...                       dims=("y", "x"))
    >>> sieve(labels, 2).values
    array([[1, 1, 1],
           [1, 1, 1],
           [1, 1, 1]], dtype=uint8)
    >>> lazy = img.landcover.predict(model).landcover.sieve(9)  # doctest: +SKIP
    """
    min_size, connectivity = _check_options(min_size, connectivity)
    if not isinstance(labels, xr.DataArray):
        raise RasterInputError(
            f"sieve needs an xarray.DataArray of class labels, got {type(labels).__name__}; "
            "for a numpy array use xlandcover.prediction.sieve_array()"
        )
    labels = as_label_raster(labels, what="the labels to sieve")
    if nodata is None:
        nodata = _nodata_of(labels)
    data = labels.data
    result: np.ndarray | da.Array
    if isinstance(data, da.Array):
        halo = sieve_halo(min_size)
        data = fit_chunks(
            data,
            halo,
            halo,
            allow_rechunk=allow_rechunk,
            halo_is="2 * (min_size - 1)",
            alternative="a smaller min_size",
            name="labels",
        )
        result = _sieve_dask(data, min_size, connectivity, nodata)
    else:
        result = sieve_array(np.asarray(data), min_size, connectivity=connectivity, nodata=nodata)
    return labels.copy(data=result)


def sieve_array(
    labels: np.ndarray,
    min_size: int,
    *,
    connectivity: Connectivity = 4,
    nodata: int | None = NODATA_LABEL,
) -> np.ndarray:
    """The sieve of :func:`sieve` on a whole 2-D numpy array (also the per-chunk kernel).

    Returns a new array of the same dtype; ``nodata=None`` means every value is a class.
    """
    from scipy import ndimage

    min_size, connectivity = _check_options(min_size, connectivity)
    a = np.asarray(labels)
    if a.ndim != 2:
        raise RasterInputError(f"sieve_array needs a 2-D array, got shape {a.shape}")
    valid = np.ones(a.shape, bool) if nodata is None else a != nodata
    classes = np.unique(a[valid])
    out = a.copy()
    if min_size == 1 or not classes.size:
        return out
    # 1. patches: one id per connected component of each class (0: nodata), and their sizes
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    patch = np.zeros(a.shape, np.int64)
    n_patches = 0
    for value in classes:
        lab, n = ndimage.label(a == value, structure=structure)
        inside = lab > 0
        patch[inside] = lab[inside] + n_patches
        n_patches += n
    small_patch = np.bincount(patch.ravel(), minlength=n_patches + 1) < min_size
    small_patch[0] = False  # nodata is never small
    small = small_patch[patch]
    if not small.any():
        return out
    large = valid & ~small
    # 2. border: (small patch, border pixel) pairs over the neighbour offsets, each pair once
    height, width = a.shape
    ys, xs = np.nonzero(small)
    which = np.unique(patch[ys, xs], return_inverse=True)[1]  # small patches numbered 0..k-1
    n_small = int(which.max()) + 1
    keys = []
    for dy, dx in _OFFSETS[connectivity]:
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
        ok[ok] = large[qy[ok], qx[ok]]
        keys.append(which[ok] * (height * width) + qy[ok] * width + qx[ok])
    pairs = np.unique(np.concatenate(keys))
    if not pairs.size:
        return out
    owner, pixel = np.divmod(pairs, height * width)
    # 3. fill: the class held by most border pixels; argmax keeps the first (lowest) on ties
    cls = np.searchsorted(classes, a.ravel()[pixel])
    votes = np.bincount(owner * classes.size + cls, minlength=n_small * classes.size)
    votes = votes.reshape(n_small, classes.size)
    has_border = votes.sum(axis=1) > 0
    fill = classes[votes.argmax(axis=1)]
    change = has_border[which]
    out[ys[change], xs[change]] = fill[which[change]]
    return out


def _sieve_dask(data: da.Array, min_size: int, connectivity: int, nodata: int | None) -> da.Array:
    """``sieve_array`` on each chunk padded with the halo (chunks already at least that wide;
    an axis in one chunk needs none), trimmed back to the chunk."""
    halo = sieve_halo(min_size)
    depth = {axis: halo if len(data.chunks[axis]) > 1 else 0 for axis in (0, 1)}
    return cullable_overlap(  # a region of a job culls without the whole graph
        da.map_overlap(
            sieve_array,
            data,
            depth=depth,
            boundary="none",
            trim=True,
            allow_rechunk=False,
            min_size=min_size,
            connectivity=connectivity,
            nodata=nodata,
            dtype=data.dtype,
            meta=np.empty((0, 0), dtype=data.dtype),
            token="xlandcover-sieve",
        )
    )


def _check_options(min_size: Any, connectivity: Any) -> tuple[int, Connectivity]:
    try:
        size = None if isinstance(min_size, bool) else operator.index(min_size)
    except TypeError:
        size = None
    if size is None:
        raise MinimumMappingUnitError(
            f"min_size must be a whole number of pixels, got {min_size!r}; e.g. min_size=9 "
            "removes patches of fewer than 9 pixels"
        )
    if size < 1:
        raise MinimumMappingUnitError(
            f"min_size must be at least 1 pixel, got {size}; min_size=1 keeps every patch, "
            "min_size=N removes patches of fewer than N pixels"
        )
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise MinimumMappingUnitError(
            f"connectivity must be 4 (pixels sharing an edge) or 8 (edges or corners), "
            f"got {connectivity!r}"
        )
    return size, 4 if connectivity == 4 else 8


def _nodata_of(labels: xr.DataArray) -> int:
    import rioxarray  # noqa: F401  (registers .rio)

    value = labels.rio.nodata
    if value is None or not np.isfinite(value):
        return NODATA_LABEL
    return int(value)
