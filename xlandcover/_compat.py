"""Old spellings kept working for one release, each use warning with
:class:`~xlandcover.errors.XLandcoverDeprecationWarning`: the import paths of xlandcover 0.1,
whose modules sat in one flat folder, and renamed arguments and settings.

``xlandcover.chips``, ``xlandcover.predict``, ... are registered in ``sys.modules`` as small
stand-in modules that forward every attribute to the module's new home, so
``from xlandcover.chips import sample_chips`` and pickles naming the old paths still work.
The stand-ins are registered rather than found on import so that importing one never rebinds
the package's attribute of the same name: ``xlandcover.predict``, ``xlandcover.train`` and
``xlandcover.evaluate`` stay the functions.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import inspect
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .errors import InputTypeError, UnknownNameError, XLandcoverDeprecationWarning

#: Old module (under ``xlandcover.``) -> (public home, internal module holding its code).
MOVED: dict[str, tuple[str, str]] = {
    "labels": ("xlandcover.io", "xlandcover.io._labels"),
    "nodata": ("xlandcover.io", "xlandcover.io._nodata"),
    "vector": ("xlandcover.io", "xlandcover.io._vector"),
    "presets": ("xlandcover.stac", "xlandcover.stac._presets"),
    "stac_search": ("xlandcover.stac", "xlandcover.stac._search"),
    "grid": ("xlandcover.stac", "xlandcover.stac._grid"),
    "composite": ("xlandcover.stac", "xlandcover.stac._composite"),
    "chips": ("xlandcover.training", "xlandcover.training._chips"),
    "splits": ("xlandcover.training", "xlandcover.training._splits"),
    "augment": ("xlandcover.training", "xlandcover.training._augment"),
    "losses": ("xlandcover.training", "xlandcover.training._losses"),
    "train": ("xlandcover.training", "xlandcover.training._train"),
    "recipe": ("xlandcover.training", "xlandcover.training._recipe"),
    "baseline": ("xlandcover.training", "xlandcover.training._baseline"),
    "config": ("xlandcover.training", "xlandcover.training._config"),
    "export": ("xlandcover.training", "xlandcover.training._export"),
    "package": ("xlandcover.model", "xlandcover.model._package"),
    "_nets": ("xlandcover.model", "xlandcover.model._nets"),
    "spectral": ("xlandcover.model", "xlandcover.model._spectral"),
    "runtime": ("xlandcover.model", "xlandcover.model._runtime"),
    "predict": ("xlandcover.prediction", "xlandcover.prediction._predict"),
    "windows": ("xlandcover.prediction", "xlandcover.prediction._windows"),
    "blend": ("xlandcover.prediction", "xlandcover.prediction._blend"),
    "halo": ("xlandcover.prediction", "xlandcover.prediction._halo"),
    "sieve": ("xlandcover.prediction", "xlandcover.prediction._sieve"),
    "uncertainty": ("xlandcover.prediction", "xlandcover.prediction._uncertainty"),
    "evaluate": ("xlandcover.evaluation", "xlandcover.evaluation._evaluate"),
    "metrics": ("xlandcover.evaluation", "xlandcover.evaluation._metrics"),
    "accuracy": ("xlandcover.evaluation", "xlandcover.evaluation._accuracy"),
    "sampling": ("xlandcover.evaluation", "xlandcover.evaluation._sampling"),
    "calibration": ("xlandcover.evaluation", "xlandcover.evaluation._calibration"),
    "stats": ("xlandcover.evaluation", "xlandcover.evaluation._areas"),
    "gallery": ("xlandcover.evaluation", "xlandcover.evaluation._gallery"),
    "write": ("xlandcover.output", "xlandcover.output._write"),
    "outputs": ("xlandcover.output", "xlandcover.output._targets"),
    "resume": ("xlandcover.output", "xlandcover.output._resume"),
    "progress": ("xlandcover.output", "xlandcover.output._progress"),
    "cluster": ("xlandcover.jobs", "xlandcover.jobs._cluster"),
}

#: Names that changed as well as their module: (old module, old name) -> (module, new name).
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("losses", "IGNORE"): ("xlandcover.model", "NODATA_LABEL"),
    ("evaluate", "SKIP"): ("xlandcover.model", "NODATA_LABEL"),
    ("splits", "SPLITS"): ("xlandcover.training", "PARTITIONS"),
    ("resume", "ChunkFailedError"): ("xlandcover.errors", "ChunkFailedError"),
}

_WARNED: set[tuple[str, str]] = set()


class MovedModule(types.ModuleType):
    """Stand-in for a module that moved: every attribute comes from its new home."""

    def __init__(self, old: str, public: str, internal: str) -> None:
        super().__init__(f"xlandcover.{old}", f"Moved to {public}; see xlandcover.{old}.")
        self.__spec__ = importlib.machinery.ModuleSpec(f"xlandcover.{old}", None)
        self.__dict__["_moved"] = (old, public, internal)

    def __getattr__(self, name: str) -> Any:
        old, public, internal = self.__dict__["_moved"]
        if name.startswith("__") and name != "__all__":
            raise UnknownNameError(name)
        where, new = RENAMED.get((old, name), (None, name))
        if where is None:
            home = importlib.import_module(public)
            where = public if name in getattr(home, "__all__", ()) else internal
        try:
            value = getattr(importlib.import_module(where), new)
        except AttributeError:
            raise UnknownNameError(
                f"module 'xlandcover.{old}' (moved to {public}) has no attribute {name!r}"
            ) from None
        if (old, name) not in _WARNED:
            _WARNED.add((old, name))
            what = name if name == new else f"{name} (now {new})"
            hint = (
                f"import {new} from {where}"
                if not where.rpartition(".")[2].startswith("_")
                else f"{where} is internal; use the public names of {public}"
            )
            warnings.warn(
                f"xlandcover.{old} moved to {public}: {hint} (for {what}); the old path will "
                "be removed in a later release",
                XLandcoverDeprecationWarning,
                stacklevel=2,
            )
        return value

    def __dir__(self) -> list[str]:
        internal = self.__dict__["_moved"][2]
        return sorted(n for n in dir(importlib.import_module(internal)) if not n.startswith("__"))


def install() -> None:
    """Register the stand-ins (cheap: nothing is imported until an attribute is read)."""
    for old, (public, internal) in MOVED.items():
        sys.modules.setdefault(f"xlandcover.{old}", MovedModule(old, public, internal))


def moved_module(name: str) -> types.ModuleType | None:
    """The stand-in for ``xlandcover.<name>``, for the package's ``__getattr__``."""
    return sys.modules.get(f"xlandcover.{name}") if name in MOVED else None


