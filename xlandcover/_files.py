"""Files xlandcover writes whole: an existing one is replaced only when asked, and a file
appears only once complete (written under a hidden name beside it, flushed, renamed)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from .errors import OutputExistsError


def check_overwrite(path: Path, *, overwrite: bool, exists: str | None = None) -> None:
    """Refuse an existing ``path`` unless ``overwrite`` (``exists`` words what is there)."""
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"{exists or f'{path} exists'}; pass overwrite=True (--overwrite) to replace it"
        )


def partial_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for the file being written (same suffix, so
    writers that choose a format by suffix still do)."""
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` whole: ``write(tmp)`` writes a hidden file beside it, which is flushed to
    disk and renamed onto ``path`` (replacing it atomically). On any failure the temporary
    file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        write(tmp)  # ordinary permissions (mkstemp would make the file owner-only)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform allows."""
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
