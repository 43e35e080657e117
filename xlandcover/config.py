"""TOML run configurations for ``xlandcover train`` / ``xlandcover evaluate``.

A configuration names the data (image and label globs, colour-coded masks, band names),
the classes, how to cut chips, how to split, and the training settings; see
``examples/configs/*.toml``. Relative paths are relative to the configuration file. The same
file rebuilds the same chips and split (deterministic from its seed), so ``evaluate`` scores
exactly the partition ``train`` held out.
"""

from __future__ import annotations

import glob
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from .chips import Chips, sample_chips
from .errors import InputNotFoundError, LabelAlignmentError
from .io import open_raster
from .labels import open_color_mask
from .package import ClassInfo
from .splits import Splits, spatial_split
from .train import TrainConfig


@dataclass(frozen=True)
class RunConfig:
    path: Path
    raw: Mapping[str, Any]

    @property
    def base(self) -> Path:
        return self.path.parent

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return tuple(
            ClassInfo(int(c["id"]), str(c["name"]), str(c.get("color", "#808080")))
            for c in self.raw.get("classes", [])
        )

    @property
    def out_dir(self) -> Path:
        return self.base / self.raw.get("output", {}).get("dir", "runs/xlandcover")

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.raw.get("train", {}))

    def data(self) -> tuple[list[xr.DataArray], list[xr.DataArray], list[str]]:
        """Images, label rasters and group names, as configured."""
        d = self.raw["data"]
        images = self._glob(d["images"])
        labels = self._glob(d["labels"])
        if len(images) != len(labels):
            raise LabelAlignmentError(
                f"{len(images)} images but {len(labels)} label files match the globs of "
                f"{self.path}; each image needs one label file"
            )
        for a, b in zip(images, labels, strict=True):
            if len(images) > 1 and a.stem != b.stem:
                raise LabelAlignmentError(
                    f"image {a} is paired with labels {b} (sorted order); give files the same "
                    "names, or tighten the globs"
                )
        chunks = int(d.get("chunks", 2048))
        pixel_grid = bool(d.get("pixel_grid", False))
        bands = d.get("bands")
        imgs = [open_raster(p, chunks=chunks, bands=bands, pixel_grid=pixel_grid) for p in images]
        colors = {
            tuple(c["mask_color"]): int(c["id"])
            for c in self.raw.get("classes", [])
            if "mask_color" in c
        }
        if colors:
            ignore = [tuple(c) for c in d.get("ignore_colors", [])]
            labs = [
                open_color_mask(
                    p, colors, ignore_colors=ignore, chunks=chunks, pixel_grid=pixel_grid
                )
                for p in labels
            ]
        else:
            labs = [open_raster(p, chunks=chunks, pixel_grid=pixel_grid) for p in labels]
        pattern = d.get("group")
        groups = [_group(p, pattern) for p in images] if pattern else [p.stem for p in images]
        return imgs, labs, groups

    def chips(self) -> Chips:
        images, labels, groups = self.data()
        c = self.raw.get("chips", {})
        size = c.get("size", "auto")
        return sample_chips(
            images,
            labels,
            size=size if size == "auto" else int(size),
            stride=c.get("stride"),
            max_nodata=float(c.get("max_nodata", 0.2)),
            min_labelled=int(c.get("min_labelled", 1)),
            classes=self.classes or None,
            ignore_index=self.raw["data"].get("ignore_index"),
            groups=groups,
        )

    def splits(self, chips: Chips | None = None) -> Splits:
        s = dict(self.raw.get("split", {}))
        if "fractions" in s:
            s["fractions"] = tuple(s["fractions"])
        return spatial_split(chips if chips is not None else self.chips(), **s)

    def _glob(self, pattern: str) -> list[Path]:
        full = pattern if Path(pattern).is_absolute() else str(self.base / pattern)
        found = sorted(Path(p) for p in glob.glob(full))
        if not found:
            raise InputNotFoundError(f"no file matches {full!r} (from {self.path})")
        return found


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML run configuration."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"configuration {p} does not exist")
    with p.open("rb") as f:
        raw = tomllib.load(f)
    for section in ("data",):
        if section not in raw:
            raise ValueError(f"{p} has no [{section}] section; see examples/configs/")
    return RunConfig(p.resolve(), raw)


def _group(path: Path, pattern: str) -> str:
    m = re.search(pattern, str(path))
    if m is None:
        raise ValueError(f"group pattern {pattern!r} does not match {path}")
    return m.group(0)
