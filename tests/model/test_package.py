import json
import struct

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover.errors import ModelPackageError, OutputExistsError
from xlandcover.model import ClassInfo, PackageMetadata, package_from_bytes

from ..conftest import tiny_net

CLASSES = [{"id": 1, "name": "water", "color": "#0000ff"}, {"id": 3, "name": "crop"}]


def save(tmp_path, **kw):
    args = {
        "bands": ["red", "green", "blue"],
        "classes": [*CLASSES, {"id": 4, "name": "a"}, {"id": 9, "name": "b"}],
        "window": 64,
    }
    return xlc.save_model(tiny_net(), tmp_path / "m.xlc", **(args | kw))


def test_round_trip_keeps_metadata_and_outputs(tmp_path):
    from xlandcover._torch import torch

    net = tiny_net()
    pkg = xlc.save_model(
        net,
        tmp_path / "m.xlc",
        bands=["red", "green", "blue"],
        classes=[*CLASSES, {"id": 4, "name": "a"}, {"id": 9, "name": "b"}],
        normalization={"mean": [1, 2, 3], "std": [4, 5, 6]},
        window=128,
        overlap=24,
        nodata=0,
        description="test",
        extra={"scores": {"miou": 0.5}},
    )
    loaded = xlc.load_model(tmp_path / "m.xlc")
    assert loaded.metadata == pkg.metadata
    assert loaded.sha256 == pkg.sha256
    meta = loaded.metadata
    assert meta.architecture == "Unet"
    assert meta.arch_kwargs["encoder_name"] == "tu-test_efficientnet"
    assert meta.arch_kwargs["encoder_weights"] is None
    assert meta.bands == ("red", "green", "blue")
    assert meta.class_ids == (1, 3, 4, 9) and meta.classes[0].rgb == (0, 0, 255)
    assert (meta.mean, meta.std) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    assert (meta.window, meta.overlap, meta.nodata) == (128, 24, 0.0)
    assert meta.extra == {"scores": {"miou": 0.5}}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), loaded.build_module()(x).numpy())


def test_package_is_plain_safetensors_without_pickle(tmp_path):
    pkg = save(tmp_path)
    raw = (tmp_path / "m.xlc").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert json.loads(header["__metadata__"]["xlandcover"])["format"] == "xlandcover-model"
    assert all(v["dtype"] in ("F32", "I64") for k, v in header.items() if k != "__metadata__")
    assert b"\x80\x04\x95" not in raw[: 8 + n]  # no pickle protocol marker in the header
    assert pkg.path == tmp_path / "m.xlc"


def test_truncated_package(tmp_path):
    save(tmp_path)
    raw = (tmp_path / "m.xlc").read_bytes()
    for cut in (4, 100, len(raw) // 2, len(raw) - 1):
        (tmp_path / "cut.xlc").write_bytes(raw[:cut])
        with pytest.raises(ModelPackageError, match="corrupt or truncated"):
            xlc.load_model(tmp_path / "cut.xlc")


def test_corrupt_weights_are_detected(tmp_path):
    save(tmp_path)
    raw = bytearray((tmp_path / "m.xlc").read_bytes())
    raw[-100] ^= 0xFF  # flip bits inside the last tensor
    with pytest.raises(ModelPackageError, match="do not match their recorded digest"):
        package_from_bytes(bytes(raw))


def test_foreign_safetensors_and_unknown_version(tmp_path):
    from safetensors.numpy import save as save_tensors

    with pytest.raises(ModelPackageError, match="without xlandcover metadata"):
        package_from_bytes(save_tensors({"w": np.zeros(3, np.float32)}))
    meta = json.loads(save(tmp_path).metadata.to_json())
    meta["format_version"] = 99
    with pytest.raises(ModelPackageError, match="format version 99"):
        PackageMetadata.from_json(json.dumps(meta))


def test_metadata_that_does_not_fit_the_weights(tmp_path):
    pkg = save(tmp_path)
    meta = json.loads(pkg.metadata.to_json())
    meta["arch_kwargs"]["decoder_channels"] = [32, 16, 8, 8, 8]
    meta.pop("format")
    bad = PackageMetadata.from_json(json.dumps({**meta, "format": "xlandcover-model"}))
    wrong = type(pkg)(metadata=bad, blob=pkg.blob, sha256=pkg.sha256)
    with pytest.raises(ModelPackageError, match="weights do not fit Unet"):
        wrong.build_module()


def test_unknown_architecture():
    from xlandcover.model import build_architecture

    with pytest.raises(ModelPackageError, match=r"unknown architecture 'Vnet'.*'unet'"):
        build_architecture("Vnet", {})


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"classes": [{"id": 255, "name": "x"}] * 4}, "reserved for nodata"),
        ({"classes": [{"id": 1, "name": "x", "color": "red"}] * 4}, "#rrggbb"),
        ({"bands": ["r", "g"]}, "in_channels=3 but 2 bands"),
        ({"classes": CLASSES}, "classes=4 but 2 classes"),
        ({"normalization": {"mean": [0], "std": [1]}}, "one mean and one std per band"),
        ({"window": 64, "overlap": 64}, "overlap < window"),
    ],
)
def test_invalid_metadata_is_refused(tmp_path, kw, match):
    with pytest.raises(ModelPackageError, match=match):
        save(tmp_path, **kw)


