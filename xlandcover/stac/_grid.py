"""Target grids for catalog imagery: bbox checks, UTM zones, bounds snapped to the pixel grid."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MixedCRSError, StacQueryError

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class TargetGrid:
    """The output grid of ``load_stac``: EPSG code, square pixel size, bounds snapped to whole
    pixels (in that CRS), and the chunk size of the lazy reads."""

    epsg: int
    resolution: float
    bounds: BBox
    chunks: int

    @property
    def transform(self) -> Any:
        """The exact affine transform (from the bounds, not from pixel-centre coordinates)."""
        from rasterio.transform import Affine

        res, (left, _, _, top) = self.resolution, self.bounds
        return Affine(res, 0.0, left, 0.0, -res, top)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        left, bottom, right, top = self.bounds
        return round((top - bottom) / self.resolution), round((right - left) / self.resolution)

    def geobox(self) -> Any:
        """The same grid as an odc-geo ``GeoBox`` (odc-stac's loader takes one)."""
        from odc.geo.geobox import GeoBox

        # from the transform and shape, not re-snapped from the bounds: a window of the grid
        # (``load_stac(search_region=...)``) has bounds a float rounding off whole pixels
        return GeoBox(self.shape, self.transform, f"EPSG:{self.epsg}")


def check_bbox(bbox: Sequence[float], *, allow_empty: bool = False) -> BBox:
    """``bbox`` as ``(west, south, east, north)`` in degrees, or a clear error.

    Rejects swapped coordinates, boxes crossing the antimeridian (split those into two
    requests at 180 degrees), and projected coordinates passed where degrees are expected.
    """
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise StacQueryError(
            f"bbox must be four numbers (west, south, east, north) in degrees, got {bbox!r}"
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise StacQueryError(f"bbox {bbox!r} has a non-finite coordinate")
    lons_ok = -180 <= west <= 180 and -180 <= east <= 180
    if not (lons_ok and -90 <= south <= 90 and -90 <= north <= 90):
        raise StacQueryError(
            f"bbox {bbox!r} is not in degrees: give (west, south, east, north) as WGS84 "
            "longitude/latitude (projected coordinates go to crs= and the target grid, not bbox)"
        )
    if south > north:
        raise StacQueryError(
            f"bbox {bbox!r} has south ({south}) > north ({north}): the latitudes are swapped; "
            "give (west, south, east, north)"
        )
    if west > east:
        raise StacQueryError(
            f"bbox {bbox!r} has west ({west}) > east ({east}): either the longitudes are "
            "swapped (give (west, south, east, north)) or the box crosses the antimeridian, "
            "which is not supported: split it at 180 degrees into two loads"
        )
    if not allow_empty and (west == east or south == north):
        raise StacQueryError(f"bbox {bbox!r} is empty; give a box with an area")
    return west, south, east, north


def geometry_bounds(geometry: Mapping[str, Any]) -> BBox:
    """Bounds of a GeoJSON geometry (or any object with ``__geo_interface__``); empty for a
    point."""
    geo = getattr(geometry, "__geo_interface__", geometry)
    xs: list[float] = []
    ys: list[float] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], int | float):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        else:
            for c in coords:
                walk(c)

    if geo.get("type") == "GeometryCollection":
        for g in geo["geometries"]:
            walk(g["coordinates"])
    else:
        walk(geo["coordinates"])
    return check_bbox((min(xs), min(ys), max(xs), max(ys)), allow_empty=True)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing ``(lon, lat)``, with the Norway and
    Svalbard exceptions of the UTM grid."""
    zone = int((lon + 180) // 6) % 60 + 1
    if 56 <= lat < 64 and 3 <= lon < 12:
        zone = 32
    elif 72 <= lat < 84 and 0 <= lon < 42:
        zone = 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    return (32600 if lat >= 0 else 32700) + zone


def target_epsg(crs: Any, bbox: BBox | None, item_epsgs: Iterable[int]) -> int:
    """The EPSG code of the output grid.

    ``crs`` given: that CRS. Otherwise the UTM zone of the bbox centre, but in the items'
    own CRS when they all share one that is a UTM projection of that same zone (whatever its
    datum: NAIP's NAD83 / UTM), so imagery is not resampled for nothing. Without a bbox, the
    items' common CRS; items in several CRSs and no ``crs`` is an error.
    """
    epsgs = sorted(set(item_epsgs))
    if crs is not None:
        from pyproj import CRS

        epsg = CRS.from_user_input(crs).to_epsg()
        if epsg is None:
            raise StacQueryError(f"crs {crs!r} has no EPSG code; give one like 'EPSG:32633'")
        return int(epsg)
    if bbox is None:
        if len(epsgs) != 1:
            raise MixedCRSError(
                f"the items are in several CRSs ({', '.join(f'EPSG:{e}' for e in epsgs)}) and "
                "neither crs= nor bbox= says which grid to use; pass crs= (e.g. "
                f"crs='EPSG:{epsgs[0]}') or a bbox (its centre's UTM zone is then used)"
            )
        return epsgs[0]
    utm = utm_epsg((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
    if len(epsgs) == 1 and _utm_zone(epsgs[0]) == _utm_zone(utm):
        return epsgs[0]
    return utm


def _utm_zone(epsg: int) -> str | None:
    from pyproj import CRS

    return CRS.from_epsg(epsg).utm_zone


def snapped_bounds(bbox: BBox, epsg: int, resolution: float, *, src_epsg: int = 4326) -> BBox:
    """``bbox`` (in ``src_epsg``) projected to ``epsg`` and grown outward to whole pixels of a
    grid anchored at the CRS origin, so loads of neighbouring areas share one pixel grid."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(
        f"EPSG:{src_epsg}", f"EPSG:{epsg}", *bbox, densify_pts=21
    )

    def down(v: float) -> float:
        return math.floor(round(v / resolution, 6)) * resolution

    def up(v: float) -> float:
        return math.ceil(round(v / resolution, 6)) * resolution

    return down(left), down(bottom), up(right), up(top)
