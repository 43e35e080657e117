"""Resumable Zarr output for long batch jobs: chunk-by-chunk region writes with a record.

``OUT.zarr`` is built in ``.OUT.zarr.partial/`` beside it: ``store.zarr`` (the Zarr v3 store,
its metadata written first), ``done/`` (one empty file per finished chunk) and
``manifest.json`` (what the job is). The folder appears only once all three exist (it is built
under another name and renamed), so a job killed before it started leaves nothing to resume.
Each output chunk is one Dask task that writes its own region, flushes the chunk's file to
disk and only then creates its record, so a killed job leaves only whole chunks behind.

Rerunning with ``resume=True`` checks the job is the same (shape, chunks, graph name, which
covers the model and settings, and a fingerprint of the input files, so an input rewritten
in place is noticed), recomputes recorded chunks whose data is missing, computes the chunks
without a record, checks every chunk is in the store, and moves it to ``OUT.zarr``, whose
attributes record the job. A resume after that rename (a kill just after it) only tidies up,
and a resume of a job that already finished is a no-op. Chunk results do not depend on which
other chunks run, so the resumed output is bit-identical to an uninterrupted one. A lock file
(:mod:`xlandcover.output`) keeps a second job off the same store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._files import fsync_dir, fsync_file
from ..errors import ChunkFailedError, InputChangedError, OutputExistsError
from ._progress import ChunkProgress, mean_pixel_area
from ._targets import MARKER, check_target, output_lock, output_record, publish
from ._write import _any_valid, _create_metadata, _require_data, _zarr_dataset

log = logging.getLogger("xlandcover")

#: Version of the manifest; manifests of other versions are refused with a clear message.
MANIFEST_VERSION = 2


def write_zarr_resumable(
    labels: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    client: Any,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``labels`` to ``store`` chunk by chunk on ``client``, resumable after a crash.

    Parameters
    ----------
    labels
        The prediction (numpy- or Dask-backed).
    store
        The Zarr store to write.
    client
        A :class:`distributed.Client` that runs the chunk writes.
    resume
        Finish the unfinished job for ``store`` (see the module docstring).
    overwrite
        Replace an existing xlandcover output at ``store`` (never another folder).
    progress
        Show a progress bar.
    inputs
        The files and stores the prediction reads (rasters, the model package): their
        fingerprint is part of the job, so a resume after any of them changed is refused.
    """
    target = Path(store)
    partial = target.with_name(f".{target.name}.partial")
    with output_lock(target):
        ds, name, nodata = _zarr_dataset(labels)
        data = ds[name].data
        identity = _identity(data, name, inputs)
        job = job_id(identity)
        ds.attrs[MARKER] = {**ds.attrs[MARKER], "job": job}
        if partial.exists():
            if not resume:
                raise OutputExistsError(
                    f"{partial} holds an unfinished job for {target}; rerun with --resume "
                    "(resume=True) to finish it, or delete it to start again"
                )
            _check_manifest(partial, identity)
            if not (partial / "store.zarr").exists():  # killed right after publishing
                shutil.rmtree(partial)
                log.info("%s was already complete (its job was published)", target)
                return target
        elif resume and _job_of(target) == job:
            log.info("%s is already complete; nothing to resume", target)
            return target
        check_target(target, overwrite=overwrite, kind="zarr")
        if not partial.exists():
            _start(partial, ds, name, identity)
        _compute(labels, data, partial, name, client, progress)
        _check_chunks(partial, name, data)
        _require_data(_recorded_valid(partial, name, nodata), target)
        publish(partial / "store.zarr", target)
        shutil.rmtree(partial)
    return target


def _identity(data: da.Array, name: str, inputs: Sequence[str | os.PathLike[str]]) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "name": name,
        "graph": data.name,
        "shape": list(data.shape),
        "chunks": [list(c) for c in data.chunks],
        "dtype": str(data.dtype),
        "inputs": fingerprint(inputs),
    }


