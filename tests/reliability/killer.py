"""Run the xlandcover CLI and SIGKILL it at a named point of the job (tests only).

    python -m tests.reliability.killer PHASE -- predict ARGS...

Phases patch a function the job calls so that the process kills itself right there, without
cleaning up, as a crash, an OOM kill or a power cut would:

- ``before-manifest``: the store's metadata is written but the job's record is not;
- ``mid-chunks``: after the 5th chunk is written;
- ``cog-stream``: while the COG is streamed (after its first block);
- ``cog-copy``: after GDAL's COG copy, before the COG is published;
- ``after-publish``: right after the Zarr store was renamed onto ``--out``;
- ``after-cog-publish``: right after the COG was renamed onto ``--cog``.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(owner: Any, name: str, *, calls: int = 1, when: Callable[..., bool] | None = None):
    original = getattr(owner, name)
    seen = [0]

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if when is None or when(*args, **kwargs):
            seen[0] += 1
            if seen[0] >= calls:
                _die()
        return result

    setattr(owner, name, wrapper)


def _option(argv: list[str], flag: str) -> str:
    return os.path.abspath(argv[argv.index(flag) + 1])


def main(phase: str, argv: list[str]) -> int:
    import rasterio.io
    import rasterio.shutil

    import xlandcover.output._resume
    from xlandcover.cli import main as cli

    onto = {"after-publish": "--out", "after-cog-publish": "--cog"}
    if phase == "before-manifest":
        _after(xlandcover.output._resume, "_create_metadata")
    elif phase == "mid-chunks":
        _after(xlandcover.output._resume, "_write_block", calls=5)
    elif phase == "cog-stream":
        _after(rasterio.io.DatasetWriter, "write")
    elif phase == "cog-copy":
        _after(rasterio.shutil, "copy")
    elif phase in onto:
        target = _option(argv, onto[phase])
        _after(os, "replace", when=lambda src, dst: os.path.abspath(dst) == target)
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    return cli(argv)


if __name__ == "__main__":
    sep = sys.argv.index("--")
    sys.exit(main(sys.argv[1], sys.argv[sep + 1 :]))
