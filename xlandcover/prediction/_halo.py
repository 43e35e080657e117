"""Chunks wide enough for a halo: shared by ``predict`` and the ``sieve``."""

from __future__ import annotations

import warnings

import dask.array as da

from ..errors import ChunkTooSmallError, RechunkWarning


def fit_chunks(
    data: da.Array,
    row_halo: int,
    col_halo: int,
    *,
    allow_rechunk: bool,
    halo_is: str = "window - 1",
    alternative: str = "a smaller window",
    name: str = "img",
) -> da.Array:
    """Make every chunk of the last two axes (y, x) at least one halo wide, as the overlap
    needs. A short last chunk (the remainder of regular chunking) is merged into its neighbour
    silently; smaller chunks elsewhere are merged with a warning (an axis shorter than the halo
    into one chunk), or raise with ``allow_rechunk=False``. ``halo_is``, ``alternative`` and
    ``name`` word the messages for callers other than predict (the sieve)."""
    from dask.array.overlap import ensure_minimum_chunksize

    new = list(data.chunks)
    for dim, axis, halo in (("y", data.ndim - 2, row_halo), ("x", data.ndim - 1, col_halo)):
        c = data.chunks[axis]
        if len(c) == 1 or min(c) >= halo:
            continue
        if not allow_rechunk:
            raise ChunkTooSmallError(
                f"chunks {_short(c)} along {dim} include some smaller than the halo "
                f"({halo} px = {halo_is}); use chunks of at least {halo + 1} px, e.g. "
                f"`{name}.chunk({{'y': {max(4 * (halo + 1), 2048)}, 'x': ...}})`, "
                f"{alternative}, or allow_rechunk=True"
            )
        if min(c[:-1]) >= halo:  # only the remainder is short: fold it into its neighbour
            new[axis] = (*c[:-2], c[-2] + c[-1])
            continue
        new[axis] = ensure_minimum_chunksize(halo, c) if sum(c) >= halo else (sum(c),)
        warnings.warn(
            f"chunks along {dim} smaller than the halo ({halo} px = {halo_is}) "
            f"were merged: {_short(c)} -> {_short(new[axis])}. Use chunks of at least "
            f"{halo + 1} px to avoid this.",
            RechunkWarning,
            stacklevel=3,
        )
    return data.rechunk(tuple(new)) if tuple(new) != data.chunks else data


def _short(chunks: tuple[int, ...]) -> str:
    return str(chunks) if len(chunks) <= 6 else f"({chunks[0]}, ..., {chunks[-1]}) x{len(chunks)}"