def job_id(identity: dict) -> str:
    """A short digest naming a job (recorded in its outputs)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def _job_of(target: Path) -> str | None:
    record = output_record(target, "zarr")
    return None if record is None else record.get("job")


def fingerprint(paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """A digest per input of what its files are now: path, size, inode and modification time
    (in nanoseconds) of every file, so that a file or a store rewritten in place differs."""
    out = {}
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(path) if f != path else ''}:{st.st_size}:".encode())
            h.update(f"{st.st_ino}:{st.st_mtime_ns};".encode())
        out[str(Path(os.path.abspath(path)))] = h.hexdigest()
    return out


def _check_manifest(partial: Path, identity: dict) -> None:
    try:
        manifest = json.loads((partial / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise OutputExistsError(
            f"{partial} holds an unfinished job without a readable manifest (from an older "
            f"xlandcover, or damaged); delete it to start again"
        ) from err
    if manifest == identity:
        return
    if manifest.get("version") != MANIFEST_VERSION:
        raise OutputExistsError(
            f"the unfinished job in {partial} was started by another version of xlandcover "
            "and cannot be resumed by this one; delete it to start again"
        )
    same_job = {k: v for k, v in manifest.items() if k != "inputs"}
    if same_job == {k: v for k, v in identity.items() if k != "inputs"}:
        changed = sorted(
            set(manifest["inputs"]) ^ set(identity["inputs"])
            | {p for p, d in identity["inputs"].items() if manifest["inputs"].get(p) != d}
        )
        raise InputChangedError(
            f"the inputs of the unfinished job in {partial} changed since it started "
            f"({', '.join(changed)}): finished chunks would mix old and new data. Delete "
            f"{partial} to start again"
        )
    raise OutputExistsError(
        f"the unfinished job in {partial} was for another input, model or setting "
        "(its graph, shape or chunks differ); delete it to start again"
    )


def _start(partial: Path, ds: xr.Dataset, name: str, identity: dict) -> None:
    """Create the job's folder under another name, then rename it: it exists whole or not."""
    init = partial.with_name(f"{partial.name}-init-{uuid.uuid4().hex[:8]}")
    init.mkdir()
    try:
        _create_metadata(ds, init / "store.zarr")  # data chunks are written later
        (init / "done").mkdir()
        (init / "manifest.json").write_text(json.dumps(identity))
        for f in (init / "manifest.json", *(init / "store.zarr").rglob("zarr.json")):
            fsync_file(f)
        os.replace(init, partial)
    except BaseException:
        shutil.rmtree(init, ignore_errors=True)
        raise
    fsync_dir(partial.parent)


#: Chunks per side of a region: the unit of submission (8 x 8 = 64 chunks, one small graph).
REGION_CHUNKS = 8
#: Most chunks submitted and not yet finished, per worker thread (at least one region).
IN_FLIGHT_PER_THREAD = 4


def _recorded_valid(partial: Path, name: str, nodata: float | None) -> bool:
    """Whether any chunk holds a valid pixel, from the chunks' records ("1" or "0"), stopping
    at the first "1", so a continental job is not read back whole; records without that
    (written by an earlier xlandcover) fall back to reading the store."""
    if nodata is None:
        return True
    for record in (partial / "done").iterdir():
        flag = record.read_bytes()
        if flag == b"1":
            return True
        if flag != b"0":
            staged = xr.open_zarr(partial / "store.zarr", consolidated=False)[name]
            return _any_valid(staged.data, nodata)
    return False


def _compute(
    labels: xr.DataArray,
    data: da.Array,
    partial: Path,
    name: str,
    client: Any,
    progress: bool,
    *,
    region: int | None = None,
    max_in_flight: int | None = None,
) -> None:
    """Compute and write the chunks without a record (or whose recorded data is missing),
    region by region with at most ``max_in_flight`` chunks submitted and unfinished."""
    done_dir = partial / "done"
    _sweep_torn_writes(partial / "store.zarr")
    done = {p.name for p in done_dir.iterdir()}
    lost = _missing(partial / "store.zarr", name, done)
    for key in lost:
        (done_dir / key).unlink(missing_ok=True)
    if lost:
        log.warning("%d recorded chunks have no data in the store; computing them again", len(lost))
    done -= set(lost)
    edges = [np.cumsum((0, *c)) for c in data.chunks]
    region = region or REGION_CHUNKS
    total = int(np.prod(data.numblocks))
    n_todo = total - len(done)
    regions = (
        [idx for idx in todo if _key(idx) not in done] for todo in _regions(data.numblocks, region)
    )
    log.info(
        "%d of %d chunks to compute%s, in regions of up to %d",
        n_todo,
        total,
        f" ({len(done)} done before)" if done else "",
        region * region,
    )
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) if hasattr(client, "nthreads") else 1
        max_in_flight = IN_FLIGHT_PER_THREAD * max(1, threads)
    log.debug("at most %d chunks in flight", max_in_flight)
    nodata = labels.rio.nodata
    written = write_graph(data, partial / "store.zarr", name, done_dir, nodata)
    bar = ChunkProgress(n_todo, mean_pixel_area(labels), enabled=progress)
    try:
        _submit_and_collect(written, regions, max_in_flight, bar, edges, partial, len(done),
                            client)  # fmt: skip
    finally:
        bar.close()
    if n_todo:
        log.info("%d chunks, %s", n_todo, bar.rate())


