"""What every writer does around its data: guard the target, lock it, stage, publish.

- **Recognised outputs only.** Every store and COG xlandcover writes carries a record (a Zarr
  group attribute / a GeoTIFF tag named :data:`MARKER`); ``overwrite=True`` replaces only a
  path that holds such a record (or is a label output of an earlier version, recognised by its
  class attributes), never a user's folder or image.
- **One job per output.** A lock file ``.NAME.lock`` beside the target holds the writer's pid
  and host; a second job is refused with both. A lock left by a killed process on this host
  is taken over, and the litter of that process (staging folders) is removed.
- **Staging and publishing.** Data is written under a hidden name beside the target (same file
  system) and moved onto it only when complete and checked; the old output is moved aside
  first, so no kill point leaves a half-deleted output.
- **Plain causes.** A full disk, a read-only folder or a GDAL failure is reported as such,
  naming the user's path, not the hidden staging path.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from .errors import (
    OutputConflictError,
    OutputExistsError,
    OutputLockedError,
    OutputNotWritableError,
    OutputWriteError,
    OverwriteRefusedError,
)

#: Name of the Zarr group attribute and GeoTIFF tag that mark an output as xlandcover's.
MARKER = "xlandcover_output"

Kind = Literal["zarr", "cog"]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def output_record(path: Path, kind: Kind) -> dict[str, Any] | None:
    """The xlandcover record of the output at ``path``, or None if it is not one.

    Outputs of earlier versions have no record; they are recognised by the class attributes
    every label output carries (``{"legacy": True}``).
    """
    return _zarr_record(path) if kind == "zarr" else _cog_record(path)


def _zarr_record(path: Path) -> dict[str, Any] | None:
    meta = _json_file(path / "zarr.json") if path.is_dir() else None
    if meta is None:
        return None
    record = meta.get("attributes", {}).get(MARKER)
    if isinstance(record, dict):
        return record
    for name in ("landcover", "probability"):
        array = _json_file(path / name / "zarr.json")
        if array is not None and "class_ids" in array.get("attributes", {}):
            return {"legacy": True}
    return None


def _cog_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    import rasterio

    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except (rasterio.errors.RasterioError, OSError):
        return None
    if MARKER in tags:
        try:
            record = json.loads(tags[MARKER])
        except json.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None
    return {"legacy": True} if "class_names" in tags else None


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_target(target: Path, *, overwrite: bool, kind: Kind) -> None:
    """Refuse an existing ``target`` unless ``overwrite`` and it is an xlandcover output."""
    if not target.exists() and not target.is_symlink():
        return
    if not overwrite:
        raise OutputExistsError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    if output_record(target, kind) is None:
        what = "Zarr store" if kind == "zarr" else "GeoTIFF"
        raise OverwriteRefusedError(
            f"{target} exists and is not an xlandcover {what} (it carries no xlandcover "
            "record), so overwrite does not replace it: move or delete it yourself, or choose "
            "another output path"
        )


def check_distinct(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    """Refuse outputs that are the same path, or that are (or contain, or lie in) an input."""
    for i, a in enumerate(outputs):
        for b in outputs[i + 1 :]:
            if _overlap(a, b):
                raise OutputConflictError(
                    f"two outputs are the same path ({a} and {b}); give each its own path"
                )
        for src in inputs:
            if _overlap(a, src):
                raise OutputConflictError(
                    f"the output {a} is also an input ({src}): writing it would destroy the "
                    "input. Choose another output path"
                )


def _overlap(a: Path, b: Path) -> bool:
    if a.exists() and b.exists() and os.path.samefile(a, b):
        return True
    ra, rb = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``target`` while writing it (see the module docstring)."""
    lock = lock_path(target)
    _make_parent(target)
    _acquire(lock, target)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _not_writable(target, err) from err


def _acquire(lock: Path, target: Path) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _is_stale(lock):
                raise _locked(lock, target) from None
            lock.unlink(missing_ok=True)
            remove_litter(target)
            continue
        except OSError as err:
            raise _not_writable(target, err) from err
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return
    raise _locked(lock, target)


