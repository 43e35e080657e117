"""Self-describing model packages: safetensors weights plus JSON metadata, in one file.

A package (``*.xlc``) is a plain safetensors file whose header metadata holds, under the key
``"xlandcover"``, a JSON document: the architecture and its arguments (any smp architecture and
encoder by name), the input bands, per-band normalisation, the classes (id, name, colour), the
recommended window and overlap, the input nodata value and the format version. Loading never
executes pickled code, and a digest of the weights detects corruption.

torch and smp are imported only by the functions that build or take modules.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._files import atomic_write, check_overwrite
from ..errors import InputNotFoundError, ModelPackageError

if TYPE_CHECKING:
    import torch

FORMAT = "xlandcover-model"
FORMAT_VERSION = 1
_META_KEY = "xlandcover"
#: Header key beside the metadata: the encoder's output stride (see ModelPackage.size_multiple);
#: outside the metadata JSON, so packages that lack it read as before and older readers
#: ignore it.
_MULTIPLE_KEY = "xlandcover_size_multiple"
NODATA_LABEL = 255
#: Deepest nesting of lists and objects accepted in package metadata.
MAX_JSON_DEPTH = 32
#: ``extra`` key of the per-band range of the training data (optional; older packages lack it,
#: and older readers ignore it, so the format version stays 1).
INPUT_RANGE_KEY = "input_range"


@dataclass(frozen=True)
class ClassInfo:
    """One output class: the id written to label rasters, a name and an ``#rrggbb`` colour."""

    id: int
    name: str
    color: str = "#808080"

    def __post_init__(self) -> None:
        if not 0 <= self.id < NODATA_LABEL:
            raise ModelPackageError(
                f"class id {self.id} ({self.name!r}) is outside 0..254; 255 is reserved for "
                "nodata in label rasters. Renumber the class."
            )
        c = self.color
        if not (
            len(c) == 7 and c[0] == "#" and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])
        ):
            raise ModelPackageError(
                f"colour {c!r} of class {self.name!r} is not of the form '#rrggbb'"
            )

    @property
    def rgb(self) -> tuple[int, int, int]:
        return hex_to_rgb(self.color)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``."""
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


@dataclass(frozen=True)
class PackageMetadata:
    """Everything a package says about its model, besides the weights."""

    architecture: str
    arch_kwargs: dict[str, Any]
    bands: tuple[str, ...]
    classes: tuple[ClassInfo, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    window: int
    overlap: int
    nodata: float | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        _check_fields(self)
        n = len(self.bands)
        if n == 0:
            raise ModelPackageError("a model package needs at least one input band")
        if len(set(self.bands)) != n:
            raise ModelPackageError(f"band names must be unique, got {list(self.bands)}")
        if len(self.mean) != n or len(self.std) != n:
            raise ModelPackageError(
                f"normalisation has {len(self.mean)} means and {len(self.std)} stds for {n} "
                "bands; give one mean and one std per band"
            )
        if any(not s > 0 for s in self.std):
            raise ModelPackageError(f"normalisation stds must be > 0, got {list(self.std)}")
        calibration = self.extra.get("calibration")
        if isinstance(calibration, Mapping) and calibration.get("temperature") is not None:
            t = calibration["temperature"]
            if not isinstance(t, int | float) or not 0 < float(t) < float("inf"):
                raise ModelPackageError(
                    f"calibration temperature must be a positive number, got {t!r}; re-save "
                    "the model with save_model(..., temperature=T)"
                )
        if not self.classes:
            raise ModelPackageError("a model package needs at least one class")
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise ModelPackageError(f"class ids must be unique, got {ids}")
        if self.window < 1 or not 0 <= self.overlap < self.window:
            raise ModelPackageError(
                f"window {self.window} / overlap {self.overlap}: need window > 0 and "
                "0 <= overlap < window"
            )
        _check_arch_kwargs(self)
        _ = self.input_range  # validates it

    @property
    def input_range(self) -> tuple[tuple[float, float], ...] | None:
        """Per-band ``(low, high)`` of the training data, if the package records it."""
        value = self.extra.get(INPUT_RANGE_KEY)
        if value is None:
            return None
        ok = isinstance(value, list | tuple) and len(value) == len(self.bands)
        ok = ok and all(
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(_finite(v) for v in pair)
            and pair[0] <= pair[1]
            for pair in value
        )
        if not ok:
            raise ModelPackageError(
                f"the package's {INPUT_RANGE_KEY} must be one [low, high] pair of finite "
                f"numbers per band ({len(self.bands)}), got {value!r}; re-save the model"
            )
        return tuple((float(lo), float(hi)) for lo, hi in value)

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    @property
    def temperature(self) -> float:
        """Softmax temperature predict applies to the logits (``extra["calibration"]``); 1.0
        for packages without calibration."""
        calibration = self.extra.get("calibration")
        if not isinstance(calibration, Mapping) or calibration.get("temperature") is None:
            return 1.0
        return float(calibration["temperature"])

    @property
    def encoder(self) -> str | None:
        """The encoder's name (smp's ``arch_kwargs["encoder_name"]``), as ``TrainConfig``
        calls it."""
        name = self.arch_kwargs.get("encoder_name")
        return None if name is None else str(name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def to_json(self) -> str:
        d = asdict(self)
        d["format"] = FORMAT
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PackageMetadata:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelPackageError(f"package metadata is not valid JSON ({err})") from err
        except RecursionError as err:
            raise ModelPackageError(_too_deep()) from err
        if _depth(d) > MAX_JSON_DEPTH:
            raise ModelPackageError(_too_deep())
        if not isinstance(d, dict) or d.pop("format", None) != FORMAT:
            raise ModelPackageError("this safetensors file is not an xlandcover model package")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelPackageError(
                f"package format version {version} is not supported by this xlandcover "
                f"(reads version {FORMAT_VERSION}); upgrade xlandcover or re-save the model"
            )
        try:
            d["classes"] = tuple(ClassInfo(**c) for c in d["classes"])
            for key in ("bands", "mean", "std"):
                d[key] = tuple(d[key])
            return cls(**d)
        except (KeyError, TypeError, AttributeError) as err:
            raise ModelPackageError(f"package metadata is incomplete or malformed ({err})") from err


def _too_deep() -> str:
    return (
        f"package metadata is nested deeper than {MAX_JSON_DEPTH} levels, which no "
        "xlandcover package is; the file is corrupt or not a model package"
    )


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(meta: PackageMetadata) -> None:
    """Every field has the type the rest of xlandcover relies on (metadata read from files
    may hold anything): a clear error now instead of a failure in the middle of a job."""
    problems = []
    if not isinstance(meta.architecture, str) or not meta.architecture:
        problems.append(f"architecture must be a name, got {meta.architecture!r}")
    if not isinstance(meta.arch_kwargs, dict):
        problems.append(f"arch_kwargs must be a mapping, got {meta.arch_kwargs!r}")
    if not all(isinstance(b, str) and b for b in meta.bands):
        problems.append(f"bands must be non-empty names, got {list(meta.bands)}")
    for key in ("mean", "std"):
        values = getattr(meta, key)
        if not all(_finite(v) for v in values):
            problems.append(f"{key} must be finite numbers, got {list(values)}")
    for key in ("window", "overlap", "format_version"):
        value = getattr(meta, key)
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{key} must be an integer, got {value!r}")
    if meta.nodata is not None and not (
        isinstance(meta.nodata, int | float) and not isinstance(meta.nodata, bool)
    ):
        problems.append(f"nodata must be a number or null, got {meta.nodata!r}")
    if not isinstance(meta.description, str) or not isinstance(meta.extra, dict):
        problems.append("description must be text and extra a mapping")
    elif _depth(meta.extra) > MAX_JSON_DEPTH - 2:
        problems.append(f"extra is nested deeper than {MAX_JSON_DEPTH - 2} levels")
    if problems:
        raise ModelPackageError(
            "the package's metadata is invalid: " + "; ".join(problems) + ". Re-save the "
            "model with xlandcover.save_model()"
        )


def _check_arch_kwargs(meta: PackageMetadata) -> None:
    """The architecture's arguments agree with the bands and classes, and name no download."""
    kwargs = meta.arch_kwargs
    channels = kwargs.get("in_channels", 3)  # smp's defaults
    outputs = kwargs.get("classes", 1)
    if channels != len(meta.bands):
        raise ModelPackageError(
            f"the model has in_channels={channels} but {len(meta.bands)} bands "
            f"{list(meta.bands)} are listed; metadata and model disagree: give one band name "
            "per input channel, or re-save the model with save_model()"
        )
    if outputs != len(meta.classes):
        raise ModelPackageError(
            f"the model has classes={outputs} but {len(meta.classes)} classes are listed; "
            "metadata and model disagree: give one class per output channel, or re-save the "
            "model with save_model()"
        )
    encoder = kwargs.get("encoder_name")
    if encoder is not None and (not isinstance(encoder, str) or ":" in encoder):
        raise ModelPackageError(
            f"the package's encoder {encoder!r} is not a local encoder name (a name with "
            "'hf-hub:' or another 'scheme:' would be fetched from the network, which loading "
            "a package never does); use a package whose encoder is an smp name or 'tu-' timm "
            "architecture"
        )


