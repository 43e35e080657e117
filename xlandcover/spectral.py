"""Spectral indices a model computes from its input bands (NDVI, NDWI, ...).

An index here is a normalised difference ``(a - b) / (a + b)`` of two input bands, computed
inside the network from the de-normalised input (:class:`xlandcover._nets.SpectralIndices`),
so ``predict`` computes exactly what training saw, from the same bands, with no extra
preprocessing step to keep in step. Bands are found by their STAC common names (``red``,
``nir``, ``swir16``, ...) or by Sentinel-2 band names (``B04``/``B4``, ``B08``, ``B11``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import BandMismatchError

#: Normalised-difference indices by name: (band a, band b) as STAC common names.
INDICES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),  # vegetation (Rouse et al. 1974)
    "ndwi": ("green", "nir"),  # open water (McFeeters 1996)
    "mndwi": ("green", "swir16"),  # open water, built-up suppressed (Xu 2006)
    "ndbi": ("swir16", "nir"),  # built-up (Zha et al. 2003)
    "nbr": ("nir", "swir22"),  # burns, moisture (Key & Benson 2006)
}

#: Sentinel-2 band names of the common names above (``B8A`` tells Sentinel-2 apart).
_SENTINEL2 = {
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
    "swir16": "B11",
    "swir22": "B12",
}


def resolve_indices(
    bands: Sequence[str], indices: Sequence[str] | Mapping[str, Sequence[str]]
) -> list[tuple[str, int, int]]:
    """``(name, index of band a, index of band b)`` for each index, from the band names.

    ``indices`` are names of :data:`INDICES`, or ``{name: (band_a, band_b)}`` with the
    image's own band names.
    """
    pairs = (
        {str(k): (str(v[0]), str(v[1])) for k, v in indices.items()}
        if isinstance(indices, Mapping)
        else {str(n): _known(str(n)) for n in indices}
    )
    out = []
    for name, (a, b) in pairs.items():
        ia, ib = _find(bands, a), _find(bands, b)
        if ia is None or ib is None:
            raise BandMismatchError(
                f"index {name!r} needs bands {a!r} and {b!r}, but the bands are {list(bands)}; "
                f"name the bands (common names such as 'red', 'nir') or give the pair: "
                f"indices={{{name!r}: ('<band a>', '<band b>')}}"
            )
        out.append((name, ia, ib))
    return out


def available_indices(bands: Sequence[str]) -> list[str]:
    """The :data:`INDICES` whose two bands are among ``bands``."""
    return [n for n, (a, b) in INDICES.items() if None not in (_find(bands, a), _find(bands, b))]


def _known(name: str) -> tuple[str, str]:
    if name not in INDICES:
        raise BandMismatchError(
            f"unknown spectral index {name!r}; known: {sorted(INDICES)}, or give the two bands "
            f"of a normalised difference: indices={{{name!r}: ('<band a>', '<band b>')}}"
        )
    return INDICES[name]


def _find(bands: Sequence[str], name: str) -> int | None:
    names = [str(b) for b in bands]
    lower = [b.lower() for b in names]
    if name.lower() in lower:
        return lower.index(name.lower())
    s2 = _SENTINEL2.get(name.lower())
    if s2 is not None and any(b.upper() in ("B8A", "B08A") for b in names):
        for candidate in (s2, s2[0] + s2[1:].lstrip("0")):  # B04 or B4
            if candidate in names:
                return names.index(candidate)
    return None
