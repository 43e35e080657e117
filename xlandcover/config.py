"""TOML run configurations for ``xlandcover train`` / ``xlandcover evaluate``.

A configuration names the data (image and label globs, colour-coded masks, band names),
the classes, how to cut chips, how to split, and the training settings; see
``examples/configs/*.toml``. Relative paths are relative to the configuration file. The same
file rebuilds the same chips and split (deterministic from its seed), so ``evaluate`` scores
exactly the partition ``train`` held out.

Labels may be vector files (points, lines, polygons: GeoPackage, Shapefile, GeoJSON,
GeoParquet), burnt onto each image with :func:`~xlandcover.rasterize_labels` (keys in
:data:`LABEL_KEYS`); ``[evaluate] labels`` names other labels (e.g. a dense reference map) to
score the held-out partition on.
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
from .splits import Splits, held_out, spatial_split
from .train import TrainConfig
from .vector import is_vector, rasterize_features, rasterize_labels

#: Keys of the label options, per section (``[data]`` also has images, bands, ...): ``labels``
#: (a glob of label rasters or vector files), and for vector files ``label_column`` (default
#: "class"), ``all_touched``, ``point_radius`` (pixels), ``overlap`` and ``layer``, as in
#: :func:`~xlandcover.rasterize_labels`. ``[evaluate]`` takes the same keys for the labels the
#: held-out partition is scored on, and ``ignore_index``.
LABEL_KEYS: Mapping[str, tuple[str, ...]] = {
    "data": ("labels", "label_column", "all_touched", "point_radius", "overlap", "layer"),
    "evaluate": ("labels", "label_column", "all_touched", "point_radius", "overlap", "layer",
                 "ignore_index"),
}  # fmt: skip
_VECTOR_OPTIONS = ("all_touched", "point_radius", "overlap", "layer")


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
        images, labels, _, groups = self._inputs()
        return images, labels, groups

    def _inputs(
        self,
    ) -> tuple[list[xr.DataArray], list[xr.DataArray], list[xr.DataArray] | None, list[str]]:
        """Images, label rasters, feature rasters (vector labels only) and group names."""
        d = self.raw["data"]
        images = self._glob(d["images"])
        chunks = int(d.get("chunks", 2048))
        pixel_grid = bool(d.get("pixel_grid", False))
        bands = d.get("bands")
        imgs = [open_raster(p, chunks=chunks, bands=bands, pixel_grid=pixel_grid) for p in images]
        labs, features = self._labels(d, images, imgs)
        pattern = d.get("group")
        groups = [_group(p, pattern) for p in images] if pattern else [p.stem for p in images]
        return imgs, labs, features, groups

    def _labels(
        self, section: Mapping[str, Any], images: list[Path], imgs: list[xr.DataArray]
    ) -> tuple[list[xr.DataArray], list[xr.DataArray] | None]:
        """The label rasters of ``section`` (``[data]`` or ``[evaluate]``) for the images, and
        their feature rasters when the labels are vector files."""
        d = self.raw["data"]
        labels = self._glob(section["labels"])
        vector = all(is_vector(p) for p in labels)
        if vector and len(labels) == 1:
            labels = labels * len(images)  # one table for every image
        if len(images) != len(labels):
            raise LabelAlignmentError(
                f"{len(images)} images but {len(labels)} label files match the globs of "
                f"{self.path}; each image needs one label file (or one vector file for all)"
            )
        for a, b in zip(images, labels, strict=True):
            if len(images) > 1 and a.stem != b.stem and len(set(labels)) > 1:
                raise LabelAlignmentError(
                    f"image {a} is paired with labels {b} (sorted order); give files the same "
                    "names, or tighten the globs"
                )
        chunks = int(d.get("chunks", 2048))
        pixel_grid = bool(d.get("pixel_grid", False))
        if vector:
            column = str(section.get("label_column", "class"))
            options = {k: section[k] for k in _VECTOR_OPTIONS if k in section}
            classes = self.classes or None
            labs = [rasterize_labels(p, img, column=column, classes=classes, **options)
                    for p, img in zip(labels, imgs, strict=True)]  # fmt: skip
            features = [rasterize_features(p, img, **options)
                        for p, img in zip(labels, imgs, strict=True)]  # fmt: skip
            return labs, features
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
        return labs, None

    def chips(self) -> Chips:
        images, labels, features, groups = self._inputs()
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
            features=features,
        )

    @property
    def has_evaluation_labels(self) -> bool:
        return "labels" in self.raw.get("evaluate", {})

    def evaluation_chips(self, splits: Splits, partition: str = "test") -> Chips:
        """Chips of the ``[evaluate] labels`` (e.g. a dense reference map) in ``partition`` of
        ``splits``, keeping the split's buffer from the other partitions (see
        :func:`~xlandcover.splits.held_out`); the partition's own chips without them."""
        part: Chips = getattr(splits, partition)
        section = self.raw.get("evaluate", {})
        if "labels" not in section:
            return part
        d = self.raw["data"]
        images = self._glob(d["images"])
        source_images = [s.image for s in part.sources]
        labels, _ = self._labels(section, images, source_images)
        c = self.raw.get("chips", {})
        reference = sample_chips(
            source_images,
            labels,
            size=part.size,
            stride=part.size,  # each pixel once: evaluate counts pixels once anyway
            max_nodata=float(c.get("max_nodata", 0.2)),
            classes=part.classes,
            ignore_index=section.get("ignore_index", d.get("ignore_index")),
            groups=[s.group for s in part.sources],
        )
        return held_out(splits, reference, partition=partition)

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
