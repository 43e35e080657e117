import numpy as np
import pytest
import rasterio
import xarray as xr

import xlandcover as xlc
from xlandcover.errors import MissingCRSError, RasterInputError

from ..conftest import DUBAI, ZION, make_image

LANDSAT = ZION / "landsat8_b2345_stack.tif"


def test_open_geotiff_lazily_with_crs_and_nodata():
    img = xlc.open_raster(LANDSAT, chunks=512)
    assert img.dims == ("band", "y", "x") and img.shape == (4, 1428, 1128)
    assert img.chunks == ((4,), (512, 512, 404), (512, 512, 104))
    assert img.rio.crs.to_epsg() == 32612 and img.rio.nodata == 65535
    assert img.dtype == np.uint16
    with rasterio.open(LANDSAT) as src:
        assert img.rio.transform() == src.transform
        np.testing.assert_array_equal(
            img[:, 100:110, 200:210].values, src.read()[:, 100:110, 200:210]
        )


def test_band_names_given_or_from_descriptions(tmp_path):
    img = xlc.open_raster(LANDSAT, chunks=512, bands=["blue", "green", "red", "nir"])
    assert list(img.band.values) == ["blue", "green", "red", "nir"]
    with pytest.raises(RasterInputError, match="3 band names were given for 4 bands"):
        xlc.open_raster(LANDSAT, bands=["a", "b", "c"])
    described = tmp_path / "described.tif"
    with rasterio.open(LANDSAT) as src:
        profile = src.profile | {"height": 64, "width": 64}
        with rasterio.open(described, "w", **profile) as dst:
            dst.write(src.read(window=((0, 64), (0, 64))))
            for i, name in enumerate(["blue", "green", "red", "nir"], start=1):
                dst.set_band_description(i, name)
    assert list(xlc.open_raster(described).band.values) == ["blue", "green", "red", "nir"]


def test_several_paths_stack_as_bands(tmp_path):
    paths = []
    with rasterio.open(LANDSAT) as src:
        for b in range(1, 5):
            p = tmp_path / f"b{b}.tif"
            with rasterio.open(p, "w", **(src.profile | {"count": 1})) as dst:
                dst.write(src.read(b), 1)
            paths.append(p)
    img = xlc.open_raster(paths, chunks=512, bands=["blue", "green", "red", "nir"])
    ref = xlc.open_raster(LANDSAT, chunks=512)
    assert img.shape == ref.shape and img.rio.crs == ref.rio.crs
    np.testing.assert_array_equal(img[:, :50, :50].values, ref[:, :50, :50].values)
    other = tmp_path / "shifted.tif"
    with rasterio.open(paths[0]) as src:
        t = src.transform
        shifted = src.profile | {"transform": rasterio.Affine(t.a, t.b, t.c + 30, t.d, t.e, t.f)}
        with rasterio.open(other, "w", **shifted) as dst:
            dst.write(src.read())
    with pytest.raises(RasterInputError, match="not on the grid"):
        xlc.open_raster([paths[0], other])


def test_jpeg_without_crs_needs_pixel_grid():
    jpg = sorted((DUBAI / "tile-1" / "images").glob("*.jpg"))[0]
    with pytest.raises(MissingCRSError, match="pixel_grid=True"):
        xlc.open_raster(jpg)
    img = xlc.open_raster(jpg, pixel_grid=True, chunks=256, bands=["red", "green", "blue"])
    assert img.sizes["band"] == 3 and img.rio.crs is None
    assert img.attrs["xlandcover_pixel_grid"] == 1


def test_open_zarr(tmp_path):
    img = make_image(50, 60)
    img.name = "image"
    img.to_dataset().to_zarr(tmp_path / "img.zarr", zarr_format=3, consolidated=False)
    back = xlc.open_raster(tmp_path / "img.zarr", chunks=32)
    assert back.dims == ("band", "y", "x") and back.chunks[1] == (32, 18)
    xr.testing.assert_equal(back.compute().drop_vars("spatial_ref"), img.drop_vars("spatial_ref"))
    assert back.rio.crs == img.rio.crs


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xlc.open_raster("/nonexistent.tif")


def test_open_vrt(tmp_path):
    """A VRT selecting bands 3 and 4 (red, nir) of the real scene, with band descriptions."""
    with rasterio.open(LANDSAT) as src:
        h, w, t = src.height, src.width, src.transform
        crs_wkt = src.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{i}"><Description>{name}</Description>'
        f'<NoDataValue>65535</NoDataValue><SimpleSource><SourceFilename relativeToVRT="0">'
        f"{LANDSAT}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (b, name) in enumerate([(3, "red"), (4, "nir")], start=1)
    )
    gt = ", ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    vrt = tmp_path / "rn.vrt"
    vrt.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{crs_wkt}</SRS>'
        f"<GeoTransform>{gt}</GeoTransform>{bands}</VRTDataset>"
    )
    img = xlc.open_raster(vrt, chunks=512)
    assert list(img.band.values) == ["red", "nir"] and img.rio.crs.to_epsg() == 32612
    full = xlc.open_raster(LANDSAT, chunks=512)
    np.testing.assert_array_equal(
        img[:, 300:340, 500:530].values, full[2:, 300:340, 500:530].values
    )
