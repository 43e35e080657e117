"""Resumable Zarr output for long batch jobs: chunk-by-chunk region writes with a record.

``OUT.zarr`` is built in ``.OUT.zarr.partial/`` beside it: ``store.zarr`` (the Zarr v3 store,
its metadata written first) and ``done/`` (one empty file per finished chunk, created after the
chunk's data is written). Each output chunk is one Dask task that writes its own region, so
chunks never share a Zarr chunk and a killed job leaves only whole chunks behind. Rerunning
with ``resume=True`` checks the job is the same (shape, chunks, graph name, which covers the
input, model and settings), computes only the chunks without a record, and moves the finished
store to ``OUT.zarr``. Chunk results do not depend on which other chunks run, so the resumed
output is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .errors import OutputExistsError, XLandcoverError
from .progress import ChunkProgress, mean_pixel_area
from .write import _any_valid, _create_store, _require_data, _zarr_dataset

log = logging.getLogger("xlandcover")


class ChunkFailedError(XLandcoverError, RuntimeError):
    """One chunk of a batch job failed; finished chunks are kept for ``--resume``."""


def write_zarr_resumable(
    labels: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    client: Any,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``labels`` to ``store`` chunk by chunk on ``client``, resumable after a crash."""
    target = Path(store)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass overwrite=True to replace it")
    partial = target.with_name(f".{target.name}.partial")
    ds, name, nodata = _zarr_dataset(labels)
    data = ds[name].data
    identity = {
        "name": name,
        "graph": data.name,
        "shape": list(data.shape),
        "chunks": [list(c) for c in data.chunks],
        "dtype": str(data.dtype),
    }
    done_dir = partial / "done"
    if partial.exists():
        if not resume:
            raise OutputExistsError(
                f"{partial} holds an unfinished job for {target}; rerun with --resume "
                "(resume=True) to finish it, or delete it to start again"
            )
        manifest = json.loads((partial / "manifest.json").read_text())
        if manifest != identity:
            raise OutputExistsError(
                f"the unfinished job in {partial} was for another input, model or setting "
                "(its graph, shape or chunks differ); delete it to start again"
            )
    else:
        partial.mkdir(parents=True)
        _create_store(ds, name, partial / "store.zarr")  # data chunks are written below
        done_dir.mkdir()
        (partial / "manifest.json").write_text(json.dumps(identity))
    done = {p.name for p in done_dir.iterdir()}
    edges = [np.cumsum((0, *c)) for c in data.chunks]
    todo = [idx for idx in np.ndindex(*data.numblocks) if _key(idx) not in done]
    log.info(
        "%d of %d chunks to compute%s",
        len(todo),
        int(np.prod(data.numblocks)),
        f" ({len(done)} done before)" if done else "",
    )
    graph, keys = write_graph(data, partial / "store.zarr", name, done_dir, todo)
    futures = client.get(graph, keys, sync=False)
    where = {f.key: idx for f, idx in zip(futures, todo, strict=True)}
    bar = ChunkProgress(len(todo), mean_pixel_area(labels), enabled=progress)
    try:
        _collect(futures, where, bar, edges, partial, len(done), client)
    finally:
        bar.close()
    if todo:
        log.info("%d chunks, %s", len(todo), bar.rate())
    staged = xr.open_zarr(partial / "store.zarr", consolidated=False)[name]
    _require_data(_any_valid(staged.data, nodata), target)
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial / "store.zarr", target)
    shutil.rmtree(partial)
    return target


def _collect(
    futures: list[Any],
    where: dict[Any, tuple[int, ...]],
    bar: ChunkProgress,
    edges: list[np.ndarray],
    partial: Path,
    n_done: int,
    client: Any,
) -> None:
    """Wait for the chunk writes; the first failure cancels the rest and names its chunk."""
    from distributed import as_completed

    for finished, future in enumerate(as_completed(futures)):
        if future.status == "error":
            idx = where[future.key]
            bounds = [(int(e[i]), int(e[i + 1])) for e, i in zip(edges, idx, strict=True)]
            err = future.exception()
            client.cancel(futures)
            raise ChunkFailedError(
                f"chunk {idx} (rows {bounds[-2][0]}:{bounds[-2][1]}, columns "
                f"{bounds[-1][0]}:{bounds[-1][1]}) failed: {err!r}. The {finished + n_done} "
                f"finished chunks are kept in {partial}; fix the cause and rerun with --resume"
            ) from err
        bar.update(int(future.result().sum()))


def _key(idx: tuple[int, ...]) -> str:
    return "-".join(map(str, idx))


def write_graph(
    data: da.Array, store: Path, name: str, done_dir: Path, todo: list[tuple[int, ...]]
) -> tuple[Any, list[tuple[Any, ...]]]:
    """One graph that writes every chunk of ``data`` to its region of ``store``, and the keys
    of the chunks in ``todo``.

    One graph for the whole job, not one per chunk (``data.blocks[i]`` each optimised on its
    own): per-chunk graphs fused the model package's bytes into every chunk's task, so each
    task carried its own copy of the weights to the worker, which kept them until the job
    ended (7.6 MB per chunk for the demo model: the worker's memory grew with every chunk).
    """
    written = da.map_blocks(
        _write_block,
        data,
        str(store),
        name,
        str(done_dir),
        chunks=tuple((1,) * len(c) for c in data.chunks),
        dtype=np.int64,
        # a fresh name per attempt: a resumed job must not reuse the keys of a failed
        # attempt, whose cancellation may still be on its way to the scheduler
        name=f"xlandcover-write-{data.name}-{uuid.uuid4().hex[:12]}",
    )
    return written.__dask_graph__(), [(written.name, *idx) for idx in todo]


def _write_block(
    block: np.ndarray, store: str, name: str, done_dir: str, block_info: Any = None
) -> np.ndarray:
    import zarr

    info = block_info[0]
    region = tuple(slice(int(a), int(b)) for a, b in info["array-location"])
    array = zarr.open_group(store, mode="r+", zarr_format=3)[name]
    array[region] = block  # type: ignore[index]
    Path(done_dir, _key(info["chunk-location"])).touch()  # after the data: a whole chunk
    return np.full((1,) * block.ndim, block.size, dtype=np.int64)