@dataclass(frozen=True, eq=False)
class ModelPackage:
    """A loaded model package: metadata plus the package's bytes (weights inside).

    The bytes travel to Dask workers once; ``sha256`` names the package in per-process caches.
    It is a digest of the weights and the metadata, not of the file's bytes (safetensors may
    order header keys differently from one save to the next), so equal models share it.
    Build the torch module with :meth:`build_module`.
    """

    metadata: PackageMetadata
    blob: bytes = field(repr=False)
    sha256: str
    path: Path | None = None
    #: Side of model inputs must be a multiple of this (the encoder's output stride), as
    #: recorded when the package was saved; None in packages saved before it was recorded
    #: (:func:`xlandcover.runtime.size_multiple` then derives it from the architecture).
    size_multiple: int | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        return self.metadata.bands

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        return self.metadata.classes

    def _repr_html_(self) -> str:
        """Jupyter view: architecture, bands, window, classes with colour swatches, scores."""
        from html import escape

        m = self.metadata
        encoder = m.encoder or ""
        scores = m.extra.get("test_scores", {}).get("model", {})
        iou = scores.get("iou", {}) if isinstance(scores, dict) else {}
        rows = "".join(
            f"<tr><td>{c.id}</td><td><span style='display:inline-block;width:1em;height:1em;"
            f"background:{c.color};border:1px solid #444'></span> {escape(c.name)}</td>"
            f"<td>{'' if iou.get(c.name) is None else f'{iou[c.name]:.3f}'}</td></tr>"
            for c in m.classes
        )
        summary = (
            f"<br>test mIoU {scores['miou']:.3f}, pixel accuracy {scores['pixel_accuracy']:.3f}"
            if isinstance(scores, dict) and scores.get("miou") is not None
            else ""
        )
        return (
            f"<div><b>xlandcover model</b> {escape(m.architecture)}({escape(str(encoder))})"
            f"{' — ' + escape(m.description) if m.description else ''}<br>"
            f"bands: {escape(', '.join(m.bands))}; window {m.window}, overlap {m.overlap}"
            f"{summary}<table><tr><th>id</th><th>class</th><th>test IoU</th></tr>{rows}"
            "</table></div>"
        )

    def build_module(self, device: str = "cpu") -> torch.nn.Module:
        """Instantiate the architecture and load the weights (eval mode, on ``device``)."""
        from safetensors.torch import load as load_tensors

        module = build_architecture(self.metadata.architecture, self.metadata.arch_kwargs)
        state = load_tensors(self.blob)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelPackageError(
                f"the weights do not fit {self.metadata.architecture}"
                f"({self.metadata.arch_kwargs}): {str(err).splitlines()[0]}. The package's "
                "metadata and weights disagree; re-save the model with save_model()."
            ) from err
        return module.to(device).eval()


