"""Searching a STAC API (pystac-client) and normalising items to plain dicts."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .._deps import import_optional
from ..errors import (
    CatalogUnreachableError,
    NoItemsError,
    StacQueryError,
)
from ._grid import BBox
from ._presets import StacPreset

log = logging.getLogger("xlandcover")

ItemDict = dict[str, Any]
Modifier = Callable[[Any], None]


@dataclass(frozen=True)
class StacSearch:
    """What to ask a STAC API for: the search arguments of :func:`~xlandcover.load_stac`,
    once (a search is described, logged and sent from this one object)."""

    collections: tuple[str, ...]
    bbox: BBox | None = None
    intersects: Mapping[str, Any] | None = None
    datetime: str | None = None
    max_cloud: float | None = None
    query: Mapping[str, Any] | None = None
    filter: Mapping[str, Any] | str | None = None
    max_items: int | None = None

    def describe(self) -> str:
        """``(collections=[...], bbox=..., ...)``, the arguments that are set."""
        parts = [f"collections={list(self.collections)!r}"]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is not None and f.name != "max_items":
                parts.append(f"{f.name}={value!r}")
        return "(" + ", ".join(parts) + ")"


def search_items(
    url: str,
    preset: StacPreset,
    search: StacSearch,
    *,
    modifier: Modifier | str | None = None,
    timeout: float = 30.0,
) -> list[ItemDict]:
    """Search ``url`` and return the matching items as dicts (no pixel is read).

    ``max_cloud`` becomes a CQL2 filter on the preset's cloud-cover property when the API
    supports filtering, else a ``query``; items above it are dropped client-side as well, in
    case an API ignores the request. ``modifier`` (e.g. Planetary Computer URL signing, or
    ``"planetary-computer"``) is applied to every page of results.
    """
    import_optional("pystac_client", "searching a STAC API")
    import requests
    from pystac_client import Client, ConformanceClasses
    from pystac_client.exceptions import APIError

    mod = _modifier(modifier)
    described = search.describe()
    max_cloud, filter = search.max_cloud, search.filter
    try:
        client = Client.open(url, modifier=mod, timeout=timeout)
    except (requests.exceptions.RequestException, APIError, ValueError) as e:
        raise _unreachable(url, timeout, e) from None

    query = dict(search.query or {})
    if max_cloud is not None:
        cover = _require_cloud_cover(preset)
        cloud = {"op": "<=", "args": [{"property": cover}, max_cloud]}
        if client.conforms_to(ConformanceClasses.FILTER) and not isinstance(filter, str):
            filter = cloud if filter is None else {"op": "and", "args": [dict(filter), cloud]}
        elif client.conforms_to(ConformanceClasses.QUERY):
            query.setdefault(cover, {"lte": max_cloud})
    try:
        found = client.search(
            collections=list(search.collections),
            bbox=search.bbox,
            intersects=dict(search.intersects) if search.intersects is not None else None,
            datetime=search.datetime,
            query=query or None,
            filter=dict(filter) if isinstance(filter, Mapping) else filter,
            max_items=search.max_items,
        )
        items = [copy.deepcopy(i) for i in found.items_as_dicts()]
    except requests.exceptions.RequestException as e:
        raise _unreachable(url, timeout, e) from None
    except (APIError, NotImplementedError) as e:
        if _network_failure(e):
            raise _unreachable(url, timeout, e) from None
        raise StacQueryError(f"{url} rejected the search {described}: {e}") from None
    items = within_cloud(items, preset, max_cloud)  # in case the API ignored the filter
    if not items:
        raise NoItemsError(
            f"no STAC items match {described} at {url}; widen the bbox or the dates, "
            "raise max_cloud, or check the collection"
        )
    log.info("found %d STAC items at %s", len(items), url)
    return items


def as_item_dicts(items: Any) -> list[ItemDict]:
    """Items given directly (pystac ItemCollection, Items, dicts, a FeatureCollection dict)
    as a list of plain item dicts, copied."""
    if isinstance(items, Mapping) and items.get("type") == "FeatureCollection":
        items = items["features"]
    elif isinstance(items, Mapping) or (hasattr(items, "to_dict") and hasattr(items, "assets")):
        items = [items]
    out = []
    for item in items:
        d = item.to_dict() if hasattr(item, "to_dict") else copy.deepcopy(dict(item))
        out.append(d)
    if not out:
        raise NoItemsError("no STAC items were given; pass a non-empty ItemCollection")
    return out


def with_epsg(item: ItemDict) -> ItemDict:
    """Give the item ``proj:epsg`` where it only has ``proj:code`` ("EPSG:nnnn").

    pystac migrates ``proj:epsg`` to the projection extension v2's ``proj:code`` on read,
    while stackstac reads only ``proj:epsg``.
    """
    for props in (item.setdefault("properties", {}), *item.get("assets", {}).values()):
        code = props.get("proj:code")
        if props.get("proj:epsg") is None and isinstance(code, str):
            auth, _, num = code.partition(":")
            if auth.upper() == "EPSG" and num.isdigit():
                props["proj:epsg"] = int(num)
    return item


def item_epsg(item: ItemDict) -> int:
    epsg = item["properties"].get("proj:epsg")
    if epsg is None:
        for asset in item.get("assets", {}).values():
            epsg = asset.get("proj:epsg") or epsg
    if epsg is None:
        raise StacQueryError(
            f"item {item.get('id')!r} has no proj:epsg / proj:code, so its grid is unknown; "
            "such catalogs need crs=, resolution= and readable asset headers"
        )
    return int(epsg)


def _network_failure(e: BaseException) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("timed out", "timeout", "max retries", "connection"))


def _unreachable(url: str, timeout: float, e: BaseException) -> CatalogUnreachableError:
    """pystac-client wraps network errors (after its retries) in ``APIError``: tell a
    timeout, a refused connection and an answer that is not a STAC API apart by the text."""
    text = str(e).lower()
    if "timed out" in text or "timeout" in text:
        return CatalogUnreachableError(
            f"the STAC API at {url} did not answer within {timeout} s; check the URL and the "
            "network, retry later, or allow longer with timeout="
        )
    if _network_failure(e):
        return CatalogUnreachableError(
            f"could not connect to the STAC API at {url} ({type(e).__name__}); check the URL "
            "and the network"
        )
    return CatalogUnreachableError(
        f"{url} did not answer as a STAC API ({e}); give the API's root URL, e.g. "
        "https://earth-search.aws.element84.com/v1"
    )


def cloud_cover(item: ItemDict, preset: StacPreset) -> float:
    """The item's cloud cover in percent; infinite when the item does not state it."""
    value = item["properties"].get(preset.cloud_cover) if preset.cloud_cover else None
    return float("inf") if value is None else float(value)


def within_cloud(
    items: list[ItemDict], preset: StacPreset, max_cloud: float | None
) -> list[ItemDict]:
    """The items whose cloud cover is at most ``max_cloud`` (all of them for ``None``)."""
    if max_cloud is None:
        return items
    _require_cloud_cover(preset)
    return [i for i in items if cloud_cover(i, preset) <= max_cloud]


def _require_cloud_cover(preset: StacPreset) -> str:
    if preset.cloud_cover is None:
        raise StacQueryError(
            f"preset {preset.name!r} has no cloud-cover property, so max_cloud cannot "
            "filter its items; drop max_cloud"
        )
    return preset.cloud_cover


def _modifier(modifier: Modifier | str | None) -> Modifier | None:
    if modifier is None or callable(modifier):
        return modifier
    if modifier in ("planetary-computer", "planetary_computer"):
        planetary_computer = import_optional("planetary_computer", "modifier='planetary-computer'")
        sign: Modifier = planetary_computer.sign_inplace
        return sign
    raise StacQueryError(
        f"unknown modifier {modifier!r}; pass a callable that edits items in place or "
        "'planetary-computer'"
    )
