"""Old spellings keep working for one release, each with a deprecation warning that names the
new one: import paths of the flat 0.1 modules, renamed names, arguments, settings and flags."""

from __future__ import annotations

import importlib
import logging
import sys

import numpy as np
import pytest

import xlandcover as xlc
from xlandcover import _compat
from xlandcover.cli import main
from xlandcover.errors import InputTypeError, XLandcoverDeprecationWarning

from .conftest import make_image

DEPRECATED = pytest.warns(XLandcoverDeprecationWarning)


@pytest.fixture(autouse=True)
def _warn_every_time(monkeypatch):
    monkeypatch.setattr(_compat, "_WARNED", set())  # stand-ins warn once per name otherwise


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_every_old_module_still_imports_its_names_with_a_warning(old):
    internal = _compat.MOVED[old][1]
    names = [n for n in vars(importlib.import_module(internal)) if not n.startswith("_")]
    moved = sys.modules[f"xlandcover.{old}"]
    for name in names:
        with pytest.warns(XLandcoverDeprecationWarning, match=f"xlandcover.{old} moved to"):
            assert getattr(moved, name) is getattr(importlib.import_module(internal), name)


def test_from_import_of_an_old_path_warns_once_and_names_the_new_home():
    with pytest.warns(XLandcoverDeprecationWarning) as record:
        from xlandcover.chips import sample_chips  # noqa: F401
    assert len(record) == 1
    assert "import sample_chips from xlandcover.training" in str(record[0].message)
    assert record[0].filename == __file__  # points at the importing line, not importlib


def test_old_module_names_that_are_functions_stay_functions():
    """xlandcover.predict/.train/.evaluate are the functions; their old modules still import."""
    with DEPRECATED:
        from xlandcover.predict import AUTO_CHUNK_WINDOWS
    assert AUTO_CHUNK_WINDOWS == 16
    import xlandcover.evaluate  # noqa: F401  (the stand-in: the attribute is not rebound)

    assert callable(xlc.predict) and callable(xlc.train) and callable(xlc.evaluate)
    assert type(xlc.evaluate).__name__ == "function"


def test_renamed_names_of_old_modules():
    with DEPRECATED:
        from xlandcover.losses import IGNORE
    with DEPRECATED:
        from xlandcover.evaluate import SKIP
    with DEPRECATED:
        from xlandcover.splits import SPLITS
    with DEPRECATED:
        from xlandcover.resume import ChunkFailedError
    assert IGNORE == SKIP == xlc.model.NODATA_LABEL == 255
    assert SPLITS == xlc.training.PARTITIONS
    assert ChunkFailedError is xlc.errors.ChunkFailedError


def test_an_unknown_name_of_an_old_module_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"moved to xlandcover\.training"):
        sys.modules["xlandcover.chips"].no_such_name  # noqa: B018


def test_confusion_matrix_takes_0_1s_positional_order_with_a_warning():
    truth = np.array([1, 1, 2, 2])
    pred = np.array([1, 2, 2, 2])
    new = xlc.confusion_matrix(truth=truth, pred=pred, class_ids=[1, 2])
    np.testing.assert_array_equal(new, [[1, 1], [0, 2]])  # rows truth
    with pytest.warns(XLandcoverDeprecationWarning, match="by keyword"):
        old = xlc.confusion_matrix(pred, truth, [1, 2])  # 0.1: (pred, truth, ids)
    np.testing.assert_array_equal(old, new)  # never silently transposed
    with pytest.raises(InputTypeError, match="by keyword"):
        xlc.confusion_matrix(pred, truth, pred=pred, class_ids=[1, 2])