#: Architectures of your own, by name (:func:`register_architecture`); smp's need no entry.
ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {}


def register_architecture(
    name: str, builder: Callable[..., torch.nn.Module], *, replace: bool = False
) -> None:
    """Make ``builder`` available as ``train(..., architecture=name)`` and to packages that
    name it: ``builder(**arch_kwargs)`` (``encoder_name``, ``in_channels``, ``classes``, ...)
    returns the module; give it an ``encoder.output_stride`` when windows must be a multiple
    of it. A package stores the name only: it loads where the same registration ran."""
    if known_architecture(name) and not replace:
        raise ModelPackageError(f"an architecture named {name!r} exists; pass replace=True")
    ARCHITECTURES[name.lower()] = builder


def known_architecture(name: str) -> bool:
    """Registered here, or one of smp's."""
    from .._torch import smp

    return name.lower() in ARCHITECTURES or name.lower() in smp.MODEL_ARCHITECTURES_MAPPING


def build_architecture(architecture: str, arch_kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """An smp model by architecture name, never downloading weights (nor timm configs).

    ``arch_kwargs`` are smp's (``encoder_name``, ``in_channels``, ``classes``, ...), plus our
    ``pixel_branch``: the width of a per-pixel 1x1-convolution branch whose logits are added
    to the model's (:class:`xlandcover.model._nets.PixelBranch`); 0 or absent: none; and
    ``indices``: ``{"names": [...], "pairs": [[a, b], ...], "mean": [...], "std": [...]}``,
    normalised-difference indices of input bands ``a`` and ``b`` the network computes from its
    de-normalised input and appends as channels (:class:`xlandcover.model._nets.SpectralIndices`).
    """
    from .._torch import smp

    kwargs = {**arch_kwargs, "encoder_weights": None}
    width = int(kwargs.pop("pixel_branch", 0) or 0)
    indices = kwargs.pop("indices", None) or {}
    builder = ARCHITECTURES.get(architecture.lower())
    if builder is None and architecture.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        names = sorted(smp.MODEL_ARCHITECTURES_MAPPING)
        mine = f", registered: {sorted(ARCHITECTURES)}" if ARCHITECTURES else ""
        raise ModelPackageError(
            f"unknown architecture {architecture!r}; smp provides {names}{mine} (add your own "
            "with xlandcover.model.register_architecture)"
        )
    encoder = kwargs.get("encoder_name")
    if encoder is not None and builder is None:
        _check_encoder(str(encoder))
    channels = int(kwargs.get("in_channels", 3))
    pairs = [tuple(p) for p in indices.get("pairs", [])]
    if pairs:
        kwargs["in_channels"] = channels + len(pairs)
    try:
        net = builder(**kwargs) if builder else smp.create_model(architecture, **kwargs)
        if width:
            from ._nets import PixelBranch

            net = PixelBranch(net, int(kwargs["in_channels"]), int(kwargs.get("classes", 1)),
                              width)  # fmt: skip
        if pairs:
            from ._nets import SpectralIndices

            net = SpectralIndices(net, pairs, list(indices["mean"]), list(indices["std"]))
        return net
    except (KeyError, TypeError, ValueError) as err:
        raise ModelPackageError(f"cannot build {architecture} with {dict(kwargs)}: {err}") from err


def _check_encoder(name: str) -> None:
    """An encoder smp or timm knows locally; anything else would fail or reach the network."""
    import timm

    from .._torch import smp

    if ":" in name:
        raise ModelPackageError(
            f"encoder {name!r} names a remote or file source; packages use local encoder names only"
        )
    known = name[3:] and timm.is_model(name[3:]) if name.startswith("tu-") else None
    if known or name in smp.encoders.get_encoder_names():
        return
    close = difflib.get_close_matches(name, smp.encoders.get_encoder_names(), n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise ModelPackageError(
        f"unknown encoder {name!r}: neither an smp encoder nor 'tu-' plus a timm "
        f"architecture{hint} (the architecture itself is known)"
    )


def _weights_digest(state: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        a = np.ascontiguousarray(state[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _as_classes(classes: Sequence[ClassInfo | Mapping[str, Any]]) -> tuple[ClassInfo, ...]:
    return tuple(c if isinstance(c, ClassInfo) else ClassInfo(**c) for c in classes)


def save_model(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    bands: Sequence[str],
    classes: Sequence[ClassInfo | Mapping[str, Any]],
    normalization: Mapping[str, Sequence[float]] | None = None,
    window: int = 512,
    overlap: int | None = None,
    nodata: float | None = None,
    architecture: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    description: str = "",
    extra: Mapping[str, Any] | None = None,
    input_range: Sequence[Sequence[float]] | None = None,
    overwrite: bool = False,
    temperature: float | None = None,
) -> ModelPackage:
    """Write ``model`` and its metadata to a single-file package and return it loaded.

    Parameters
    ----------
    model
        An smp model (its architecture and arguments are read from it), or any module built
        by ``smp.create_model(architecture, **arch_kwargs)`` when those are given.
    path
        Output file, conventionally ``*.xlc``.
    bands
        Input band names, in the order the model expects them.
    classes
        One entry per model output channel, in channel order: ``ClassInfo`` or mappings with
        ``id``, ``name`` and optionally ``color`` (``#rrggbb``).
    normalization
        ``{"mean": [...], "std": [...]}`` per band, applied as ``(x - mean) / std``.
        ``None`` means no normalisation.
    window, overlap
        Recommended sliding-window size and overlap in pixels (overlap defaults to window/8).
    nodata
        Input value meaning "no data" when the image does not say it itself.
    temperature
        Softmax temperature fitted on held-out data
        (:func:`xlandcover.evaluation.fit_temperature`), stored as
        ``extra["calibration"]["temperature"]`` and applied by predict. Default: none (1.0).
    input_range
        Per band, the ``(low, high)`` values of the training data (e.g. from
        :func:`band_range`); ``predict`` warns when an image lies far outside them.

    Examples
    --------
    >>> save_model(net, "landcover.xlc", bands=["red", "green", "blue"],
    ...            classes=[{"id": 1, "name": "water", "color": "#1f78b4"}])  # doctest: +SKIP
    """
    path = Path(path)
    check_overwrite(path, overwrite=overwrite)
    blob = package_model(
        model,
        bands=bands,
        classes=classes,
        normalization=normalization,
        window=window,
        overlap=overlap,
        nodata=nodata,
        architecture=architecture,
        arch_kwargs=arch_kwargs,
        description=description,
        extra=extra,
        temperature=temperature,
        input_range=input_range,
    ).blob
    atomic_write(path, lambda tmp: tmp.write_bytes(blob))
    return package_from_bytes(blob, path=path)


def package_model(
    model: torch.nn.Module,
    *,
    bands: Sequence[str],
    classes: Sequence[ClassInfo | Mapping[str, Any]],
    normalization: Mapping[str, Sequence[float]] | None = None,
    window: int = 512,
    overlap: int | None = None,
    nodata: float | None = None,
    architecture: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    description: str = "",
    extra: Mapping[str, Any] | None = None,
    temperature: float | None = None,
    input_range: Sequence[Sequence[float]] | None = None,
) -> ModelPackage:
    """The package :func:`save_model` would write, held in memory (``path`` is None)."""
    from safetensors.numpy import save as save_tensors

    if architecture is None:
        config = getattr(model, "config", None)
        if not isinstance(config, Mapping):
            raise ModelPackageError(
                f"cannot tell the architecture of {type(model).__name__}; pass "
                "architecture= and arch_kwargs= (the arguments of smp.create_model)"
            )
        architecture = type(model).__name__
        arch_kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (arch_kwargs or {}).items()}
    kwargs["encoder_weights"] = None
    n_bands = len(bands)
    norm = normalization or {"mean": [0.0] * n_bands, "std": [1.0] * n_bands}
    meta = PackageMetadata(
        architecture=architecture,
        arch_kwargs=kwargs,
        bands=tuple(str(b) for b in bands),
        classes=_as_classes(classes),
        mean=tuple(float(v) for v in norm["mean"]),
        std=tuple(float(v) for v in norm["std"]),
        window=int(window),
        overlap=int(window // 8 if overlap is None else overlap),
        nodata=None if nodata is None else float(nodata),
        description=description,
        extra=_with_calibration(_with_range(extra, input_range), temperature),
    )
    for key in ("in_channels", "classes"):
        want = n_bands if key == "in_channels" else len(meta.classes)
        if key in kwargs and kwargs[key] != want:
            raise ModelPackageError(
                f"the model has {key}={kwargs[key]} but {want} "
                f"{'bands' if key == 'in_channels' else 'classes'} were given"
            )
    state = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    header = {_META_KEY: meta.to_json(), "weights_sha256": _weights_digest(state)}
    header[_MULTIPLE_KEY] = str(output_stride(model))
    return package_from_bytes(save_tensors(state, metadata=header))


def output_stride(module: torch.nn.Module) -> int:
    """The multiple model inputs' sides must have: the encoder's output stride (1 for modules
    without an smp encoder). Windows are kept to it even where smp would accept other sizes
    (its Unet then interpolates in the decoder, misaligning skip connections)."""
    encoder = getattr(module, "encoder", None)
    return int(getattr(encoder, "output_stride", 1) or 1)


def _with_calibration(extra: dict[str, Any], temperature: float | None) -> dict[str, Any]:
    if temperature is None:
        return extra
    calibration = dict(extra.get("calibration") or {})
    calibration["temperature"] = float(temperature)
    return {**extra, "calibration": calibration}


def with_temperature(
    package: ModelPackage,
    temperature: float,
    path: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    **calibration: Any,
) -> ModelPackage:
    """A copy of ``package`` whose predictions use softmax ``temperature``; the weights are
    unchanged. Extra keyword arguments (e.g. ``ece_before=0.08``) are recorded beside it in
    ``extra["calibration"]``. Written to ``path`` when given."""
    extra = _with_calibration(dict(package.metadata.extra), temperature)
    extra["calibration"].update(calibration)
    return with_metadata(package, path, overwrite=overwrite, extra=extra)


def with_metadata(
    package: ModelPackage,
    path: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    **changes: Any,
) -> ModelPackage:
    """A copy of ``package`` with metadata fields replaced (``description=``, ``extra=``,
    ...); the weights, the temperature, the input range and the size multiple are kept unless
    changed. Written to ``path`` when given."""
    from safetensors.numpy import load as load_tensors
    from safetensors.numpy import save as save_tensors

    new_meta = PackageMetadata(**{**_fields(package.metadata), **changes})
    state = load_tensors(package.blob)
    header = {_META_KEY: new_meta.to_json(), "weights_sha256": _weights_digest(state)}
    if package.size_multiple is not None:
        header[_MULTIPLE_KEY] = str(package.size_multiple)
    blob = save_tensors(state, metadata=header)
    if path is None:
        return package_from_bytes(blob)
    target = Path(path)
    check_overwrite(target, overwrite=overwrite)
    atomic_write(target, lambda tmp: tmp.write_bytes(blob))
    return package_from_bytes(blob, path=target)


def _fields(meta: PackageMetadata) -> dict[str, Any]:
    return {f: getattr(meta, f) for f in meta.__dataclass_fields__}


def _with_range(
    extra: Mapping[str, Any] | None, input_range: Sequence[Sequence[float]] | None
) -> dict[str, Any]:
    out = dict(extra or {})
    if input_range is not None:
        out[INPUT_RANGE_KEY] = [[float(lo), float(hi)] for lo, hi in input_range]
    return out


class _ChipsLike(Protocol):
    """What :func:`band_range` reads of :class:`~xlandcover.training.Chips`."""

    @property
    def n_bands(self) -> int: ...

    def __len__(self) -> int: ...

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def band_range(
    chips: _ChipsLike,
    *,
    seed: int = 0,
    max_chips: int = 64,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> list[tuple[float, float]]:
    """Per-band ``(low, high)`` percentiles of the valid pixels of (up to) ``max_chips`` chips,
    for ``save_model(..., input_range=...)``.

    Examples
    --------
    >>> save_model(net, "m.xlc", ..., input_range=band_range(splits.train))  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(chips))[:max_chips]
    parts = []
    for i in rows:
        image, _, valid = chips.read(int(i))
        parts.append(image[:, valid].astype(np.float64))
    px = np.concatenate(parts, axis=1) if parts else np.empty((chips.n_bands, 0))
    if px.shape[1] == 0:
        raise ModelPackageError("the chips hold no valid pixel to take a band range from")
    low, high = np.percentile(px, percentiles, axis=1)
    return [(float(lo), float(hi)) for lo, hi in zip(low, high, strict=True)]


def package_from_bytes(blob: bytes, *, path: Path | None = None) -> ModelPackage:
    """Parse and verify a package held in memory."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_tensors

    where = str(path) if path else "the package bytes"
    try:
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len]) if 8 + header_len <= len(blob) else None
        state = load_tensors(blob)
    except RecursionError as err:
        raise ModelPackageError(f"{where}: {_too_deep()}") from err
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ModelPackageError(
            f"{where} is not a readable model package (corrupt or truncated: {err}); "
            "copy it again or re-save it with xlandcover.save_model()"
        ) from err
    meta_header = (header or {}).get("__metadata__") or {}
    if _META_KEY not in meta_header:
        raise ModelPackageError(
            f"{where} is a safetensors file without xlandcover metadata; create packages "
            "with xlandcover.save_model()"
        )
    meta = PackageMetadata.from_json(meta_header[_META_KEY])
    _check_weights(meta, state, where)
    weights_digest = _weights_digest(state)
    if weights_digest != meta_header.get("weights_sha256"):
        raise ModelPackageError(
            f"the weights in {where} do not match their recorded digest: the file is "
            "corrupt; copy it again or re-save it"
        )
    multiple = meta_header.get(_MULTIPLE_KEY)
    return ModelPackage(
        metadata=meta,
        blob=blob,
        sha256=hashlib.sha256((weights_digest + meta.to_json()).encode()).hexdigest(),
        path=path,
        size_multiple=int(multiple) if multiple and str(multiple).isdigit() else None,
    )


def _check_weights(meta: PackageMetadata, state: Mapping[str, np.ndarray], where: str) -> None:
    """The weights' output layer has one channel per class (smp's ``segmentation_head``, also
    inside our wrappers, whose smp model is ``base``)."""
    head = [
        a
        for k, a in state.items()
        if k.removeprefix("base.").removeprefix("base.").startswith("segmentation_head.")
        and k.endswith("weight")
    ]
    if head and len(head) == 1 and head[0].ndim == 4 and head[0].shape[0] != len(meta.classes):
        raise ModelPackageError(
            f"the weights in {where} have {head[0].shape[0]} output channels but the metadata "
            f"lists {len(meta.classes)} classes; metadata and weights disagree, re-save the "
            "model with save_model()"
        )


def load_model(path: str | os.PathLike[str]) -> ModelPackage:
    """Read and verify a model package; no pickled code is executed.

    Examples
    --------
    >>> model = load_model("landcover.xlc")  # doctest: +SKIP
    >>> model.bands, [c.name for c in model.classes]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"model package {path} does not exist; check the path")
    return package_from_bytes(path.read_bytes(), path=path)
