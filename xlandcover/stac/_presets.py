"""STAC presets: what a collection's assets are called, how to scale them, what to mask.

A preset is a small frozen dataclass, not string soup. ``load_stac(..., preset="naip")`` looks
built-in presets up by name; define your own by constructing :class:`StacPreset` (and, to use
it by name, :func:`register_preset`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingAssetError, PresetError, UnknownPresetError
from ._composite import COMPOSITES

Properties = Mapping[str, Any]


@dataclass(frozen=True)
class Band:
    """One band of a collection.

    Parameters
    ----------
    name
        The band's name in xlandcover's output (``band`` coordinate), e.g. ``"red"``.
    assets
        Asset keys that hold this band, tried in order; catalogs name them differently
        (Earth Search ``"red"``, Planetary Computer ``"B04"``). When none is present, the asset
        whose ``eo:bands`` has ``common_name == name`` (or ``name`` in ``aliases``) is used.
    aliases
        Other names a model package may use for this band (``"B04"``, ``"B4"``).
    index
        1-based band index inside a multi-band asset (NAIP's one 4-band ``image``);
        ``None`` for single-band assets.
    """

    name: str
    assets: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    index: int | None = None

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class PixelMask:
    """Mask pixels by a classification asset, e.g. Sentinel-2's scene classification (SCL).

    Parameters
    ----------
    assets
        Asset keys of the classification layer, tried in order.
    values
        Classes that become NaN in every band.
    """

    assets: tuple[str, ...]
    values: frozenset[int]


def _no_offset(properties: Properties) -> float:
    return 0.0


@dataclass(frozen=True)
class StacPreset:
    """How to turn one STAC collection into model-ready bands.

    Parameters
    ----------
    name
        Name to look the preset up by (``load_stac(preset=name)``).
    collection
        STAC collection id searched by default.
    bands
        Every band the preset knows.
    default_bands
        Bands loaded when neither ``bands=`` nor ``model=`` says which.
    resolution
        Default target resolution in CRS units; ``None`` takes the items' native pixel size.
    nodata
        Value of nodata pixels in the files (``None``: the files' own nodata only).
    scale
        Multiplier from stored values to physical values (e.g. ``1e-4`` to reflectance).
    offset
        ``offset(item_properties)`` gives the additive offset in physical units for one item,
        so offsets that changed over a collection's life (Sentinel-2's processing baseline
        04.00) are applied per item.
    mask
        Classification layer and classes masked to NaN when ``load_stac(mask=True)``.
    cloud_cover
        Item property with cloud cover in percent (for ``max_cloud`` and least-cloudy
        ordering); ``None`` when the collection has none.
    composite
        Default temporal composite: ``"median"``, ``"first"`` (least cloudy, else newest,
        first) or one added with :func:`~xlandcover.stac.register_composite`.
    """

    name: str
    collection: str
    bands: tuple[Band, ...]
    default_bands: tuple[str, ...]
    resolution: float | None = None
    nodata: float | None = None
    scale: float = 1.0
    offset: Callable[[Properties], float] = field(default=_no_offset)
    mask: PixelMask | None = None
    cloud_cover: str | None = "eo:cloud_cover"
    composite: str = "median"

    def __post_init__(self) -> None:
        known = {n for b in self.bands for n in b.names()}
        missing = [b for b in self.default_bands if b not in known]
        if missing:
            raise PresetError(f"preset {self.name!r}: default bands {missing} are not in bands")
        if self.composite not in COMPOSITES:
            raise PresetError(
                f"preset {self.name!r}: composite must be one of {sorted(COMPOSITES)}"
            )

    def band(self, name: str) -> Band:
        """The band called ``name`` (or one of its aliases), case-insensitively."""
        for b in self.bands:
            if name.lower() in (n.lower() for n in b.names()):
                return b
        known = ", ".join(b.name for b in self.bands)
        raise MissingAssetError(
            f"preset {self.name!r} has no band {name!r}; its bands are {known}. Name the "
            "model's bands after these (or their aliases), or define your own StacPreset"
        )


def sentinel2_boa_offset(properties: Properties) -> float:
    """Additive reflectance offset of one Sentinel-2 L2A item: -0.1 from baseline 04.00 on.

    ESA added ``BOA_ADD_OFFSET = -1000`` (digital numbers) with processing baseline 04.00
    (products from 2022-01-25): reflectance = DN / 10000 - 0.1 from then on, DN / 10000
    before. The item's ``s2:processing_baseline`` decides, because it states what ESA
    produced. Earth Search's ``earthsearch:boa_offset_applied`` flag is not trusted: it is
    known to be wrong on some items (Element84/earth-search #9, #66, #71); its COGs hold the
    original digital numbers either way. Without a baseline, the acquisition date decides.
    """
    baseline = properties.get("s2:processing_baseline")
    if baseline is not None:
        major, _, minor = str(baseline).partition(".")
        return -0.1 if (int(major), int(minor or 0)) >= (4, 0) else 0.0
    when = str(properties.get("datetime") or properties.get("start_datetime") or "")
    return -0.1 if when[:10] >= "2022-01-25" else 0.0


_S2_BANDS = (
    Band("coastal", ("coastal", "B01"), ("B01", "B1")),
    Band("blue", ("blue", "B02"), ("B02", "B2")),
    Band("green", ("green", "B03"), ("B03", "B3")),
    Band("red", ("red", "B04"), ("B04", "B4")),
    Band("rededge1", ("rededge1", "B05"), ("B05", "B5")),
    Band("rededge2", ("rededge2", "B06"), ("B06", "B6")),
    Band("rededge3", ("rededge3", "B07"), ("B07", "B7")),
    Band("nir", ("nir", "B08"), ("B08", "B8")),
    Band("nir08", ("nir08", "B8A"), ("B8A", "rededge4")),
    Band("nir09", ("nir09", "B09"), ("B09", "B9")),
    Band("swir16", ("swir16", "B11"), ("B11", "swir1")),
    Band("swir22", ("swir22", "B12"), ("B12", "swir2")),
)

#: Sentinel-2 scene classification classes masked by default: no data (0), saturated or
#: defective (1), cloud shadow (3), cloud medium (8) and high (9) probability, thin cirrus
#: (10), snow and ice (11). Dark areas (2) stay: they are often real terrain.
SCL_MASKED = frozenset({0, 1, 3, 8, 9, 10, 11})

SENTINEL2_L2A = StacPreset(
    name="sentinel-2-l2a",
    collection="sentinel-2-l2a",
    bands=_S2_BANDS,
    default_bands=("blue", "green", "red", "nir"),
    resolution=10.0,
    nodata=0,
    scale=1e-4,
    offset=sentinel2_boa_offset,
    mask=PixelMask(("scl", "SCL"), SCL_MASKED),
    cloud_cover="eo:cloud_cover",
    composite="median",
)

NAIP = StacPreset(
    name="naip",
    collection="naip",
    bands=(
        Band("red", ("image",), ("Red", "R"), index=1),
        Band("green", ("image",), ("Green", "G"), index=2),
        Band("blue", ("image",), ("Blue", "B"), index=3),
        Band("nir", ("image",), ("NIR", "N"), index=4),
    ),
    default_bands=("red", "green", "blue", "nir"),
    resolution=None,
    nodata=None,
    cloud_cover=None,
    composite="first",
)

_PRESETS: dict[str, StacPreset] = {p.name: p for p in (SENTINEL2_L2A, NAIP)}


def register_preset(preset: StacPreset, *, replace: bool = False) -> None:
    """Make ``preset`` available by name to ``load_stac(preset=...)`` and the CLI."""
    if preset.name in _PRESETS and not replace:
        raise PresetError(f"a preset named {preset.name!r} exists; pass replace=True")
    _PRESETS[preset.name] = preset


def presets() -> tuple[str, ...]:
    """Names of the registered presets."""
    return tuple(sorted(_PRESETS))


def get_preset(preset: str | StacPreset) -> StacPreset:
    """The preset called ``preset`` (a :class:`StacPreset` is returned as is)."""
    if isinstance(preset, StacPreset):
        return preset
    try:
        return _PRESETS[preset]
    except KeyError:
        raise UnknownPresetError(
            f"unknown STAC preset {preset!r}; the presets are {', '.join(presets())}. "
            "Define your own with xlandcover.StacPreset(...) and register_preset()"
        ) from None