_TORN = re.compile(r"\.[0-9a-f]{32}\.partial$")


def _sweep_torn_writes(store: Path) -> None:
    """Delete the temporary files of chunk writes a kill cut short: Zarr's local store writes
    each chunk to ``KEY.<uuid hex>.partial`` and renames it onto ``KEY``, so a job killed while
    a chunk was in flight leaves one behind, which would otherwise be published with the store."""
    torn = [f for f in store.rglob("*.partial") if f.is_file() and _TORN.search(f.name)]
    for f in torn:
        f.unlink()
    if torn:
        log.info("removed %d chunk writes cut short by the interruption", len(torn))


def _regions(numblocks: tuple[int, ...], size: int) -> Iterator[list[tuple[int, ...]]]:
    """The block indices in regions of ``size`` x ``size`` blocks (over the last two axes),
    regions in row-major order, blocks row-major inside each; generated as needed."""
    rows, cols = numblocks[-2], numblocks[-1]
    for r0 in range(0, rows, size):
        for c0 in range(0, cols, size):
            yield [
                (*head, r, c)
                for head in np.ndindex(*numblocks[:-2])
                for r in range(r0, min(r0 + size, rows))
                for c in range(c0, min(c0 + size, cols))
            ]


def _missing(store: Path, name: str, keys: set[str] | list[str]) -> list[str]:
    """The chunk keys (``"i-j"``) among ``keys`` whose data file is not in the store."""
    if not keys:
        return []
    import zarr

    array = zarr.open_group(store, mode="r", zarr_format=3)[name]
    assert isinstance(array, zarr.Array)
    meta = array.metadata
    return sorted(
        k
        for k in keys
        if not (store / name / meta.encode_chunk_key(tuple(map(int, k.split("-"))))).is_file()
    )


def _check_chunks(partial: Path, name: str, data: da.Array) -> None:
    """Every chunk must be in the store before it is published (no zeros for lost chunks)."""
    keys = [_key(idx) for idx in np.ndindex(*data.numblocks)]
    lost = _missing(partial / "store.zarr", name, keys)
    if lost:
        for key in lost:
            (partial / "done" / key).unlink(missing_ok=True)
        raise ChunkFailedError(
            f"{len(lost)} chunks of {partial} have no data in the store although the job "
            f"recorded them (e.g. {lost[0]}); they were not published. Rerun with --resume "
            "to compute them again"
        )


