"""Shared fixtures: tiny model packages and small georeferenced images."""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from hypothesis import settings

import xlandcover as xlc

#: The real imagery, labels and STAC items next to the clone (``XLANDCOVER_SHARED_DATA``
#: overrides); tests that read it are skipped, with the reason, when it is missing.
SHARED = Path(
    os.environ.get("XLANDCOVER_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
ZION = SHARED / "zion-landsat8-nlcd"
DUBAI = SHARED / "dubai-aerial"

# The tests run in parallel (``pytest -n auto``) on small machines: an example's time says
# nothing about its correctness, so no property test has a deadline.
settings.register_profile("xlandcover", deadline=None)
settings.load_profile("xlandcover")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU, tests that read :data:`SHARED` need it: each is
    skipped, with the reason, where that is missing (pure unit tests still run)."""
    if not SHARED.is_dir():
        skip = pytest.mark.skip(
            reason=f"reads real imagery from {SHARED}: clone xlandcover next to the shared/ "
            "folder (as CI does), link it there, or set XLANDCOVER_SHARED_DATA"
        )
        for item in items:
            if _reads_shared_data(item):
                item.add_marker(skip)
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda:
        return
    from xlandcover._torch import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)")
    for item in cuda:
        item.add_marker(skip)


def _reads_shared_data(item: pytest.Item) -> bool:
    """Whether the test, its fixtures, or a test helper they call names a path under SHARED."""
    func = getattr(item, "function", None)
    if func is None:  # a notebook: reads the package's embedded data
        return False
    funcs = [func]
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is not None:
        funcs += [d.func for defs in fixtures.name2fixturedefs.values() for d in defs]
    seen: set[int] = set()
    return any(_names_shared(f, seen) for f in funcs)


def _names_shared(func: object, seen: set[int]) -> bool:
    func = getattr(func, "__wrapped__", func)
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    namespace = getattr(func, "__globals__", {})
    names = set(_code_names(code))
    for name in names:
        value = namespace.get(name)
        if isinstance(value, types.ModuleType) and value.__name__.startswith("tests"):
            values = [getattr(value, n) for n in names if hasattr(value, n)]  # stac_data.ITEMS
        else:
            values = [value]
        for v in values:
            if isinstance(v, Path) and v.is_relative_to(SHARED):
                return True
            is_helper = isinstance(v, types.FunctionType) and v.__module__.startswith("tests")
            if is_helper and _names_shared(v, seen):
                return True
    return False


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def tiny_net(in_channels: int = 3, classes: int = 4, seed: int = 0):
    """A ~0.1 M-parameter smp U-Net (timm's test encoder), random but decisive weights."""
    from xlandcover._torch import smp, torch

    torch.manual_seed(seed)
    net = smp.Unet(
        encoder_name="tu-test_efficientnet",
        encoder_weights=None,
        in_channels=in_channels,
        classes=classes,
        decoder_channels=(16, 8, 8, 8, 8),
    )
    with torch.no_grad():  # sharpen the head so classes are not all near ties
        net.segmentation_head[0].weight.mul_(20.0)
    return net.eval()


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> xlc.ModelPackage:
    path = tmp_path_factory.mktemp("models") / "tiny.xlc"
    return xlc.save_model(
        tiny_net(),
        path,
        bands=["red", "green", "blue"],
        classes=[
            {"id": 1, "name": "water", "color": "#1f78b4"},
            {"id": 2, "name": "forest", "color": "#33a02c"},
            {"id": 5, "name": "built", "color": "#e31a1c"},
            {"id": 7, "name": "bare", "color": "#b3aea3"},
        ],
        normalization={"mean": [100.0, 110.0, 90.0], "std": [50.0, 45.0, 40.0]},
        window=64,
        overlap=16,
    )


def make_image(
    height: int, width: int, *, bands=("red", "green", "blue"), seed: int = 0, crs="EPSG:32612"
) -> xr.DataArray:
    """A smooth-ish random uint8 image on a 10 m UTM grid (numpy-backed)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (len(bands), height // 8 + 2, width // 8 + 2))
    img = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, :height, :width]
    noise = rng.integers(0, 40, img.shape)
    data = np.clip(img + noise, 10, 250).astype(np.uint8)  # 0..9 and 251+ stay free for nodata
    da = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={
            "band": list(bands),
            "y": 4_100_000.0 - 10.0 * (np.arange(height) + 0.5),
            "x": 300_000.0 + 10.0 * (np.arange(width) + 0.5),
        },
    )
    return da.rio.write_crs(crs) if crs else da


@contextmanager
def raise_if_dask_computes() -> Iterator[None]:
    """Fail if anything is computed with Dask inside the block (xarray's test helper)."""
    import dask

    def scheduler(dsk, keys, **kwargs):
        raise AssertionError(f"Dask computed {keys!r:.200} where nothing should be computed")

    with dask.config.set(scheduler=scheduler):
        yield


@pytest.fixture(params=["numpy", "dask"])
def backend(request) -> str:
    return request.param


def as_backend(img: xr.DataArray, backend: str, chunk: int = 96) -> xr.DataArray:
    return img.chunk({"band": -1, "y": chunk, "x": chunk}) if backend == "dask" else img