def test_existing_package_is_not_overwritten(tmp_path):
    save(tmp_path)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        save(tmp_path)
    save(tmp_path, overwrite=True)


def test_missing_package():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xlc.load_model("/nonexistent/model.xlc")


def test_class_info_rgb():
    assert ClassInfo(id=3, name="x", color="#0A0b0c").rgb == (10, 11, 12)


def test_saved_package_is_readable_by_others(tmp_path):
    import os
    import stat

    save(tmp_path)
    old = os.umask(0o022)
    os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.xlc").stat().st_mode)
    assert mode == 0o666 & ~old and not list(tmp_path.glob(".*tmp"))


def test_html_view_lists_classes_with_colours_and_scores():
    import importlib.resources

    path = importlib.resources.files("xlandcover") / "data" / "demo-dubai.xlc"
    with importlib.resources.as_file(path) as p:
        html = xlc.load_model(p)._repr_html_()
    assert "background:#3c1098" in html and "building" in html
    assert "test mIoU 0.531" in html and "red, green, blue" in html


def test_a_registered_architecture_builds_saves_and_loads(tmp_path, monkeypatch):
    from xlandcover._torch import smp
    from xlandcover.errors import ModelPackageError
    from xlandcover.model import _package

    monkeypatch.setattr(_package, "ARCHITECTURES", {})

    def tiny(**kwargs):
        return smp.Unet(**{**kwargs, "decoder_channels": (16, 8, 8, 8, 8)})

    _package.register_architecture("TinyUnet", tiny)
    kwargs = {"encoder_name": "tu-test_efficientnet", "in_channels": 3, "classes": 2}
    net = _package.build_architecture("TinyUnet", kwargs)
    pkg = _package.save_model(net, tmp_path / "m.xlc", bands=["r", "g", "b"],
                              classes=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                              architecture="TinyUnet", arch_kwargs=kwargs)  # fmt: skip
    again = _package.load_model(pkg.path)
    assert (
        again.metadata.architecture == "TinyUnet"
        and again.metadata.encoder == kwargs["encoder_name"]
    )
    assert type(again.build_module()).__name__ == "Unet"
    with pytest.raises(ModelPackageError, match="exists"):
        _package.register_architecture("Unet", tiny)
    monkeypatch.setattr(_package, "ARCHITECTURES", {})
    with pytest.raises(ModelPackageError, match="register_architecture"):
        again.build_module()


def test_packages_written_by_earlier_versions_still_load():
    """The embedded demo models were saved by xlandcover 0.1 (before the layout by stage)."""
    from importlib import resources

    import xlandcover as xlc

    for name in ("demo-dubai.xlc", "demo-zion.xlc"):
        with resources.as_file(resources.files("xlandcover") / "data" / name) as path:
            pkg = xlc.load_model(path)
        assert pkg.metadata.format_version == 1 and pkg.metadata.encoder
        assert pkg.build_module().training is False


def test_with_metadata_replaces_fields_and_keeps_weights_calibration_and_range(tmp_path):
    from xlandcover.model import with_metadata, with_temperature

    net = tiny_net(3, 2)
    pkg = xlc.save_model(
        net, tmp_path / "a.xlc", bands=["red", "green", "blue"],
        classes=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], input_range=[[0, 255]] * 3,
    )  # fmt: skip
    hot = with_temperature(pkg, 2.5, ece_before=0.1)
    out = with_metadata(
        hot, tmp_path / "b.xlc", description="relabelled", extra={**hot.metadata.extra, "k": 1}
    )
    again = xlc.load_model(tmp_path / "b.xlc")
    assert again.metadata.description == "relabelled" and again.metadata.extra["k"] == 1
    assert (
        again.metadata.temperature == 2.5 and again.metadata.input_range == pkg.metadata.input_range
    )
    assert again.size_multiple == pkg.size_multiple and out.sha256 == again.sha256
    a, b = pkg.build_module("cpu").state_dict(), again.build_module("cpu").state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # weights unchanged
    with pytest.raises(OutputExistsError):
        with_metadata(hot, tmp_path / "b.xlc", description="again")