def test_evaluate_takes_0_1s_model_first_order_and_split(tiny_package):
    img = make_image(64, 64)
    lab = xlc.predict(img, tiny_package).compute()
    new = xlc.evaluate(img, lab, tiny_package)
    with pytest.warns(XLandcoverDeprecationWarning, match=r"evaluate\(image, labels, model\)"):
        old = xlc.evaluate(tiny_package, img, lab)
    np.testing.assert_array_equal(old.confusion, new.confusion)
    chips = xlc.sample_chips(img, lab, size=32)
    with pytest.warns(XLandcoverDeprecationWarning, match="partition="):
        by_split = xlc.evaluate(model=tiny_package, split=chips)
    assert by_split.total == xlc.evaluate(model=tiny_package, partition=chips).total
    with pytest.raises(InputTypeError, match="both split= and partition="):
        xlc.evaluate(model=tiny_package, split=chips, partition=chips)
    with pytest.raises(InputTypeError, match="needs the model"):
        xlc.evaluate(img, lab)


def test_train_settings_arch_is_architecture(tmp_path):
    with pytest.warns(XLandcoverDeprecationWarning, match="is now architecture"):
        cfg = xlc.TrainConfig(arch="UnetPlusPlus", epochs=2)
    assert cfg.architecture == "UnetPlusPlus" and cfg.epochs == 2
    with pytest.warns(XLandcoverDeprecationWarning, match="TrainConfig.architecture"):
        assert cfg.arch == "UnetPlusPlus"
    with pytest.warns(XLandcoverDeprecationWarning, match="arch is now architecture"):
        assert xlc.TrainConfig.from_dict({"arch": "Unet"}).architecture == "Unet"
    config = tmp_path / "run.toml"
    config.write_text('[data]\nimages = "*.tif"\nlabels = "*.tif"\n[train]\narch = "Unet"\n')
    with pytest.warns(XLandcoverDeprecationWarning, match=r"\[train\]: arch is now architecture"):
        cfg = xlc.training.load_config(config)
    assert cfg.train_config().architecture == "Unet"


def test_chips_unlabelled_and_export_split(tmp_path):
    img = make_image(64, 64)
    lab = img.isel(band=0).copy(data=np.where(img.values[0] > 128, 1, 2).astype(np.uint8))
    chips = xlc.sample_chips(img, lab.rio.write_nodata(255, encoded=False), size=32)
    with DEPRECATED:
        assert chips.unlabelled == chips.ignore_values == (255,)
    with pytest.warns(XLandcoverDeprecationWarning, match="partition="):
        index = chips.export(tmp_path / "out", split="train")
    assert index.exists()


def test_accessor_area_and_plot_are_class_areas_and_plot_labels():
    lab = make_image(16, 16).isel(band=0).astype(np.uint8)
    with pytest.warns(XLandcoverDeprecationWarning, match=r"class_areas\(\)"):
        old = lab.landcover.area()
    assert old.equals(lab.landcover.class_areas())
    import matplotlib

    matplotlib.use("Agg")
    with pytest.warns(XLandcoverDeprecationWarning, match=r"plot_labels\(\)"):
        lab.landcover.plot()


@pytest.mark.parametrize(
    "old, new",
    [(["--chunk", "0"], ["--chunks", "0"]), (["--mmu", "0"], ["--min-size", "0"])],
)
def test_cli_renamed_flags_still_work_with_a_warning(tiny_package, tmp_path, old, new, caplog):
    img = make_image(32, 32)
    scene = tmp_path / "scene.tif"
    img.rio.to_raster(scene)
    args = ["predict", str(scene), "--model", str(tiny_package.path), "--cog", "x.tif"]
    caplog.set_level(logging.ERROR, logger="xlandcover")
    assert main([*args, *new]) == 1  # a clear error: the value 0 is refused
    first = caplog.records[-1].getMessage()
    with pytest.warns(XLandcoverDeprecationWarning, match=f"{old[0]} is now {new[0]}"):
        assert main([*args, *old]) == 1
    assert caplog.records[-1].getMessage() == first  # the same value reached the same check


def test_cli_split_is_partition():
    import argparse

    from xlandcover.cli import _renamed_flags

    args = argparse.Namespace(partition="test", split_deprecated="val")
    with pytest.warns(XLandcoverDeprecationWarning, match="--split is now --partition"):
        _renamed_flags(args)
    assert args.partition == "val"
