"""What only a CUDA GPU can check (marked ``cuda``: skipped without one; run them with
``benchmarks/gpu_check.sh``): the device-resident engine against the CPU, batch invariance
there, bf16 autocast, the batch-size probe, and Dask-CUDA workers."""

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.model import _runtime as runtime
from xlandcover.model._package import NODATA_LABEL

from .conftest import make_image
from .prediction.test_predict import assert_batch_size_does_not_matter

pytestmark = pytest.mark.cuda


def _scene(dtype=np.uint8):
    img = make_image(300, 280, seed=3).astype(dtype)
    img.values[:, 10:20, 30:60] = 0
    return img.rio.write_nodata(0)


def test_cuda_engine_agrees_with_cpu(tiny_package):
    """fp32 on the GPU (cuDNN may use TF32 for convolutions) against the CPU: probabilities
    within 5e-3, labels the same where the two most probable classes are 1e-2 apart."""
    for img in (_scene(), _scene(np.uint16).chunk({"y": 150, "x": 140})):
        kw = {"chunks": None, "precision": "fp32"}
        cpu = xlc.predict(img, tiny_package, output="probabilities", device="cpu", **kw).values
        gpu = xlc.predict(img, tiny_package, output="probabilities", device="cuda", **kw).values
        ok = ~np.isnan(cpu[0])
        np.testing.assert_array_equal(ok, ~np.isnan(gpu[0]))
        np.testing.assert_allclose(cpu[:, ok], gpu[:, ok], atol=5e-3)
        labels = xlc.predict(img, tiny_package, device="cuda", **kw).values
        assert (labels[~ok] == NODATA_LABEL).all()
        top2 = np.sort(cpu[:, ok], axis=0)[-2:]
        decided = top2[1] - top2[0] > 1e-2
        ids = np.asarray(tiny_package.metadata.class_ids)
        np.testing.assert_array_equal(labels[ok][decided], ids[cpu[:, ok].argmax(0)][decided])


@pytest.mark.parametrize("tta", [False, "d4"])
def test_batch_size_does_not_change_the_prediction_on_cuda(tiny_package, tta):
    img = make_image(420, 400, seed=7)
    assert_batch_size_does_not_matter(img, tiny_package, tta=tta, device="cuda")


def test_chunking_does_not_change_the_prediction_on_cuda(tiny_package):
    img = make_image(333, 301, seed=2)
    ref = xlc.predict(img, tiny_package, output="probabilities", device="cuda").values
    kw = {"output": "probabilities", "chunks": None, "device": "cuda"}
    chunked = xlc.predict(img.chunk({"y": 100, "x": 120}), tiny_package, **kw).values
    np.testing.assert_allclose(chunked, ref, atol=1e-5)


def test_auto_precision_is_fp16_and_auto_batches_fit(tiny_package):
    from xlandcover._torch import torch

    assert runtime.resolve_precision("auto", "cuda") == (
        "fp16" if torch.cuda.get_device_capability() >= (7, 0) else "fp32"
    )
    loaded = runtime.get_model(tiny_package.blob, tiny_package.sha256, "cuda")
    for precision in ("fp32", "fp16", "bf16"):
        size = runtime.auto_batch_size(loaded, tiny_package.sha256, (3, 64, 64), precision)
        assert 1 <= size <= runtime.MAX_AUTO_BATCH
    img = make_image(200, 200)
    fp32 = xlc.predict(img, tiny_package, device="cuda", precision="fp32").values
    auto = xlc.predict(img, tiny_package, device="cuda").values
    assert (fp32 != auto).mean() < 0.01


def test_half_precision_on_the_zion_demo_scene():
    from importlib import resources

    data = resources.files("xlandcover") / "data"
    with (
        resources.as_file(data / "zion-landsat8-demo.tif") as tif,
        resources.as_file(data / "demo-zion.xlc") as pkg,
    ):
        img, package = xlc.open_raster(tif), xlc.load_model(pkg)
        fp32 = xlc.predict(img, package, device="cuda", precision="fp32").values
        auto = xlc.predict(img, package, device="cuda").values
        bf16 = xlc.predict(img, package, device="cuda", precision="bf16").values
    assert (fp32 != auto).mean() < 1e-3
    assert (fp32 != bf16).mean() < 5e-3


def test_dask_cuda_one_worker_per_gpu(tiny_package, tmp_path):
    pytest.importorskip("dask_cuda")
    import xarray as xr

    from xlandcover.jobs._cluster import client_for, gpu_count
    from xlandcover.output._resume import write_zarr_resumable

    img = _scene()
    path = tmp_path / "scene.tif"
    img.rio.to_raster(path, tiled=True, blockxsize=128, blockysize=128)
    lazy = xlc.open_raster(path, chunks=128, bands=["red", "green", "blue"])
    labels = xlc.predict(lazy, tiny_package, chunks=None, device="cuda")
    want = xlc.predict(img, tiny_package, device="cuda").values
    with client_for("local") as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == gpu_count()
        write_zarr_resumable(labels, tmp_path / "out.zarr", client=client, progress=False)
        counts = client.run(lambda: dict(runtime.LOAD_COUNTS))
    assert all(c.get(tiny_package.sha256, 0) <= 1 for c in counts.values())  # once per worker
    got = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)["landcover"].values
    np.testing.assert_array_equal(got, want)
