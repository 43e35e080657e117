"""Optional dependencies: imported where used, and a clear error naming the extra to install
when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: Top-level module -> (distribution to install, xlandcover extra that brings it).
OPTIONAL: dict[str, tuple[str, str | None]] = {
    "pystac": ("pystac", "stac"),
    "pystac_client": ("pystac-client", "stac"),
    "stackstac": ("stackstac", "stac"),
    "odc": ("odc-stac", "stac"),
    "requests": ("requests", "stac"),
    "matplotlib": ("matplotlib", "train"),
    "sklearn": ("scikit-learn", "train"),
    "kornia": ("kornia", "train"),
    "geopandas": ("geopandas", "report"),
    "pyogrio": ("pyogrio", "report"),
    "pyarrow": ("pyarrow", "report"),
    "distributed": ("distributed", "distributed"),
    "dask_cuda": ("dask-cuda", None),
    "rio_cogeo": ("rio-cogeo", "cog"),
    "planetary_computer": ("planetary-computer", None),
}


def import_optional(name: str, purpose: str) -> ModuleType:
    """``importlib.import_module(name)``, or :class:`MissingDependencyError` saying what
    ``purpose`` needs and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise missing_dependency(err, purpose) from err


def missing_dependency(err: ImportError, purpose: str | None = None) -> MissingDependencyError:
    """The :class:`MissingDependencyError` for an ``ImportError`` of an optional package."""
    module = (err.name or str(err)).split(".")[0]
    dist, extra = OPTIONAL.get(module, (module, None))
    how = f"pip install 'xlandcover[{extra}]'" if extra else f"pip install {dist}"
    needs = f"{purpose} needs" if purpose else "this needs"
    return MissingDependencyError(f"{needs} {dist}, which is not installed: {how}")
