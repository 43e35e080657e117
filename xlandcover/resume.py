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
(:mod:`xlandcover.outputs`) keeps a second job off the same store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .errors import InputChangedError, OutputExistsError, XLandcoverError
from .outputs import (
    MARKER,
    check_target,
    fsync_dir,
    fsync_file,
    output_lock,
    output_record,
    publish,
)
from .progress import ChunkProgress, mean_pixel_area
from .write import _any_valid, _create_store, _require_data, _zarr_dataset

log = logging.getLogger("xlandcover")

#: Version of the manifest; manifests of other versions are refused with a clear message.
MANIFEST_VERSION = 2


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
        staged = xr.open_zarr(partial / "store.zarr", consolidated=False)[name]
        _require_data(_any_valid(staged.data, nodata), target)
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
        _create_store(ds, name, init / "store.zarr")  # data chunks are written later
        (init / "done").mkdir()
        (init / "manifest.json").write_text(json.dumps(identity))
        for f in (init / "manifest.json", *(init / "store.zarr").rglob("zarr.json")):
            fsync_file(f)
        os.replace(init, partial)
    except BaseException:
        shutil.rmtree(init, ignore_errors=True)
        raise
    fsync_dir(partial.parent)


def _compute(
    labels: xr.DataArray, data: da.Array, partial: Path, name: str, client: Any, progress: bool
) -> None:
    """Compute and write the chunks without a record (or whose recorded data is missing)."""
    done_dir = partial / "done"
    done = {p.name for p in done_dir.iterdir()}
    lost = _missing(partial / "store.zarr", name, done)
    for key in lost:
        (done_dir / key).unlink(missing_ok=True)
    if lost:
        log.warning("%d recorded chunks have no data in the store; computing them again", len(lost))
    done -= set(lost)
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
    assert isinstance(array, zarr.Array)
    # every chunk gets a file, even one equal to the fill value: its presence is checked
    array.with_config({"write_empty_chunks": True})[region] = block
    coords = tuple(s.start // c for s, c in zip(region, array.chunks, strict=True))
    chunk = Path(store, name, array.metadata.encode_chunk_key(coords))
    fsync_file(chunk)  # the data is on disk before its record exists
    fsync_dir(chunk.parent)
    record = Path(done_dir, _key(info["chunk-location"]))
    record.touch()
    return np.full((1,) * block.ndim, block.size, dtype=np.int64)
