"""The per-window torch engine (xlandcover.prediction._engine): its pieces, and its accelerator
code path run on CPU against the CPU path."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xlandcover as xlc
from xlandcover._torch import torch
from xlandcover.prediction import _engine

from ..conftest import make_image


@given(length=st.integers(1, 40), extra=st.integers(0, 100))
def test_symmetric_index_is_numpy_symmetric_padding(length, extra):
    a = np.arange(length)
    want = np.pad(a, (0, extra), mode="symmetric")
    np.testing.assert_array_equal(a[_engine.symmetric_index(length, length + extra)], want)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.float32, np.float64]
)
@pytest.mark.parametrize("device_type", ["cpu", "cuda", "mps"])
def test_wire_dtypes_give_float32_of_every_pixel(dtype, device_type):
    """Whatever travels to the device (uint16 as int16 bits, some types as float32), the model
    sees float32(pixel), as numpy's astype gives it."""
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(np.float32)
    values = np.array([info.min, info.max, 0, 1, 12345 % int(info.max)], dtype=dtype)
    block = np.broadcast_to(values, (2, 3, 5)).copy()
    wire, mask = _engine.wire_dtype(block.dtype, device_type)
    if device_type == "mps":
        assert wire != np.float64
    sent = block.view(wire) if mask is not None else block.astype(wire)
    got = _engine.to_float(torch.from_numpy(sent)[None], mask, channels_last=True)[0]
    np.testing.assert_array_equal(got.numpy(), block.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("tta", [False, "flips"])
def test_accelerator_path_on_cpu_agrees_with_the_cpu_path(tiny_package, monkeypatch, dtype, tta):
    """The code path CUDA and MPS take (raw tiles to the device, conversion, normalisation,
    nodata fill and padding there, uint16 as int16 bits, batch softmax, torch argmax), run on
    CPU, against the CPU path: same probabilities, same labels but near ties."""
    from .test_predict import assert_same_prediction

    img = make_image(150, 40, seed=2).astype(dtype)  # 40 < window: a mirrored short axis
    if dtype == np.uint16:
        img = (img.astype(np.uint16) * 200).assign_attrs(img.attrs)  # values above 32767
    img.values[:, 5:9, 3:30] = 0
    img = img.rio.write_nodata(0)
    pkg = tiny_package
    kw = {"batch_size": 3, "tta": tta, "output": "probabilities"}
    cpu_p = xlc.predict(img, pkg, **kw).values
    cpu_l = xlc.predict(img, pkg, batch_size=3, tta=tta).values
    monkeypatch.setattr(_engine, "ACCELERATOR_PATH_ON_CPU", True)
    dev_p = xlc.predict(img, pkg, **kw).values
    dev_l = xlc.predict(img, pkg, batch_size=3, tta=tta).values
    assert np.isnan(dev_p[:, 5:9, 3:30]).all() and (dev_l[5:9, 3:30] == 255).all()
    ok = ~np.isnan(cpu_p[0])
    np.testing.assert_array_equal(ok, ~np.isnan(dev_p[0]))
    assert_same_prediction(cpu_p[:, ok], dev_p[:, ok], cpu_l[ok], dev_l[ok], pkg.metadata.class_ids)
