"""TOML run configurations for ``xlandcover train`` / ``xlandcover evaluate``.

A configuration names the data (image and label globs, colour-coded masks, band names),
the classes, how to cut chips, how to split, and the training settings; see
``examples/configs/*.toml``. Relative paths are relative to the configuration file. The same
file rebuilds the same chips and split (deterministic from its seed), so ``evaluate`` scores
exactly the partition ``train`` held out.

Labels may be vector files (points, lines, polygons: GeoPackage, Shapefile, GeoJSON,
GeoParquet), burnt onto each image with :func:`~xlandcover.rasterize_labels` (options in
:class:`DataSettings`); ``[evaluate] labels`` names other labels (e.g. a dense reference map)
to score the held-out partition on (:class:`EvaluateSettings`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import glob
import inspect
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from .chips import Chips, sample_chips
from .errors import ConfigError, InputNotFoundError, LabelAlignmentError
from .io import open_raster
from .labels import open_color_mask
from .package import ClassInfo
from .splits import Splits, held_out, spatial_split
from .train import TrainConfig
from .vector import is_vector, rasterize_features, rasterize_labels

_VECTOR_OPTIONS = ("all_touched", "point_radius", "overlap", "layer")


@dataclass(frozen=True)
class DataSettings:
    """``[data]``: where the images and labels are and how to open them."""

    images: str
    labels: str
    bands: list[str] | None = None
    chunks: int = 2048
    pixel_grid: bool = False
    group: str | None = None
    ignore_colors: list[list[int]] = field(default_factory=list)
    ignore_index: int | None = None
    # vector labels (points, lines, polygons), as in rasterize_labels
    label_column: str = "class"
    all_touched: bool = False
    point_radius: float = 0.0
    overlap: Literal["last", "first", "smallest"] = "last"
    layer: str | int | None = None


@dataclass(frozen=True)
class EvaluateSettings:
    """``[evaluate]``: other labels (e.g. a dense reference map) that ``xlandcover evaluate``
    scores the held-out partition on, with the vector options of ``[data]``."""

    labels: str
    label_column: str = "class"
    all_touched: bool = False
    point_radius: float = 0.0
    overlap: Literal["last", "first", "smallest"] = "last"
    layer: str | int | None = None
    ignore_index: int | None = None


@dataclass(frozen=True)
class ClassSettings:
    """One ``[[classes]]`` table."""

    id: int
    name: str
    color: str = "#808080"
    mask_color: list[int] | None = None


@dataclass(frozen=True)
class ChipSettings:
    """``[chips]``: the arguments of :func:`~xlandcover.sample_chips` a file may set."""

    size: int | Literal["auto"] = "auto"
    stride: int | None = None
    max_nodata: float = 0.2
    min_labelled: int = 1


@dataclass(frozen=True)
class OutputSettings:
    """``[output]``: where training writes, and the model's description."""

    dir: str = "runs/xlandcover"
    description: str = ""


#: Each section and what defines its settings: a dataclass's fields or a function's keyword
#: arguments, so a setting added there is valid here without another list to keep in step.
SECTIONS: dict[str, Any] = {
    "data": DataSettings,
    "classes": list[ClassSettings],
    "chips": ChipSettings,
    "split": spatial_split,
    "train": TrainConfig,
    "output": OutputSettings,
    "evaluate": EvaluateSettings,
}
REQUIRED_SECTIONS = ("data",)


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
    """Read a TOML run configuration and check all of it before anything runs.

    Unknown sections and settings are errors naming the nearest valid name, values of the
    wrong type are errors naming the type expected (:class:`~xlandcover.errors.ConfigError`).
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"configuration {p} does not exist")
    try:
        with p.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p} is not valid TOML: {err}; fix the syntax there") from err
    check_config(raw, where=str(p))
    return RunConfig(p.resolve(), raw)


def check_config(raw: Mapping[str, Any], *, where: str = "the configuration") -> None:
    """Raise :class:`ConfigError` for unknown sections or settings and mistyped values."""
    _check_keys(raw, list(SECTIONS), where, "section", "", lambda k: f"[{k}]")
    for section in REQUIRED_SECTIONS:
        if section not in raw:
            raise ConfigError(f"{where} has no [{section}] section; see examples/configs/")
    for section, value in raw.items():
        problem = _check_value(value, SECTIONS[section], where, f"[{section}]")
        if problem:
            raise ConfigError(problem)


def _check_keys(
    table: Mapping[str, Any],
    valid: list[str],
    where: str,
    what: str,
    inside: str,
    show: Callable[[str], str],
) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean {show(close[0])}? " if close else ""
            raise ConfigError(
                f"{where}: unknown {what} {show(key)}{inside}; {hint}valid: "
                f"{', '.join(show(v) for v in valid)}"
            )


def _settings(spec: Any) -> tuple[dict[str, Any], list[str]]:
    """The settings a dataclass or function takes: name -> type, and the required names."""
    if dataclasses.is_dataclass(spec):
        hints = typing.get_type_hints(spec)
        fields = dataclasses.fields(spec)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return {f.name: hints.get(f.name, Any) for f in fields}, required
    hints = typing.get_type_hints(spec)
    params = list(inspect.signature(spec).parameters.values())[1:]  # after the data argument
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    return {p.name: hints.get(p.name, Any) for p in params}, required


def _check_table(value: Mapping[str, Any], spec: Any, where: str, name: str) -> str | None:
    settings, required = _settings(spec)
    _check_keys(value, list(settings), where, "setting", f" in {name}", str)
    missing = [k for k in required if k not in value]
    if missing:
        return f"{where}: {name} needs {', '.join(missing)}"
    for key, item in value.items():
        problem = _check_value(item, settings[key], where, f"{name} {key}")
        if problem:
            return problem
    return None


def _check_value(value: Any, hint: Any, where: str, name: str) -> str | None:
    """A description of why ``value`` does not fit the type ``hint``, or None if it does."""
    if dataclasses.is_dataclass(hint) or inspect.isfunction(hint):
        if isinstance(value, bool) and dataclasses.is_dataclass(hint):
            return None  # a dataclass setting may be switched on (defaults) or off
        if not isinstance(value, Mapping):
            return f"{where}: {name} must be a table of settings, not {value!r}"
        return _check_table(value, hint, where, name)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple, collections.abc.Sequence) and isinstance(value, list):
        item = args[0] if args else Any
        for i, v in enumerate(value):
            problem = _check_value(v, item, where, f"{name}[{i}]")
            if problem:
                return problem
        return None
    if _fits(value, hint, where, name):
        return None
    return f"{where}: {name} = {value!r} should be {_describe(hint)}"


def _fits(value: Any, hint: Any, where: str, name: str) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_value(value, arm, where, name) is None for arm in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        item = args[0] if args else Any
        return all(_check_value(v, item, where, name) is None for v in value)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            return False
        item = args[1] if len(args) == 2 else Any
        return all(_check_value(v, item, where, name) is None for v in value.values())
    return True  # a type TOML cannot express: left to the code that uses it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return "a list" if not args else f"a list of: {_describe(args[0])}"
    if origin in (dict, collections.abc.Mapping):
        return "a table"
    if dataclasses.is_dataclass(hint):
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _group(path: Path, pattern: str) -> str:
    m = re.search(pattern, str(path))
    if m is None:
        raise ValueError(f"group pattern {pattern!r} does not match {path}")
    return m.group(0)
