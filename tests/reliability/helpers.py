"""Shared pieces of the reliability suite: small outputs, tmpfs mounts, edited packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from ..conftest import make_image

IDS, NAMES = [1, 2, 5, 7], ["water", "forest", "built", "bare"]
COLORS = ["#1f78b4", "#33a02c", "#e31a1c", "#b3aea3"]


def labels(height: int = 300, width: int = 400, *, chunk: int | None = 128) -> xr.DataArray:
    """Blocky (y, x) labels with a nodata corner, as predict returns them (Dask-backed unless
    ``chunk`` is None)."""
    img = make_image(height, width)
    yy, xx = np.mgrid[:height, :width]
    values = np.asarray(IDS, np.uint8)[((yy // 37) * 3 + (xx // 53)) % 4]
    values[: height // 10, : width // 10] = 255
    data = values if chunk is None else da.from_array(values, chunks=chunk)
    out = xr.DataArray(
        data,
        dims=("y", "x"),
        coords={"y": img.y, "x": img.x},
        attrs={"class_ids": IDS, "class_names": NAMES, "class_colors": COLORS},
        name="landcover",
    )
    out = out.rio.write_crs(img.rio.crs).rio.write_transform(img.rio.transform())
    return out.rio.write_nodata(255, encoded=False)


def probabilities(
    height: int = 300, width: int = 400, *, chunk: int | None = 128, noise: float = 0.0
) -> xr.DataArray:
    """(class, y, x) float32 probabilities with a NaN corner."""
    img = make_image(height, width)
    rng = np.random.default_rng(1)
    coarse = rng.random((4, height // 20 + 1, width // 20 + 1)).astype(np.float32)
    p = np.repeat(np.repeat(coarse, 20, 1), 20, 2)[:, :height, :width]
    p = p + noise * rng.random(p.shape).astype(np.float32)
    p /= p.sum(0)
    p[:, : height // 10, : width // 10] = np.nan
    data = p if chunk is None else da.from_array(p, chunks=(4, chunk, chunk))
    out = xr.DataArray(
        data,
        dims=("class", "y", "x"),
        coords={"class": np.array(NAMES, dtype=object), "y": img.y, "x": img.x},
        attrs={"class_ids": IDS, "class_names": NAMES, "class_colors": COLORS},
        name="probability",
    )
    out = out.rio.write_crs(img.rio.crs).rio.write_transform(img.rio.transform())
    return out.rio.write_nodata(np.nan, encoded=False)


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, sorted (hidden ones included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@contextmanager
def tmpfs(where: Path, size: str, *, options: str = "") -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only; the test is skipped otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def edited_package(
    source: Path,
    out: Path,
    edit: Callable[[dict], object] | None = None,
    *,
    raw_meta: str | None = None,
    tensors: Callable[[dict], object] | None = None,
) -> Path:
    """A copy of the package ``source`` whose metadata (and weights) were edited by hand, as
    a careless tool or a hostile file would: the weights' digest is recomputed, so only the
    edit differs."""
    from safetensors.numpy import load, save

    from xlandcover.package import _weights_digest

    blob = source.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["xlandcover"])
    if edit is not None:
        edit(meta)
    state = load(blob)
    if tensors is not None:
        tensors(state)
    text = raw_meta if raw_meta is not None else json.dumps(meta)
    out.write_bytes(
        save(state, metadata={"xlandcover": text, "weights_sha256": _weights_digest(state)})
    )
    return out


def unique(tmp_path: Path, stem: str) -> Path:
    return tmp_path / f"{stem}-{uuid.uuid4().hex[:6]}"
