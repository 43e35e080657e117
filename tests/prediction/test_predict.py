import pickle
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover.errors import (
    AllNodataError,
    BandMismatchError,
    ChunkTooSmallError,
    InvalidWindowError,
    MissingCRSError,
    PrecisionError,
    RechunkWarning,
    UnknownDeviceError,
)
from xlandcover.model import NODATA_LABEL
from xlandcover.model import _runtime as runtime

from ..conftest import as_backend, make_image, raise_if_dask_computes


def reference_probabilities(image: np.ndarray, package, window: int, overlap: int) -> np.ndarray:
    """Plain whole-scene sliding window: every window of the scene, one at a time, blended with
    separable Hann weights (plus a floor) into whole-scene arrays. Written independently of
    xlandcover's chunk machinery, as the ground truth it must reproduce."""
    from xlandcover._torch import torch

    model = package.build_module()
    mean = np.asarray(package.metadata.mean, np.float32)[:, None, None]
    std = np.asarray(package.metadata.std, np.float32)[:, None, None]
    x = (image.astype(np.float32) - mean) / std
    _, h, w = x.shape

    def axis(length):
        if length < window:
            size = -(-length // 32) * 32
            return size, [0]
        stride = window - overlap
        starts = [*range(0, length - window, stride), length - window]
        return window, sorted(set(starts))

    def hann(n):
        i = np.arange(n)
        return (1e-3 + (1 - 1e-3) * np.sin(np.pi * (i + 0.5) / n) ** 2).astype(np.float32)

    wy, ys = axis(h)
    wx, xs = axis(w)
    weight = hann(wy)[:, None] * hann(wx)[None, :]
    acc = np.zeros((len(package.classes), h, w), np.float32)
    total = np.zeros((h, w), np.float32)
    for sy in ys:
        for sx in xs:
            tile = x[:, sy : sy + wy, sx : sx + wx]
            tile = np.pad(
                tile,
                ((0, 0), (0, wy - tile.shape[1]), (0, wx - tile.shape[2])),
                mode="symmetric",
            )
            with torch.no_grad():
                p = model(torch.from_numpy(tile[None])).softmax(1)[0].numpy()
            ey, ex = min(sy + wy, h), min(sx + wx, w)
            acc[:, sy:ey, sx:ex] += weight[: ey - sy, : ex - sx] * p[:, : ey - sy, : ex - sx]
            total[sy:ey, sx:ex] += weight[: ey - sy, : ex - sx]
    return acc / total


def reference_layers(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Confidence, margin and normalised entropy in uint8 steps of 1/254, computed directly."""
    top = np.sort(probs, axis=0)
    plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    values = {
        "confidence": top[-1],
        "margin": top[-1] - top[-2],
        "entropy": -plogp.sum(0) / np.log(probs.shape[0]),
    }
    return {k: np.rint(254 * np.clip(v, 0, 1)).astype(int) for k, v in values.items()}


def assert_batch_size_does_not_matter(img, package, **kw):
    """Probabilities and labels at batches of 1, 3 and 64 windows agree (``**kw`` to predict)."""
    ids = package.metadata.class_ids
    runs = {
        b: (
            xlc.predict(img, package, output="probabilities", batch_size=b, **kw).values,
            xlc.predict(img, package, batch_size=b, **kw).values,
        )
        for b in (1, 3, 64)
    }
    for b in (3, 64):
        assert_same_prediction(runs[1][0], runs[b][0], runs[1][1], runs[b][1], ids)


def assert_same_prediction(probs_a, probs_b, labels_a, labels_b, ids, atol=1e-5):
    np.testing.assert_allclose(probs_a, probs_b, atol=atol, rtol=0)
    top2 = np.sort(probs_a, axis=0)[-2:]
    decided = (top2[1] - top2[0]) >= 1e-4
    np.testing.assert_array_equal(labels_a[decided], labels_b[decided])
    assert np.isin(labels_a, ids).all()


@pytest.mark.parametrize(("height", "width"), [(150, 203), (40, 70), (64, 64), (130, 17)])
def test_one_chunk_equals_whole_scene_reference(tiny_package, height, width):
    img = make_image(height, width, seed=height)
    got = xlc.predict(img, tiny_package, output="probabilities").values
    want = reference_probabilities(img.values, tiny_package, window=64, overlap=16)
    labels = xlc.predict(img, tiny_package).values
    ids = np.array(tiny_package.metadata.class_ids)
    # 5e-5: the reference runs plain NCHW convolutions, xlandcover channels-last ones on CPU;
    # the two differ by float rounding (~1e-5), not by blending.
    assert_same_prediction(got, want, labels, ids[want.argmax(0)], ids, atol=5e-5)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    height=st.integers(1, 170),
    width=st.integers(1, 170),
    window=st.sampled_from([32, 64, 96]),
    overlap_frac=st.sampled_from([0.0, 0.125, 0.25, 0.5]),
    chunk_y=st.integers(8, 180),
    chunk_x=st.integers(8, 180),
    seed=st.integers(0, 3),
)
def test_chunking_never_changes_the_prediction(
    tiny_package, height, width, window, overlap_frac, chunk_y, chunk_x, seed
):
    img = make_image(height, width, seed=seed)
    overlap = int(window * overlap_frac)
    kw = {"window": window, "overlap": overlap}
    ref_p = xlc.predict(img, tiny_package, output="probabilities", **kw).values
    ref_l = xlc.predict(img, tiny_package, **kw).values
    chunked = img.chunk({"y": chunk_y, "x": chunk_x})
    layers = ("probabilities", "confidence", "margin", "entropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RechunkWarning)
        ds = xlc.predict(chunked, tiny_package, output=layers, chunks=None, **kw).compute()
        labels = xlc.predict(chunked, tiny_package, chunks=None, **kw).values
    probs = ds["probability"].values
    assert probs.shape == (4, height, width) and labels.shape == (height, width)
    assert_same_prediction(probs, ref_p, labels, ref_l, tiny_package.metadata.class_ids)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # the uncertainty layers of one model run, as independent of the chunking as the
    # probabilities (uint8 steps of 1/254: float noise moves a value by at most one step)
    for name, want in reference_layers(ref_p).items():
        assert ds[name].dtype == np.uint8, name
        assert np.abs(ds[name].values.astype(int) - want).max() <= 1, name


@pytest.mark.parametrize("chunked", [False, True])
def test_batch_size_does_not_change_the_prediction(tiny_package, chunked):
    """Batches of 1, 3 and 64 windows (72 windows in the scene, 40 to 56 per chunk when
    chunked): the same labels but for near ties, the rule of the chunking tests."""
    img = make_image(420, 400, seed=7)
    kw: dict = {}
    if chunked:
        img, kw = img.chunk({"y": 210, "x": 200}), {"chunks": None}
    assert_batch_size_does_not_matter(img, tiny_package, **kw)


def test_numpy_and_dask_inputs_agree(tiny_package):
    img = make_image(200, 260, seed=3)
    a = xlc.predict(img, tiny_package, output="probabilities").values
    b = xlc.predict(
        img.chunk({"y": 100, "x": 90}), tiny_package, output="probabilities", chunks=None
    )
    np.testing.assert_allclose(a, b.values, atol=1e-5)


def test_building_the_graph_computes_nothing(tiny_package):
    img = make_image(300, 300).chunk({"y": 128, "x": 128})

    runtime.clear_cache()
    with raise_if_dask_computes():
        labels = img.landcover.predict(tiny_package, chunks=None)
        probs = xlc.predict(img, tiny_package, output="probabilities")
    assert labels.chunks == ((128, 172), (128, 172))  # the 44 px remainder is folded in
    assert probs.shape == (4, 300, 300)


def _without_recorded_multiple(package):
    """The package as saved before the size multiple was recorded in its header."""
    import json

    from safetensors.numpy import load, save

    from xlandcover.model._package import package_from_bytes

    blob = package.blob
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])["__metadata__"]
    header.pop("xlandcover_size_multiple")
    return package_from_bytes(save(load(blob), metadata=header))


def test_building_the_graph_builds_no_model(tiny_package):
    """The model is built where it runs, not by predict(); old packages need no build either."""
    old = _without_recorded_multiple(tiny_package)
    assert tiny_package.size_multiple == 32 and old.size_multiple is None
    assert old.sha256 == tiny_package.sha256  # the same model
    img = make_image(100, 90)
    for package in (tiny_package, old):
        runtime.clear_cache()
        runtime._MULTIPLES.clear()
        labels = xlc.predict(img, package)
        assert runtime.LOAD_COUNTS == {}
        with pytest.raises(InvalidWindowError, match="multiple of 32"):
            xlc.predict(img, package, window=48)
    np.testing.assert_array_equal(labels.values, xlc.predict(img, tiny_package).values)


def test_precision(tiny_package, monkeypatch):
    from xlandcover._torch import torch
    from xlandcover.model._runtime import resolve_precision

    img = make_image(120, 100, seed=1)
    with pytest.raises(PrecisionError, match="'auto'"):
        xlc.predict(img, tiny_package, precision="int8")  # type: ignore[arg-type]
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "mps") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_precision("auto", "cuda:1") == "fp16"  # tensor cores
    assert resolve_precision("bf16", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    assert resolve_precision("auto", "cuda") == "fp32"
    fp32 = xlc.predict(img, tiny_package, output="probabilities", precision="fp32").values
    auto = xlc.predict(img, tiny_package, output="probabilities").values
    np.testing.assert_array_equal(fp32, auto)  # auto is fp32 on CPU
    for low in ("bf16", "fp16"):  # autocast on CPU: close, not equal
        p = xlc.predict(img, tiny_package, output="probabilities", precision=low).values
        assert 0 < np.abs(p - fp32).max() < 0.2
        np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)


def test_fp16_overflow_falls_back_to_fp32(tmp_path):
    """Unnormalised inputs overflow fp16's range (65504): those chunks run again in fp32."""
    from ..conftest import tiny_net

    pkg = xlc.save_model(
        tiny_net(),
        tmp_path / "raw.xlc",
        bands=["red", "green", "blue"],
        classes=[{"id": i, "name": f"c{i}"} for i in range(4)],
        normalization={"mean": [0.0] * 3, "std": [1e-3] * 3},  # inputs up to 250000
        window=64,
    )
    img = make_image(150, 130, seed=4).chunk({"y": 75, "x": 130})
    fp32 = xlc.predict(img, pkg, output="probabilities", chunks=None, precision="fp32").values
    fp16 = xlc.predict(img, pkg, output="probabilities", chunks=None, precision="fp16").values
    np.testing.assert_array_equal(fp16, fp32)


@pytest.mark.slow
@pytest.mark.parametrize("scene", ["zion", "dubai"])
def test_half_precision_labels_of_the_demo_scenes(scene):
    """The embedded scenes with their demo models, against fp32 on CPU: fp16 (what "auto"
    takes on GPUs) changes under 0.1 % of the labels; bf16 about 0.3 % (measured on the whole
    scenes 0.31 % and 0.27 %: its 8-bit mantissa flips near ties), which is why "auto" does not
    take it. A quarter of each scene, for speed (Zion's quarters: fp16 0.025-0.033 %, bf16
    0.17-0.24 %)."""
    from importlib import resources

    data = resources.files("xlandcover") / "data"
    if scene == "zion":
        image, model, kw = "zion-landsat8-demo.tif", "demo-zion.xlc", {}
    else:
        image, model = "dubai-tile7-part004.jpg", "demo-dubai.xlc"
        kw = {"pixel_grid": True, "bands": ["red", "green", "blue"]}
    with resources.as_file(data / image) as path, resources.as_file(data / model) as pkg:
        img = xlc.open_raster(path, **kw)
        img = img.isel(y=slice(0, img.sizes["y"] // 2), x=slice(0, img.sizes["x"] // 2))
        package = xlc.load_model(pkg)
        fp32 = xlc.predict(img, package, precision="fp32").values
        fp16 = xlc.predict(img, package, precision="fp16").values
        bf16 = xlc.predict(img, package, precision="bf16").values
    valid = fp32 != NODATA_LABEL
    np.testing.assert_array_equal(valid, fp16 != NODATA_LABEL)
    assert (fp32 != fp16)[valid].mean() < 1e-3
    assert (fp32 != bf16)[valid].mean() < 5e-3


def test_auto_chunks_merge_whole_input_chunks(tiny_package):
    img = make_image(1200, 700).chunk({"y": 100, "x": 300})
    labels = xlc.predict(img, tiny_package)  # window 64: at least 16 * 64 = 1024 px chunks
    assert labels.chunks == ((1100, 100), (700,))
    assert xlc.predict(img, tiny_package, chunks=256).chunks == (
        (256,) * 4 + (176,),
        (256, 256, 188),
    )
    numpy_backed = make_image(1200, 700)
    assert xlc.predict(numpy_backed, tiny_package).chunks == ((1024, 176), (700,))


def test_model_is_one_graph_key_and_loaded_once_per_process(tiny_package):
    img = make_image(320, 320).chunk({"y": 64, "x": 64})  # 25 chunks
    runtime.clear_cache()
    labels = xlc.predict(img, tiny_package, window=32, overlap=8, chunks=None)
    assert labels.data.npartitions == 25
    graph = dict(labels.data.__dask_graph__())
    holders = [k for k, v in graph.items() if getattr(v, "value", v) is tiny_package.blob]
    assert len(holders) == 1, "the package bytes must be one graph key, not copied per task"
    task_sizes = [len(pickle.dumps(v)) for k, v in graph.items() if k not in holders]
    assert max(task_sizes) < len(tiny_package.blob) / 4
    runtime.clear_cache()
    labels.compute(scheduler="threads")
    assert {tiny_package.sha256: 1} == runtime.LOAD_COUNTS


def test_output_keeps_grid_crs_and_classes(tiny_package, backend):
    img = as_backend(make_image(100, 120), backend)
    labels = xlc.predict(img, tiny_package)
    assert labels.dims == ("y", "x") and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels["x"], img["x"])
    np.testing.assert_array_equal(labels["y"], img["y"])
    assert labels.rio.crs == img.rio.crs
    assert labels.rio.transform() == img.rio.transform()
    assert labels.rio.nodata == NODATA_LABEL
    assert labels.attrs["class_names"] == ["water", "forest", "built", "bare"]
    assert labels.attrs["class_ids"] == [1, 2, 5, 7]
    assert labels.attrs["class_colors"][0] == "#1f78b4"
    probs = xlc.predict(img, tiny_package, output="probabilities")
    assert probs.dims == ("class", "y", "x")
    assert list(probs["class"].values) == ["water", "forest", "built", "bare"]
    assert probs.rio.crs == img.rio.crs


def test_nodata_and_nan_pixels_give_nodata(tiny_package, backend):
    img = make_image(120, 140).astype(np.float32)
    img.values[:, 10:20, 30:50] = np.nan
    img.values[1, 60, 70] = np.nan  # one band missing is enough
    img = img.rio.write_nodata(0.0)
    img.values[:, 100:, :] = 0.0
    labels = xlc.predict(as_backend(img, backend), tiny_package).values
    probs = xlc.predict(as_backend(img, backend), tiny_package, output="probabilities").values
    bad = np.zeros((120, 140), bool)
    bad[10:20, 30:50] = bad[60, 70] = True
    bad[100:, :] = True
    assert (labels[bad] == NODATA_LABEL).all()
    assert np.isnan(probs[:, bad]).all()
    assert np.isin(labels[~bad], [1, 2, 5, 7]).all()
    assert np.isfinite(probs[:, ~bad]).all()


def test_package_nodata_is_used_when_the_image_has_none(tmp_path):
    from ..conftest import tiny_net

    pkg = xlc.save_model(
        tiny_net(),
        tmp_path / "m.xlc",
        bands=["red", "green", "blue"],
        classes=[{"id": i, "name": f"c{i}"} for i in range(4)],
        window=64,
        nodata=7,
    )
    img = make_image(64, 64)
    img.values[:, :5, :] = 7
    labels = xlc.predict(img, pkg).values
    assert (labels[:5] == NODATA_LABEL).all() and (labels[5:] != NODATA_LABEL).all()


def test_named_bands_are_selected_and_ordered_for_the_model(tiny_package):
    img = make_image(96, 96)
    shuffled = xr.concat(
        [img.sel(band=["blue"]), img.sel(band=["green"]), img, img.sel(band=["red"])], "band"
    ).isel(band=[0, 1, 5])
    shuffled = shuffled.assign_coords(band=["blue", "green", "red"])
    extra = xr.concat([img, img.isel(band=[0]).assign_coords(band=["nir"])], "band")
    want = xlc.predict(img, tiny_package, output="probabilities").values
    for variant in (shuffled, extra):
        got = xlc.predict(variant, tiny_package, output="probabilities").values
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_tta_averages_flips_and_stays_chunk_independent(tiny_package):
    img = make_image(130, 150, seed=5)
    plain = xlc.predict(img, tiny_package, output="probabilities").values
    flips = xlc.predict(img, tiny_package, output="probabilities", tta=True).values
    assert np.abs(flips - plain).max() > 1e-3  # the random model is not flip-invariant
    chunked = xlc.predict(
        img.chunk({"y": 80, "x": 70}), tiny_package, output="probabilities", tta="d4", chunks=None
    ).values
    whole = xlc.predict(img, tiny_package, output="probabilities", tta="d4").values
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-5)


# --- bad input gets a clear error -------------------------------------------------------------


def test_missing_crs(tiny_package):
    with pytest.raises(MissingCRSError, match=r"rio\.write_crs"):
        xlc.predict(make_image(64, 64, crs=None), tiny_package)


def test_band_count_mismatch(tiny_package):
    img = make_image(64, 64).assign_coords(band=[1, 2, 3]).isel(band=[0, 1])
    with pytest.raises(BandMismatchError, match="2 bands but the model expects 3"):
        xlc.predict(img, tiny_package)


def test_band_name_mismatch(tiny_package):
    img = make_image(64, 64, bands=("red", "green", "nir"))
    with pytest.raises(BandMismatchError, match=r"missing \['blue'\]"):
        xlc.predict(img, tiny_package)


def test_window_not_accepted_by_the_architecture(tiny_package):
    with pytest.raises(InvalidWindowError, match="multiple of 32; the nearest valid window is 96"):
        xlc.predict(make_image(64, 64), tiny_package, window=100)
    with pytest.raises(InvalidWindowError, match="overlap"):
        xlc.predict(make_image(64, 64), tiny_package, window=64, overlap=64)


def test_chunk_smaller_than_halo(tiny_package):
    img = make_image(200, 200)
    small = img.chunk({"y": 40, "x": 100})  # interior chunks of 40 px < 63 px halo
    with pytest.raises(ChunkTooSmallError, match="at least 64 px"):
        xlc.predict(small, tiny_package, allow_rechunk=False, chunks=None)
    with pytest.warns(RechunkWarning, match="merged"):
        merged = xlc.predict(small, tiny_package, output="probabilities", chunks=None)
    assert min(merged.chunks[1]) >= 63
    want = xlc.predict(img, tiny_package, output="probabilities").values
    np.testing.assert_allclose(merged.values, want, atol=1e-5)


def test_all_nodata_scene(tiny_package):
    img = make_image(64, 64).rio.write_nodata(0)
    img.values[:] = 0
    with pytest.raises(AllNodataError, match="every pixel"):
        xlc.predict(img, tiny_package)


def test_unknown_device(tiny_package):
    with pytest.raises(UnknownDeviceError, match="unknown device 'gpu7'"):
        xlc.predict(make_image(64, 64), tiny_package, device="gpu7")
    with pytest.raises(UnknownDeviceError, match="no CUDA GPU"):
        xlc.predict(make_image(64, 64), tiny_package, device="cuda:0")


def test_wrong_dims_and_output(tiny_package):
    img = make_image(64, 64)
    with pytest.raises(ValueError, match=r"dims \(band, y, x\)"):
        xlc.predict(img.rename({"y": "lat"}), tiny_package)
    with pytest.raises(ValueError, match="output must be"):
        xlc.predict(img, tiny_package, output="scores")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        xlc.predict(img, tiny_package, batch_size=0)


def test_batches_are_sized_from_free_memory():
    from xlandcover.model._runtime import MAX_AUTO_BATCH, batch_for_memory

    gib, mib = 2**30, 2**20
    # 10 GiB free, half of it usable, 150 MiB of activations per window: 34 windows
    assert batch_for_memory(10 * gib, 150 * mib) == 34
    assert batch_for_memory(80 * gib, 150 * mib) == MAX_AUTO_BATCH  # capped
    assert batch_for_memory(100 * mib, 150 * mib) == 1  # never below one window
    assert batch_for_memory(10 * gib, 0) == MAX_AUTO_BATCH


def test_cpu_batches_default_to_one_window(tiny_package):
    from xlandcover.model._runtime import auto_batch_size, get_model

    loaded = get_model(tiny_package.blob, tiny_package.sha256, "cpu")
    assert auto_batch_size(loaded, tiny_package.sha256, (3, 64, 64)) == 1