F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(message: str, *, stacklevel: int = 3) -> None:
    """Warn that ``message`` (an old spelling and its replacement) is deprecated."""
    warnings.warn(
        f"{message}; the old spelling will be removed in a later release",
        XLandcoverDeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_arguments(**renames: str) -> Callable[[F], F]:
    """Accept the old names of renamed keyword arguments (``old="new"``) for one release,
    with a deprecation warning; giving both is an error."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise InputTypeError(
                            f"{func.__qualname__}() got both {old}= and {new}=; pass {new}= only"
                        )
                    warn_deprecated(f"{func.__qualname__}({old}=...) is now {new}=")
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def renamed_settings(settings: dict[str, Any], renames: dict[str, str], where: str) -> dict:
    """``settings`` with old keys renamed (with a deprecation warning), e.g. TOML tables."""
    out = dict(settings)
    for old, new in renames.items():
        if old in out:
            if new in out:
                raise InputTypeError(f"{where} gives both {old} and {new}; give {new} only")
            warn_deprecated(f"{where}: {old} is now {new}", stacklevel=4)
            out[new] = out.pop(old)
    return out


def keyword_only(*legacy: str, hint: str = "") -> Callable[[F], F]:
    """Accept, for one release, positional arguments that became keyword-only: extra
    positional arguments are taken, in their old order, as ``legacy`` names (with a
    deprecation warning, never reinterpreted in a new order)."""

    def decorate(func: F) -> F:
        kinds = inspect.signature(func).parameters.values()
        positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in kinds)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            extra = args[positional:]
            if extra:
                names = legacy[: len(extra)]
                if len(extra) > len(legacy) or any(n in kwargs for n in names):
                    raise InputTypeError(
                        f"{func.__qualname__}() takes {', '.join(legacy)} by keyword"
                        + (f": {hint}" if hint else "")
                    )
                warn_deprecated(
                    f"{func.__qualname__}() takes {', '.join(names)} by keyword now"
                    + (f" ({hint})" if hint else "")
                )
                kwargs.update(zip(names, extra, strict=True))
                args = args[:positional]
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