def _submit_and_collect(
    written: da.Array,
    regions: Iterator[list[tuple[int, ...]]],
    max_in_flight: int,
    bar: ChunkProgress,
    edges: list[np.ndarray],
    partial: Path,
    n_done: int,
    client: Any,
) -> None:
    """Submit the regions' graphs one after another, keeping at most ``max_in_flight``
    chunks unfinished (always at least one region), and wait for them; the first failure
    cancels the rest and names its chunk.

    Each region's graph is the job's graph culled to the region's chunks (see
    :mod:`xlandcover.prediction._graph`: culling builds only those chunks' tasks), so neither
    the client nor the scheduler ever holds the whole job. Constants the regions share (the
    model package's bytes, the area of interest: string-keyed data nodes) are submitted once
    and held as futures, so their bytes cross to the cluster once, not once per region.
    """
    from dask._task_spec import DataNode
    from dask.highlevelgraph import HighLevelGraph
    from distributed import as_completed

    graph = written.__dask_graph__()
    assert isinstance(graph, HighLevelGraph)
    held: dict[Any, Any] = {}  # key -> future of a shared constant
    futures = as_completed()
    where: dict[Any, tuple[int, ...]] = {}
    pending = (todo for todo in regions if todo)
    in_flight = finished = 0
    submitted: list[Any] = []

    def submit(todo: list[tuple[int, ...]]) -> int:
        keys = [(written.name, *idx) for idx in todo]
        dsk = dict(graph.cull(set(keys)))
        shared = {k: v for k, v in dsk.items() if isinstance(k, str) and isinstance(v, DataNode)}
        fresh = {k: v for k, v in shared.items() if k not in held}
        if fresh:
            for f in client.get(fresh, list(fresh), sync=False):
                held[f.key] = f
        for k in shared:
            del dsk[k]
        batch = client.get(dsk, keys, sync=False)
        for f, idx in zip(batch, todo, strict=True):
            where[f.key] = idx
            futures.add(f)
        submitted.extend(batch)
        return len(batch)

    try:
        for todo in pending:  # the first region, then one more whenever there is room
            in_flight += submit(todo)
            if in_flight >= max_in_flight:
                break
        for future in futures:
            in_flight -= 1
            if future.status == "error":
                idx = where[future.key]
                bounds = [(int(e[i]), int(e[i + 1])) for e, i in zip(edges, idx, strict=True)]
                err = future.exception()
                client.cancel(submitted)
                raise ChunkFailedError(
                    f"chunk {idx} (rows {bounds[-2][0]}:{bounds[-2][1]}, columns "
                    f"{bounds[-1][0]}:{bounds[-1][1]}) failed: {err!r}. The "
                    f"{finished + n_done} finished chunks are kept in {partial}; fix the cause "
                    "and rerun with --resume"
                ) from err
            finished += 1
            bar.update(int(future.result().sum()))
            del where[future.key]
            while in_flight < max_in_flight:
                todo = next(pending, [])
                if not todo:
                    break
                in_flight += submit(todo)
            submitted = [f for f in submitted if f.key in where]
    finally:
        held.clear()


def _key(idx: tuple[int, ...]) -> str:
    return "-".join(map(str, idx))


def write_graph(
    data: da.Array, store: Path, name: str, done_dir: Path, nodata: float | None = None
) -> da.Array:
    """A lazy array whose block ``idx`` writes block ``idx`` of ``data`` to its region of
    ``store`` (and returns its pixel count); cull it to the chunks to write.

    One graph for the whole job, culled per region, not one graph per chunk
    (``data.blocks[i]`` each optimised on its own): per-chunk graphs fused the model package's
    bytes into every chunk's task, so each task carried its own copy of the weights to the
    worker, which kept them until the job ended (7.6 MB per chunk for the demo model).
    """
    return da.map_blocks(
        _write_block,
        data,
        str(store),
        name,
        str(done_dir),
        None if nodata is None else float(nodata),
        chunks=tuple((1,) * len(c) for c in data.chunks),
        dtype=np.int64,
        # a fresh name per attempt: a resumed job must not reuse the keys of a failed
        # attempt, whose cancellation may still be on its way to the scheduler
        name=f"xlandcover-write-{data.name}-{uuid.uuid4().hex[:12]}",
    )


def _write_block(
    block: np.ndarray,
    store: str,
    name: str,
    done_dir: str,
    nodata: float | None = None,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    import zarr

    # block_id, not block_info: map_blocks builds block_info for every chunk on the client
    # (hundreds of MB for 10^5 chunks). Dask's chunks are the store's (regular but the last),
    # so block ``idx`` is Zarr chunk ``idx``.
    assert block_id is not None
    array = zarr.open_group(store, mode="r+", zarr_format=3)[name]
    assert isinstance(array, zarr.Array)
    region = tuple(
        slice(i * c, i * c + n) for i, c, n in zip(block_id, array.chunks, block.shape, strict=True)
    )
    assert all(n <= c for n, c in zip(block.shape, array.chunks, strict=True)), region
    # every chunk gets a file, even one equal to the fill value: its presence is checked
    array.with_config({"write_empty_chunks": True})[region] = block
    coords = tuple(s.start // c for s, c in zip(region, array.chunks, strict=True))
    chunk = Path(store, name, array.metadata.encode_chunk_key(coords))
    fsync_file(chunk)  # the data is on disk before its record exists
    fsync_dir(chunk.parent)
    record = Path(done_dir, _key(block_id))
    first = block[0] if block.ndim == 3 else block
    if nodata is None:
        valid = True
    else:
        valid = bool((~np.isnan(first) if np.isnan(nodata) else first != nodata).any())
    record.write_bytes(b"1" if valid else b"0")  # whether the chunk holds a valid pixel
    return np.full((1,) * block.ndim, block.size, dtype=np.int64)