def _is_stale(lock: Path) -> bool:
    """A lock whose holder was a process of this host that no longer runs."""
    record = _json_file(lock)
    if record is None:  # being written right now, or cut short by a kill long ago
        try:
            age = datetime.datetime.now().timestamp() - lock.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > 60
    if record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


def _locked(lock: Path, target: Path) -> OutputLockedError:
    record = _json_file(lock) or {}
    who = f"pid {record.get('pid', '?')} on {record.get('host', '?')}"
    return OutputLockedError(
        f"another job ({who}, since {record.get('since', '?')}) is writing {target}; wait for "
        f"it to finish, or, if no such job runs any more, delete {lock}"
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def remove_litter(target: Path) -> None:
    """Remove what killed writers of ``target`` left: staging folders, moved-aside outputs."""
    for pattern in (f".{target.name}.partial-*", f".{target.name}.old-*"):
        for path in target.parent.glob(pattern):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def staging_path(target: Path) -> Path:
    """A fresh hidden path beside ``target`` for the output being built."""
    return target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")


def publish(src: Path, target: Path) -> None:
    """Move the complete output ``src`` onto ``target``, replacing what is there.

    A file replaces a file atomically; a folder cannot, so the old one is first moved aside
    (``.NAME.old-*``) and removed last: a kill at any point leaves either the old or the new
    output at ``target``, never a mix.
    """
    _fsync_tree(src)
    old = None
    if (target.exists() or target.is_symlink()) and (target.is_dir() or src.is_dir()):
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(src, target)
    fsync_dir(target.parent)
    if old is not None:
        _remove(old)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or the metadata files of a store (its chunks were flushed when written)."""
    if path.is_file():
        fsync_file(path)
        return
    for meta in path.rglob("zarr.json"):
        fsync_file(meta)
    fsync_dir(path)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # not supported on this platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _not_writable(target: Path, err: OSError) -> OutputNotWritableError:
    return OutputNotWritableError(
        f"cannot write {target}: the folder {target.parent} is not writable "
        f"({err.strerror or err}); choose an output folder you can write to"
    )


def _disk_full(target: Path, cause: str) -> OutputWriteError:
    try:
        free = shutil.disk_usage(target.parent).free / 2**20
        room = f" ({free:.1f} MiB free there now)"
    except OSError:
        room = ""
    return OutputWriteError(
        f"writing {target} failed: no space left on device{room}; {cause}. Nothing was "
        "published. Free some space (or choose another folder) and write again"
    )


def write_failure(target: Path, err: OSError, staging: Path) -> BaseException | None:
    """The plain error for an ``OSError`` raised while writing ``target`` through ``staging``,
    or None to re-raise it as it is.

    A full disk becomes :class:`OutputWriteError` and a refused write into the staging folder
    :class:`OutputNotWritableError`, both naming ``target``; anything else (an unreadable
    input chunk, for one) is left as it is.
    """
    if isinstance(err, OutputWriteError | OutputNotWritableError):
        return None
    if err.errno in _FULL:
        return _disk_full(target, f"the system reported: {err.strerror}")
    filename = str(err.filename or "")
    if err.errno in _DENIED and (not filename or filename.startswith(str(staging))):
        return _not_writable(target, err)
    return None


def gdal_failure(target: Path, message: str, log: Sequence[str] = ()) -> OutputWriteError:
    """:class:`OutputWriteError` for a GDAL failure while writing ``target``: ``message`` (the
    exception's) and ``log`` (what GDAL reported before), naming a full disk when it is one."""
    said = "; ".join(dict.fromkeys([*log, message]))
    text = said.lower()
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        free = None
    if "no space" in text or (free is not None and free < 2**20):
        return _disk_full(target, f"GDAL reported: {said}")
    if any(s in text for s in ("write error", "error writing", "io error", "i/o error")):
        room = "" if free is None else f"{free / 2**20:.1f} MiB are free there now: "
        return OutputWriteError(
            f"writing {target} failed: GDAL could not write the data to the disk (GDAL "
            f"reported: {said}); {room}the disk may have been full for a moment, or it is "
            "failing. Nothing was published; check the disk and write again"
        )
    return OutputWriteError(
        f"writing {target} failed (GDAL reported: {said}); nothing was published. Check "
        "the disk and the folder, then write again"
    )
